//! [`Gguf`]: a parsed GGUF file together with its bytes (a memory map, a
//! borrowed slice or an owned buffer), answering questions about metadata
//! and tensors and handing out tensor data without copying.

use std::path::Path;

use crate::error::{GgufError, Result};
use crate::metadata::Metadata;
use crate::mmap::{self, MappedFile};
use crate::parse::{self, Parsed};
use crate::tensor::TensorInfo;

/// A validated GGUF file over bytes `B`. Every offset, length and count in
/// it was checked when it was parsed, so the accessors cannot fail on the
/// file's account.
#[derive(Debug)]
pub struct Gguf<B> {
    bytes: B,
    parsed: Parsed,
}

/// A GGUF file mapped from disk ([`GgufFile::open`]).
pub type GgufFile = Gguf<MappedFile>;

/// A GGUF file over borrowed bytes (`Gguf::parse(&bytes[..])`).
pub type GgufView<'a> = Gguf<&'a [u8]>;

impl GgufFile {
    /// Maps `path` read-only and parses it. Tensor data is read from the
    /// map on demand, so opening a multi-gigabyte model is quick.
    ///
    /// The file must not be modified while the returned value lives (see
    /// [`MappedFile`]); [`Gguf::read`] copies it into memory instead.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Gguf::parse(mmap::map(path.as_ref())?)
    }
}

impl Gguf<Vec<u8>> {
    /// Reads all of `path` into memory and parses it.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Gguf::parse(bytes)
    }
}

impl<B: AsRef<[u8]>> Gguf<B> {
    /// Parses and validates `bytes` (a `&[u8]`, a `Vec<u8>`, a map...).
    pub fn parse(bytes: B) -> Result<Self> {
        let parsed = parse::parse(bytes.as_ref())?;
        Ok(Gguf { bytes, parsed })
    }

    /// All bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Length of the file in bytes.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Whether the file is empty (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// GGUF version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    /// Alignment of tensor data (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.parsed.metadata
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.parsed.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.parsed
            .index
            .get(name)
            .and_then(|&i| self.parsed.tensors.get(i))
    }

    /// The tensor called `name`, or [`GgufError::MissingTensor`].
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            name: name.to_string(),
        })
    }

    /// The data of the tensor called `name`, borrowed from the file
    /// (`byte_size()` bytes in its ggml layout).
    pub fn data(&self, name: &str) -> Result<&[u8]> {
        self.tensor_data(self.require_tensor(name)?)
    }

    /// The data of `tensor`, which must come from this file
    /// ([`GgufError::MissingTensor`] otherwise).
    pub fn tensor_data(&self, tensor: &TensorInfo) -> Result<&[u8]> {
        let missing = || GgufError::MissingTensor {
            name: tensor.name().to_string(),
        };
        if self.tensor(tensor.name()) != Some(tensor) {
            return Err(missing());
        }
        let range = tensor.file_range();
        usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(s, e)| self.bytes().get(s..e))
            .ok_or_else(missing)
    }

    /// Sum of every tensor's byte size.
    pub fn tensor_bytes(&self) -> u64 {
        self.parsed.tensors.iter().map(|t| t.byte_size()).sum()
    }

    /// Sum of every tensor's element count.
    pub fn tensor_elements(&self) -> u64 {
        self.parsed.tensors.iter().map(|t| t.elements()).sum()
    }

    /// Gives the bytes back.
    pub fn into_bytes(self) -> B {
        self.bytes
    }
}
