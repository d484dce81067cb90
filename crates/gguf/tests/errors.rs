//! One test per way a file can be wrong: each corrupt copy gives its typed
//! error, naming the place (byte offset, key or tensor), and never panics.
//! Counts that would make a naive reader allocate terabytes come back as
//! errors before anything is allocated (the test would abort otherwise).

mod common;

use common::*;
use exodus_gguf::writer::GgufWriter;
use exodus_gguf::{GgmlType, Gguf, GgufError, MAX_ARRAY_DEPTH};

fn parse(bytes: &[u8]) -> Result<(), GgufError> {
    Gguf::parse(bytes).map(|_| ())
}

fn err(bytes: &[u8]) -> GgufError {
    parse(bytes).expect_err("corrupt file accepted")
}

#[test]
fn bad_magic() {
    let mut bytes = sample_bytes();
    bytes[0] = b'g';
    let e = err(&bytes);
    assert!(matches!(e, GgufError::BadMagic { ref found } if found == b"gGUF"));
    assert_eq!(
        e.to_string(),
        "not a GGUF file: the magic at byte 0 is \"gGUF\", expected \"GGUF\""
    );
    assert!(matches!(err(b"PK\x03"), GgufError::BadMagic { .. }));
    // A short prefix of the magic is a truncated file, not another format.
    assert!(matches!(err(b"GG"), GgufError::Truncated { at: 0, .. }));
    assert!(matches!(err(b""), GgufError::Truncated { .. }));
}

#[test]
fn truncated_at_every_byte() {
    let bytes = sample_bytes();
    let full = Gguf::parse(&bytes[..]).unwrap();
    let data_end = full
        .tensors()
        .iter()
        .map(|t| t.file_range().end)
        .max()
        .unwrap() as usize;
    for len in 0..data_end {
        match err(&bytes[..len]) {
            GgufError::Truncated {
                len: l, at, needed, ..
            } => {
                assert_eq!(l, len as u64);
                assert!(at + needed > l, "{len}: {at} + {needed}");
            }
            // A count or string length checked against the bytes left.
            GgufError::AbsurdCount { .. } => {}
            // Cut inside the data section.
            GgufError::DataPastEnd { end, .. } => {
                assert!(len >= full.data_offset() as usize || end > len as u64);
            }
            e => panic!("cut at {len}: unexpected {e}"),
        }
    }
    // The padding after the last tensor is optional.
    assert!(parse(&bytes[..data_end]).is_ok());
}

#[test]
fn truncation_message_names_the_place() {
    // Header 24, key 8 + 5, type 4: the u64 starts at byte 41.
    let bytes = Raw::new(3, 0, 1).key("t.u64", 10).bytes(&[1, 2, 3]).build();
    assert_eq!(
        err(&bytes).to_string(),
        "truncated file: metadata key `t.u64` needs 8 bytes at byte 41, but the file is 44 bytes long"
    );
}

#[test]
fn unsupported_version() {
    for version in [0u32, 1, 4, 0xffff] {
        let mut bytes = sample_bytes();
        put_u32(&mut bytes, 4, version);
        assert!(matches!(
            err(&bytes),
            GgufError::UnsupportedVersion { version: v } if v == version
        ));
    }
    let mut bytes = sample_bytes();
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let e = err(&bytes);
    assert!(matches!(e, GgufError::BigEndian { .. }));
    assert!(e.to_string().contains("big-endian"), "{e}");
}

#[test]
fn unknown_value_type() {
    let mut bytes = sample_bytes();
    let at = key_type_at(&bytes, "t.f64");
    put_u32(&mut bytes, at, 13);
    let e = err(&bytes);
    assert!(matches!(
        e,
        GgufError::UnknownValueType { type_id: 13, at: a, .. } if a == at as u64
    ));
    assert!(e.to_string().contains("metadata key `t.f64`"), "{e}");

    // The element type of an array.
    let mut bytes = sample_bytes();
    let at = key_type_at(&bytes, "a.u16") + 4;
    put_u32(&mut bytes, at, 99);
    assert!(matches!(
        err(&bytes),
        GgufError::UnknownValueType { type_id: 99, .. }
    ));
}

#[test]
fn bad_bool_and_bad_utf8() {
    let mut bytes = sample_bytes();
    let at = key_type_at(&bytes, "t.bool_true") + 4;
    bytes[at] = 2;
    assert!(matches!(err(&bytes), GgufError::BadBool { value: 2, .. }));

    let mut bytes = sample_bytes();
    let at = key_type_at(&bytes, "a.bool") + 4 + 4 + 8 + 1;
    bytes[at] = 7;
    assert!(matches!(
        err(&bytes),
        GgufError::BadBool { value: 7, at: a, .. } if a == at as u64
    ));

    let mut bytes = sample_bytes();
    let at = find(&bytes, "日本".as_bytes());
    bytes[at] = 0xff;
    let e = err(&bytes);
    assert!(matches!(e, GgufError::BadUtf8 { at: a, .. } if a == at as u64));
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    let mut bytes = sample_bytes();
    let at = find(&bytes, b"blk.0.ids");
    bytes[at] = 0xc0;
    assert!(matches!(err(&bytes), GgufError::BadUtf8 { .. }));
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    // Header counts.
    for (field, value) in [(16, u64::MAX), (16, 1 << 40), (8, u64::MAX), (8, 1 << 40)] {
        let mut bytes = sample_bytes();
        put_u64(&mut bytes, field, value);
        assert!(
            matches!(err(&bytes), GgufError::AbsurdCount { count, .. } if count == value),
            "{field} {value}"
        );
    }
    // Array lengths: 2^62 f64s would be 32 EiB.
    for (key, value) in [
        ("a.f64", 1u64 << 62),
        ("a.u8", u64::MAX),
        ("tokenizer.ggml.tokens", 1 << 40),
        ("a.nested", 1 << 33),
    ] {
        let mut bytes = sample_bytes();
        let at = key_type_at(&bytes, key) + 8;
        put_u64(&mut bytes, at, value);
        let e = err(&bytes);
        assert!(
            matches!(e, GgufError::AbsurdCount { count, at: a, .. } if count == value && a == at as u64),
            "{key}: {e}"
        );
    }
    // String lengths.
    let mut bytes = sample_bytes();
    let at = key_type_at(&bytes, "general.name") + 4;
    put_u64(&mut bytes, at, u64::MAX);
    assert!(matches!(err(&bytes), GgufError::AbsurdCount { .. }));
    let mut bytes = sample_bytes();
    let at = find(&bytes, &gguf_str(b"general.name"));
    put_u64(&mut bytes, at, 1 << 50);
    let e = err(&bytes);
    assert!(matches!(e, GgufError::AbsurdCount { .. }));
    assert!(
        e.to_string().contains("the key of metadata entry #1"),
        "{e}"
    );
    // A count that fits the bytes left is read normally.
    let small = Raw::new(3, 0, 1)
        .key("a", 9)
        .u32(0)
        .u64(3)
        .bytes(&[1, 2, 3])
        .build();
    assert!(parse(&small).is_ok());
    let too_many = Raw::new(3, 0, 1)
        .key("a", 9)
        .u32(0)
        .u64(4)
        .bytes(&[1, 2, 3])
        .build();
    assert!(matches!(
        err(&too_many),
        GgufError::AbsurdCount {
            count: 4,
            remaining: 3,
            ..
        }
    ));
}

#[test]
fn nesting_too_deep() {
    let nest = |levels: usize| {
        let mut raw = Raw::new(3, 0, 1);
        raw.key("deep", 9);
        for _ in 1..levels {
            raw.u32(9).u64(1);
        }
        raw.u32(0).u64(0);
        raw.build()
    };
    assert!(parse(&nest(MAX_ARRAY_DEPTH)).is_ok());
    assert!(matches!(
        err(&nest(MAX_ARRAY_DEPTH + 1)),
        GgufError::NestingTooDeep { .. }
    ));
    // Deep enough to overflow the stack if the reader recursed without limit.
    assert!(matches!(
        err(&nest(100_000)),
        GgufError::NestingTooDeep { .. }
    ));
}

#[test]
fn names_too_long() {
    let long = "n".repeat(65);
    let file = Raw::new(3, 1, 0)
        .tensor(&long, &[1], 0, 0)
        .pad(32)
        .zeros(4)
        .build();
    assert!(matches!(
        err(&file),
        GgufError::NameTooLong {
            len: 65,
            max: 64,
            ..
        }
    ));
    let ok = Raw::new(3, 1, 0)
        .tensor(&long[..64], &[1], 0, 0)
        .pad(32)
        .zeros(4)
        .build();
    assert!(parse(&ok).is_ok());
    let key = "k".repeat(65_536);
    let file = Raw::new(3, 0, 1).key(&key, 0).bytes(&[1]).build();
    assert!(matches!(
        err(&file),
        GgufError::NameTooLong { max: 65_535, .. }
    ));
}

#[test]
fn duplicate_key() {
    let file = Raw::new(3, 0, 2)
        .key("a.b", 0)
        .bytes(&[1])
        .key("a.b", 4)
        .u32(2)
        .build();
    let e = err(&file);
    assert!(matches!(e, GgufError::DuplicateKey { ref key, at: 40 } if key == "a.b"));
    assert_eq!(e.to_string(), "duplicate metadata key `a.b` at byte 40");
}

#[test]
fn duplicate_tensor() {
    let file = Raw::new(3, 2, 0)
        .tensor("w", &[1], 0, 0)
        .tensor("w", &[1], 0, 32)
        .pad(32)
        .zeros(64)
        .build();
    let e = err(&file);
    // Header 24, first info 8 + 1 + 4 + 8 + 4 + 8 = 33.
    assert!(matches!(e, GgufError::DuplicateTensor { ref name, at: 57 } if name == "w"));
    assert_eq!(e.to_string(), "duplicate tensor name `w` at byte 57");
}

#[test]
fn too_many_dims() {
    let file = Raw::new(3, 1, 0)
        .tensor("t", &[1, 1, 1, 1, 1], 0, 0)
        .pad(32)
        .zeros(4)
        .build();
    assert!(matches!(
        err(&file),
        GgufError::TooManyDims { n_dims: 5, .. }
    ));
    // n_dims = u32::MAX must not read (or allocate) 4 billion dims.
    let mut bytes = sample_bytes();
    let f = tensor_fields(&bytes, "blk.0.ids");
    put_u32(&mut bytes, f.n_dims_at, u32::MAX);
    let e = err(&bytes);
    assert!(matches!(e, GgufError::TooManyDims { ref name, .. } if name == "blk.0.ids"));
}

#[test]
fn unknown_tensor_type() {
    for id in [4u32, 5, 31, 36, 40, 1000] {
        let mut bytes = sample_bytes();
        let f = tensor_fields(&bytes, "blk.0.attn_norm.weight");
        put_u32(&mut bytes, f.type_at, id);
        let e = err(&bytes);
        assert!(
            matches!(
                e,
                GgufError::UnknownTensorType { ref name, type_id, at }
                    if name == "blk.0.attn_norm.weight" && type_id == id && at == f.type_at as u64
            ),
            "{e}"
        );
    }
}

#[test]
fn unsupported_tensor_type_is_reported_by_format() {
    let mut w = GgufWriter::new();
    for (name, ty) in [
        ("m", GgmlType::Mxfp4),
        ("i", GgmlType::Iq4Xs),
        ("d", GgmlType::F64),
    ] {
        let size = ty.byte_size(&[256]).unwrap() as usize;
        w.add_tensor(name, ty, &[256], vec![0; size]).unwrap();
    }
    let bytes = w.to_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    for t in file.tensors() {
        let e = t.format().unwrap_err();
        assert!(matches!(e, GgufError::UnsupportedTensorType { .. }));
        assert!(e.to_string().contains(t.ggml_type().name()));
        assert_eq!(file.data(t.name()).unwrap().len() as u64, t.byte_size());
    }
}

#[test]
fn shape_overflow_and_ragged_rows() {
    for dims in [
        vec![u64::MAX],
        vec![1 << 32, 1 << 32],
        vec![0, 1 << 40, 1 << 40],
        vec![1 << 62, 2],
    ] {
        let file = Raw::new(3, 1, 0).tensor("t", &dims, 0, 0).pad(32).build();
        let e = err(&file);
        assert!(
            matches!(e, GgufError::ShapeOverflow { dims: ref d, .. } if *d == dims),
            "{e}"
        );
    }
    // f32 bytes overflow though the element count fits.
    let file = Raw::new(3, 1, 0)
        .tensor("t", &[1 << 62], 0, 0)
        .pad(32)
        .build();
    assert!(matches!(err(&file), GgufError::ShapeOverflow { .. }));
    // Q4_0 rows must be whole blocks of 32.
    let file = Raw::new(3, 1, 0)
        .tensor("q", &[48, 2], 2, 0)
        .pad(32)
        .zeros(64)
        .build();
    let e = err(&file);
    assert!(matches!(
        e,
        GgufError::RaggedRow {
            ne0: 48,
            block: 32,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "tensor `q`: its first dimension 48 is not a multiple of the q4_0 block size 32"
    );
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48] {
        let bytes = Raw::new(3, 0, 1).key("general.alignment", 4).u32(a).build();
        assert!(matches!(err(&bytes), GgufError::BadAlignment { value } if value == a));
    }
    let bytes = Raw::new(3, 0, 1)
        .key("general.alignment", 10)
        .u64(32)
        .build();
    let e = err(&bytes);
    assert!(matches!(e, GgufError::WrongType { .. }));
    assert_eq!(
        e.to_string(),
        "metadata key `general.alignment` has type u64, expected u32"
    );
}

#[test]
fn misaligned_offset() {
    let mut bytes = sample_bytes();
    let f = tensor_fields(&bytes, "output.weight");
    let offset = u64::from_le_bytes(bytes[f.offset_at..f.offset_at + 8].try_into().unwrap());
    put_u64(&mut bytes, f.offset_at, offset + 4);
    let e = err(&bytes);
    assert!(matches!(
        e,
        GgufError::Misaligned { ref name, alignment: 32, .. } if name == "output.weight"
    ));
}

#[test]
fn tensor_data_past_the_end() {
    let bytes = sample_bytes();
    // Offsets far away, and at the edge of u64.
    for offset in [1u64 << 40, u64::MAX - 31] {
        let mut bytes = bytes.clone();
        let f = tensor_fields(&bytes, "blk.0.attn_norm.weight");
        put_u64(&mut bytes, f.offset_at, offset);
        let e = err(&bytes);
        assert!(
            matches!(e, GgufError::DataPastEnd { ref name, .. } if name == "blk.0.attn_norm.weight"),
            "{e}"
        );
    }
    // A shape that makes the data run past the end.
    let mut bytes = bytes.clone();
    let f = tensor_fields(&bytes, "output.weight");
    put_u64(&mut bytes, f.n_dims_at + 4 + 8, 1000);
    let e = err(&bytes);
    assert!(matches!(e, GgufError::DataPastEnd { .. }));
    assert!(
        e.to_string().contains("runs past the end of the file"),
        "{e}"
    );
}

#[test]
fn overlapping_tensors() {
    let mut bytes = sample_bytes();
    let first = tensor_fields(&bytes, "token_embd.weight");
    let second = tensor_fields(&bytes, "blk.0.attn_norm.weight");
    // Point the second tensor 32 bytes into the first.
    let base = u64::from_le_bytes(
        bytes[first.offset_at..first.offset_at + 8]
            .try_into()
            .unwrap(),
    );
    put_u64(&mut bytes, second.offset_at, base + 32);
    let e = err(&bytes);
    assert!(
        matches!(
            e,
            GgufError::Overlap { ref first, ref second, .. }
                if first == "token_embd.weight" && second == "blk.0.attn_norm.weight"
        ),
        "{e}"
    );
    // Two tensors at the same offset.
    let file = Raw::new(3, 2, 0)
        .tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 0)
        .pad(32)
        .zeros(32)
        .build();
    assert!(matches!(err(&file), GgufError::Overlap { .. }));
    // Empty tensors overlap nothing.
    let file = Raw::new(3, 2, 0)
        .tensor("a", &[8], 0, 0)
        .tensor("b", &[0], 0, 0)
        .pad(32)
        .zeros(32)
        .build();
    assert!(parse(&file).is_ok());
}

#[test]
fn getters_and_lookups() {
    let bytes = sample_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    let meta = file.metadata();
    assert!(matches!(
        meta.get_u32("llama.block_count"),
        Err(GgufError::MissingKey { .. })
    ));
    assert_eq!(
        meta.get_u32("general.name").unwrap_err().to_string(),
        "metadata key `general.name` has type string, expected u32"
    );
    assert_eq!(
        meta.get_str("a.u32").unwrap_err().to_string(),
        "metadata key `a.u32` has type array of u32, expected string"
    );
    assert!(matches!(
        meta.get_array("t.u8"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        meta.get_count("t.i8"),
        Err(GgufError::OutOfRange { .. })
    ));
    assert!(matches!(
        meta.get_count("t.f32"),
        Err(GgufError::WrongType { .. })
    ));
    assert_eq!(
        file.data("missing").unwrap_err().to_string(),
        "no tensor named `missing`"
    );
}
