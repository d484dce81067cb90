//! The parser: header, metadata, tensor infos, then the layout of the data
//! section, each number checked against the file before it is used.
//!
//! Memory: every count is checked against the bytes left in the file
//! (times the fewest bytes one item can take) before anything is
//! allocated, and arrays are stored unboxed, so what the parser allocates
//! is a small multiple of the file's size whatever the file says. Nested
//! arrays are limited to [`MAX_ARRAY_DEPTH`] levels, so recursion depth is
//! bounded too.

use std::collections::HashMap;

use crate::cursor::{Cursor, Place};
use crate::error::{GgufError, Result};
use crate::ggml_type::{GgmlType, ShapeError};
use crate::metadata::Metadata;
use crate::tensor::TensorInfo;
use crate::value::{Array, Value, ValueType};

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Deepest nesting of arrays of arrays the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = 16;
/// Longest metadata key, in bytes (the specification's limit).
pub const MAX_KEY_LEN: u64 = 65_535;
/// Longest tensor name, in bytes (the specification's limit).
pub const MAX_TENSOR_NAME_LEN: u64 = 64;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Fewest bytes of one metadata entry: key length, type, a 1-byte value.
const MIN_ENTRY_LEN: u64 = 8 + 4 + 1;
/// Fewest bytes of one tensor info: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 4 + 8;
/// Where the header keeps the tensor count (after magic and version).
const TENSOR_COUNT_AT: u64 = 8;

/// Everything the parser learned; the bytes stay with the caller.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub index: HashMap<String, usize>,
}

/// Parses and validates a whole file.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed> {
    let mut cur = Cursor::new(bytes);
    let (version, tensor_count, entry_count) = header(&mut cur)?;
    let metadata = metadata(&mut cur, entry_count)?;
    let alignment = alignment(&metadata)?;
    let (mut tensors, index) = tensor_infos(&mut cur, tensor_count, alignment)?;
    let data_offset = cur
        .pos()
        .checked_next_multiple_of(alignment)
        .unwrap_or(u64::MAX);
    place_data(&mut tensors, data_offset, bytes.len() as u64)?;
    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
        index,
    })
}

/// Magic, version, tensor count, metadata entry count.
fn header(cur: &mut Cursor<'_>) -> Result<(u32, u64, u64)> {
    let place = Place::Header;
    let head = cur.take(cur.remaining().min(4), place)?;
    if !MAGIC.starts_with(head) {
        return Err(GgufError::BadMagic {
            found: head.to_vec(),
        });
    }
    if head.len() < 4 {
        cur.seek(0);
        return Err(cur.truncated(place, 4));
    }
    let version = cur.u32(place)?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 1..=3) => {
            return Err(GgufError::BigEndian { version: v });
        }
        v => return Err(GgufError::UnsupportedVersion { version: v }),
    }
    let tensors_at = cur.pos();
    let tensor_count = cur.u64(place)?;
    let entries_at = cur.pos();
    let entry_count = cur.u64(place)?;
    cur.check_count(entry_count, MIN_ENTRY_LEN, entries_at, place)?;
    cur.check_count(tensor_count, MIN_TENSOR_INFO_LEN, tensors_at, place)?;
    Ok((version, tensor_count, entry_count))
}

fn metadata(cur: &mut Cursor<'_>, count: u64) -> Result<Metadata> {
    let mut metadata = Metadata::default();
    for i in 0..count {
        let at = cur.pos();
        let key = cur.string(MAX_KEY_LEN, Place::KeyName(i))?;
        if metadata.contains(key) {
            return Err(GgufError::DuplicateKey {
                key: key.to_string(),
                at,
            });
        }
        let place = Place::Key(key);
        let ty = value_type(cur, place)?;
        let value = value(cur, ty, place)?;
        // Not a duplicate: checked above.
        let _ = metadata.insert(key, value);
    }
    Ok(metadata)
}

fn value_type(cur: &mut Cursor<'_>, place: Place<'_>) -> Result<ValueType> {
    let at = cur.pos();
    let id = cur.u32(place)?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        what: place.to_string(),
        at,
        type_id: id,
    })
}

fn value(cur: &mut Cursor<'_>, ty: ValueType, place: Place<'_>) -> Result<Value> {
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.u8(place)?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array(place)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array(place)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array(place)?)),
        ValueType::U32 => Value::U32(cur.u32(place)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array(place)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array(place)?)),
        ValueType::U64 => Value::U64(cur.u64(place)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array(place)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array(place)?)),
        ValueType::Bool => {
            let at = cur.pos();
            Value::Bool(boolean(cur.u8(place)?, at, place)?)
        }
        ValueType::String => Value::String(cur.string(u64::MAX, place)?.to_string()),
        ValueType::Array => Value::Array(array(cur, place, 0)?),
    })
}

fn boolean(byte: u8, at: u64, place: Place<'_>) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::BadBool {
            what: place.to_string(),
            at,
            value,
        }),
    }
}

/// An array (element type, count, elements) at nesting level `depth`.
fn array(cur: &mut Cursor<'_>, place: Place<'_>, depth: usize) -> Result<Array> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            what: place.to_string(),
            at: cur.pos(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    let ty = value_type(cur, place)?;
    let len_at = cur.pos();
    let len = cur.u64(place)?;
    let n = cur.check_count(len, ty.min_encoded_len(), len_at, place)?;
    Ok(match ty {
        ValueType::U8 => Array::U8(cur.take(n as u64, place)?.to_vec()),
        ValueType::I8 => Array::I8(fixed(cur, n, place, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(fixed(cur, n, place, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(fixed(cur, n, place, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(fixed(cur, n, place, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(fixed(cur, n, place, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(fixed(cur, n, place, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(fixed(cur, n, place, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(fixed(cur, n, place, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(fixed(cur, n, place, f64::from_le_bytes)?),
        ValueType::Bool => {
            let at = cur.pos();
            let bytes = cur.take(n as u64, place)?;
            let mut out = Vec::with_capacity(n);
            for (i, &b) in bytes.iter().enumerate() {
                out.push(boolean(b, at + i as u64, place)?);
            }
            Array::Bool(out)
        }
        ValueType::String => Array::String(
            (0..n)
                .map(|_| cur.string(u64::MAX, place).map(str::to_string))
                .collect::<Result<_>>()?,
        ),
        ValueType::Array => Array::Array(
            (0..n)
                .map(|_| array(cur, place, depth + 1))
                .collect::<Result<_>>()?,
        ),
    })
}

/// `n` fixed-size little-endian numbers (`n * N` bytes, already known to
/// fit in the file).
fn fixed<const N: usize, T>(
    cur: &mut Cursor<'_>,
    n: usize,
    place: Place<'_>,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let needed = (n as u64).saturating_mul(N as u64);
    let bytes = cur.take(needed, place)?;
    bytes
        .chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).map(decode))
        .collect::<Result<Vec<T>, _>>()
        .map_err(|_| cur.truncated(place, needed))
}

/// `general.alignment`: a power-of-two u32, 32 when absent.
fn alignment(metadata: &Metadata) -> Result<u64> {
    match metadata.get(ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT.into()),
        Some(&Value::U32(a)) if a.is_power_of_two() => Ok(a.into()),
        Some(&Value::U32(a)) => Err(GgufError::BadAlignment { value: a }),
        Some(v) => Err(GgufError::WrongType {
            key: ALIGNMENT_KEY.to_string(),
            found: v.type_name(),
            expected: "u32".to_string(),
        }),
    }
}

/// The tensor infos, with shapes, types and alignment checked; their data
/// positions are filled in by [`place_data`].
fn tensor_infos(
    cur: &mut Cursor<'_>,
    count: u64,
    alignment: u64,
) -> Result<(Vec<TensorInfo>, HashMap<String, usize>)> {
    let n = cur.check_count(count, MIN_TENSOR_INFO_LEN, TENSOR_COUNT_AT, Place::Header)?;
    let mut tensors = Vec::with_capacity(n);
    let mut index = HashMap::with_capacity(n);
    for i in 0..count {
        let at = cur.pos();
        let name = cur.string(MAX_TENSOR_NAME_LEN, Place::TensorName(i))?;
        if index.contains_key(name) {
            return Err(GgufError::DuplicateTensor {
                name: name.to_string(),
                at,
            });
        }
        let place = Place::Tensor(name);
        let dims_at = cur.pos();
        let n_dims = cur.u32(place)?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                name: name.to_string(),
                at: dims_at,
                n_dims,
            });
        }
        let dims = (0..n_dims)
            .map(|_| cur.u64(place))
            .collect::<Result<Vec<u64>>>()?;
        let type_at = cur.pos();
        let type_id = cur.u32(place)?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            name: name.to_string(),
            at: type_at,
            type_id,
        })?;
        let offset = cur.u64(place)?;
        let shape_error = |e| match e {
            ShapeError::Overflow => GgufError::ShapeOverflow {
                name: name.to_string(),
                dims: dims.clone(),
            },
            ShapeError::RaggedRow => GgufError::RaggedRow {
                name: name.to_string(),
                ty,
                ne0: dims.first().copied().unwrap_or(1),
                block: ty.block_elems(),
            },
        };
        let size = ty.byte_size(&dims).map_err(shape_error)?;
        let elements = GgmlType::elements(&dims).map_err(shape_error)?;
        if offset % alignment != 0 {
            return Err(GgufError::Misaligned {
                name: name.to_string(),
                offset,
                alignment,
            });
        }
        index.insert(name.to_string(), tensors.len());
        tensors.push(TensorInfo {
            name: name.to_string(),
            dims,
            ty,
            offset,
            start: 0,
            size,
            elements,
        });
    }
    Ok((tensors, index))
}

/// Places each tensor's data at `data_offset + offset`, checks it lies in
/// the file and that no two tensors share a byte.
fn place_data(tensors: &mut [TensorInfo], data_offset: u64, len: u64) -> Result<()> {
    for t in tensors.iter_mut() {
        let start = data_offset.checked_add(t.offset);
        match start.and_then(|s| Some((s, s.checked_add(t.size)?))) {
            Some((s, end)) if end <= len => t.start = s,
            _ => {
                let start = data_offset.saturating_add(t.offset);
                return Err(GgufError::DataPastEnd {
                    name: t.name.clone(),
                    start,
                    end: start.saturating_add(t.size),
                    len,
                });
            }
        }
    }
    let mut by_start: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size > 0).collect();
    by_start.sort_by_key(|t| (t.start, t.size));
    for pair in by_start.windows(2) {
        if let [a, b] = pair {
            if a.start + a.size > b.start {
                return Err(GgufError::Overlap {
                    first: a.name.clone(),
                    first_start: a.start,
                    first_end: a.start + a.size,
                    second: b.name.clone(),
                    second_start: b.start,
                    second_end: b.start + b.size,
                });
            }
        }
    }
    Ok(())
}
