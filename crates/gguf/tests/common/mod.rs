//! Test helpers: a valid sample file with every metadata type and a few
//! tensors (built with the crate's writer), a raw byte builder for files
//! the writer refuses to write, and finders for the fields of a built file
//! so tests can corrupt exactly one of them.

#![allow(dead_code)]

use exodus_gguf::writer::GgufWriter;
use exodus_gguf::{Array, GgmlType, Value};

/// Deterministic bytes for tensor data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every metadata entry of the sample file: each scalar type, strings
/// (empty, multi-byte), arrays of each type, nested and empty arrays.
pub fn sample_metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::from("llama")),
        ("general.name", Value::from("tiny ✓ model")),
        ("general.empty", Value::from("")),
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60_000)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX - 1)),
        ("t.i64", Value::I64(i64::MIN + 1)),
        ("t.f32", Value::F32(-1.5e-5)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("t.bool_true", Value::Bool(true)),
        ("t.bool_false", Value::Bool(false)),
        ("a.u8", Value::from(vec![0u8, 1, 255])),
        ("a.i8", Value::from(vec![-128i8, 0, 127])),
        ("a.u16", Value::from(vec![1u16, 65_535])),
        ("a.i16", Value::from(vec![-1i16, 300])),
        ("a.u32", Value::from(vec![7u32, 8, 9])),
        ("a.i32", Value::from(vec![-7i32, 3])),
        ("a.u64", Value::from(vec![1u64 << 40])),
        ("a.i64", Value::from(vec![-(1i64 << 40)])),
        ("a.f32", Value::from(vec![0.5f32, -0.25, f32::INFINITY])),
        ("a.f64", Value::from(vec![1e300f64, -0.0])),
        ("a.bool", Value::from(vec![true, false, true])),
        (
            "tokenizer.ggml.tokens",
            Value::from(vec!["<s>", "</s>", "Ġthe", "", "日本"]),
        ),
        ("a.empty", Value::from(Vec::<u32>::new())),
        (
            "a.nested",
            Value::from(vec![
                Array::from(vec![1u8, 2]),
                Array::from(vec!["x".to_string()]),
                Array::from(vec![Array::from(vec![true])]),
                Array::from(Vec::<f64>::new()),
            ]),
        ),
    ]
}

/// The sample's tensors: `(name, type, dims, data)`.
pub fn sample_tensors() -> Vec<(&'static str, GgmlType, Vec<u64>, Vec<u8>)> {
    let t = |name, ty: GgmlType, dims: Vec<u64>, seed| {
        let len = ty.byte_size(&dims).unwrap() as usize;
        (name, ty, dims, pattern(len, seed))
    };
    vec![
        t("token_embd.weight", GgmlType::Q8_0, vec![64, 3], 1),
        t("blk.0.attn_norm.weight", GgmlType::F32, vec![5], 2),
        t("blk.0.ffn_up.weight", GgmlType::Q4_1, vec![32, 2, 1, 2], 3),
        t("blk.0.scale", GgmlType::F16, vec![], 4),
        t("blk.0.ids", GgmlType::I32, vec![3], 5),
        t("blk.0.empty", GgmlType::Q4K, vec![256, 0], 6),
        t("output.weight", GgmlType::Q6K, vec![256, 1], 7),
    ]
}

/// A writer holding the sample metadata and tensors.
pub fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in sample_metadata() {
        w.set(k, v).unwrap();
    }
    for (name, ty, dims, data) in sample_tensors() {
        w.add_tensor(name, ty, &dims, data).unwrap();
    }
    w
}

/// The sample file's bytes.
pub fn sample_bytes() -> Vec<u8> {
    sample_writer().to_bytes()
}

/// Position of the first occurrence of `needle`.
pub fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in file", String::from_utf8_lossy(needle)))
}

/// A GGUF string: u64 length then bytes.
pub fn gguf_str(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// Where the value type id of metadata key `key` is (the value follows).
pub fn key_type_at(bytes: &[u8], key: &str) -> usize {
    find(bytes, &gguf_str(key.as_bytes())) + 8 + key.len()
}

/// Fields of tensor info `name`: where n_dims, the ggml type and the
/// offset are.
pub struct TensorFields {
    pub n_dims_at: usize,
    pub type_at: usize,
    pub offset_at: usize,
}

pub fn tensor_fields(bytes: &[u8], name: &str) -> TensorFields {
    let n_dims_at = find(bytes, &gguf_str(name.as_bytes())) + 8 + name.len();
    let n_dims = u32::from_le_bytes(bytes[n_dims_at..n_dims_at + 4].try_into().unwrap());
    let type_at = n_dims_at + 4 + 8 * n_dims as usize;
    TensorFields {
        n_dims_at,
        type_at,
        offset_at: type_at + 4,
    }
}

pub fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Builds files byte by byte, for what the writer refuses to write.
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version and both counts.
    pub fn new(version: u32, tensors: u64, entries: u64) -> Raw {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&tensors.to_le_bytes());
        b.extend_from_slice(&entries.to_le_bytes());
        Raw(b)
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Raw {
        self.0.extend_from_slice(b);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Raw {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Raw {
        self.bytes(&v.to_le_bytes())
    }

    pub fn str(&mut self, s: &str) -> &mut Raw {
        self.bytes(&gguf_str(s.as_bytes()))
    }

    /// A metadata key and value type id; the value is up to the caller.
    pub fn key(&mut self, key: &str, type_id: u32) -> &mut Raw {
        self.str(key).u32(type_id)
    }

    /// A tensor info.
    pub fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Raw {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }

    /// Zero padding up to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> &mut Raw {
        let len = self.0.len().next_multiple_of(align);
        self.0.resize(len, 0);
        self
    }

    pub fn zeros(&mut self, n: usize) -> &mut Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        self.0.clone()
    }
}
