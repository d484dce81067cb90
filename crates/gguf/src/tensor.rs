//! What a GGUF file says about one tensor: name, shape, ggml type and where
//! its bytes are. A `TensorInfo` exists only after the reader has checked
//! all of it against the file, so its numbers can be used as they are.

use std::ops::Range;

use exodus_numerics::Format;

use crate::error::{GgufError, Result};
use crate::ggml_type::GgmlType;

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) ty: GgmlType,
    pub(crate) offset: u64,
    pub(crate) start: u64,
    pub(crate) size: u64,
    pub(crate) elements: u64,
}

impl TensorInfo {
    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions in ggml order: innermost (contiguous) first, so a weight
    /// matrix of `rows x cols` is `[cols, rows]`. Empty for a scalar.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The ggml type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// The exodus format of the data, or
    /// [`GgufError::UnsupportedTensorType`] when exodus has none.
    pub fn format(&self) -> Result<Format> {
        self.ty
            .format()
            .ok_or_else(|| GgufError::UnsupportedTensorType {
                name: self.name.clone(),
                ty: self.ty,
            })
    }

    /// Offset of the data from the start of the data section, as stored.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Offset of the data from the start of the file.
    pub fn file_offset(&self) -> u64 {
        self.start
    }

    /// Bytes of data: `rows * dims[0] / block_elems * block_bytes`.
    pub fn byte_size(&self) -> u64 {
        self.size
    }

    /// Byte range of the data in the file.
    pub fn file_range(&self) -> Range<u64> {
        self.start..self.start + self.size
    }

    /// Number of elements (1 for a scalar).
    pub fn elements(&self) -> u64 {
        self.elements
    }

    /// Elements per row: `dims[0]` (1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of every dimension but the first.
    pub fn rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}
