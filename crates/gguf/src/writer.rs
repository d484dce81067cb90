//! Writing GGUF files: metadata and tensors in, a valid GGUF v2 or v3 file
//! out, laid out as ggml lays it (tensor data in the order added, each
//! padded to the alignment). The writer refuses what the reader would
//! reject, so everything it writes reads back.
//!
//! ```
//! use exodus_gguf::{writer::GgufWriter, Gguf, GgmlType};
//!
//! let mut w = GgufWriter::new();
//! w.set("general.architecture", "llama")?;
//! w.add_tensor("norm.weight", GgmlType::F32, &[4], vec![0u8; 16])?;
//! let bytes = w.to_bytes();
//! let file = Gguf::parse(&bytes[..])?;
//! assert_eq!(file.metadata().get_str("general.architecture")?, "llama");
//! assert_eq!(file.data("norm.weight")?.len(), 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::io::{self, Write};

use crate::ggml_type::{GgmlType, ShapeError};
use crate::parse::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KEY_LEN,
    MAX_TENSOR_NAME_LEN,
};
use crate::value::{Array, Value};

/// What the writer refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A version other than 2 and 3.
    #[error("GGUF version {0} cannot be written (2 and 3 can)")]
    Version(u32),
    /// A key set twice.
    #[error("metadata key `{0}` is already set")]
    DuplicateKey(String),
    /// A key longer than 65535 bytes.
    #[error("metadata key of {0} bytes is longer than 65535")]
    KeyTooLong(usize),
    /// `general.alignment` that is not a power-of-two u32.
    #[error("general.alignment must be a power-of-two u32, got {0}")]
    Alignment(String),
    /// Arrays nested too deep for the reader.
    #[error("metadata key `{0}`: arrays nested deeper than the reader allows")]
    TooDeep(String),
    /// A tensor name used twice.
    #[error("tensor `{0}` is already added")]
    DuplicateTensor(String),
    /// A tensor that the reader would reject.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory.
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT.into(),
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Writes version `version` (2 or 3; the layout is the same).
    pub fn version(&mut self, version: u32) -> Result<&mut Self, WriteError> {
        if !matches!(version, 2 | 3) {
            return Err(WriteError::Version(version));
        }
        self.version = version;
        Ok(self)
    }

    /// Sets metadata `key` (entries are written in the order set).
    /// `general.alignment` also sets the alignment of tensor data.
    pub fn set(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<&mut Self, WriteError> {
        let key = key.into();
        let value = value.into();
        if key.len() as u64 > MAX_KEY_LEN {
            return Err(WriteError::KeyTooLong(key.len()));
        }
        if self.keys.contains(&key) {
            return Err(WriteError::DuplicateKey(key));
        }
        if let Value::Array(a) = &value {
            if depth(a) > MAX_ARRAY_DEPTH {
                return Err(WriteError::TooDeep(key));
            }
        }
        if key == ALIGNMENT_KEY {
            match value {
                Value::U32(a) if a.is_power_of_two() => self.alignment = a.into(),
                ref v => return Err(WriteError::Alignment(format!("{} {v}", v.type_name()))),
            }
        }
        self.keys.insert(key.clone());
        self.metadata.push((key, value));
        Ok(self)
    }

    /// Adds a tensor of type `ty` and dimensions `dims` (innermost first)
    /// whose data, in ggml's layout, is `data`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, WriteError> {
        let name = name.into();
        let data = data.into();
        let bad = |reason: String| WriteError::Tensor {
            name: name.clone(),
            reason,
        };
        if name.len() as u64 > MAX_TENSOR_NAME_LEN {
            return Err(bad(format!("name longer than {MAX_TENSOR_NAME_LEN} bytes")));
        }
        if self.names.contains(&name) {
            return Err(WriteError::DuplicateTensor(name));
        }
        if dims.len() > MAX_DIMS as usize {
            return Err(bad(format!("{} dimensions, at most 4", dims.len())));
        }
        let size = ty.byte_size(dims).map_err(|e| match e {
            ShapeError::Overflow => bad(format!("dimensions {dims:?} overflow")),
            ShapeError::RaggedRow => bad(format!(
                "first dimension is not a multiple of the {ty} block size {}",
                ty.block_elems()
            )),
        })?;
        if data.len() as u64 != size {
            return Err(bad(format!(
                "{} bytes of data, {dims:?} of {ty} takes {size}",
                data.len()
            )));
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            ty,
            dims: dims.to_vec(),
            data,
        });
        Ok(self)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes the file to `w`.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&self.version.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut head, key);
            head.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut head, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ty.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset = self.padded(offset + t.data.len() as u64);
        }
        let data_start = self.padded(head.len() as u64);
        head.resize(data_start as usize, 0);
        w.write_all(&head)?;
        for t in &self.tensors {
            w.write_all(&t.data)?;
            let pad = self.padded(t.data.len() as u64) - t.data.len() as u64;
            w.write_all(&vec![0u8; pad as usize])?;
        }
        Ok(())
    }

    fn padded(&self, n: u64) -> u64 {
        n.next_multiple_of(self.alignment)
    }
}

fn depth(a: &Array) -> usize {
    match a {
        Array::Array(v) => 1 + v.iter().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.element_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn each<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], f: fn(T) -> [u8; N]) {
        for &x in v {
            out.extend_from_slice(&f(x));
        }
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each(out, v, i8::to_le_bytes),
        Array::U16(v) => each(out, v, u16::to_le_bytes),
        Array::I16(v) => each(out, v, i16::to_le_bytes),
        Array::U32(v) => each(out, v, u32::to_le_bytes),
        Array::I32(v) => each(out, v, i32::to_le_bytes),
        Array::F32(v) => each(out, v, f32::to_le_bytes),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
        Array::U64(v) => each(out, v, u64::to_le_bytes),
        Array::I64(v) => each(out, v, i64::to_le_bytes),
        Array::F64(v) => each(out, v, f64::to_le_bytes),
    }
}
