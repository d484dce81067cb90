//! Files written by the writer read back exactly: every metadata type,
//! tensors of several types and shapes, versions 2 and 3, other
//! alignments, from a slice, a `Vec` and a memory map.

mod common;

use common::*;
use exodus_gguf::writer::{GgufWriter, WriteError};
use exodus_gguf::{Array, GgmlType, Gguf, GgufError, GgufFile, Value, ValueType};
use exodus_numerics::Format;

#[test]
fn every_metadata_type_round_trips() {
    let bytes = sample_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    assert_eq!(file.version(), 3);
    let meta = file.metadata();
    let expected = sample_metadata();
    assert_eq!(meta.len(), expected.len());
    // File order is kept.
    for ((k, v), (ek, ev)) in meta.iter().zip(&expected) {
        assert_eq!(k, *ek);
        assert_eq!(v, ev, "{k}");
    }
    assert_eq!(meta.get_str("general.name").unwrap(), "tiny ✓ model");
    assert_eq!(meta.get_str("general.empty").unwrap(), "");
    assert_eq!(meta.get_u8("t.u8").unwrap(), 200);
    assert_eq!(meta.get_i8("t.i8").unwrap(), -100);
    assert_eq!(meta.get_u16("t.u16").unwrap(), 60_000);
    assert_eq!(meta.get_i16("t.i16").unwrap(), -30_000);
    assert_eq!(meta.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(meta.get_i32("t.i32").unwrap(), -2_000_000_000);
    assert_eq!(meta.get_u64("t.u64").unwrap(), u64::MAX - 1);
    assert_eq!(meta.get_i64("t.i64").unwrap(), i64::MIN + 1);
    assert_eq!(meta.get_f32("t.f32").unwrap(), -1.5e-5);
    assert_eq!(meta.get_f64("t.f64").unwrap(), std::f64::consts::PI);
    assert!(meta.get_bool("t.bool_true").unwrap());
    assert!(!meta.get_bool("t.bool_false").unwrap());
    assert_eq!(meta.get_count("t.u8").unwrap(), 200);
    assert_eq!(
        meta.get_slice::<String>("tokenizer.ggml.tokens").unwrap()[4],
        "日本"
    );
    assert_eq!(meta.get_slice::<i8>("a.i8").unwrap(), &[-128, 0, 127]);
    assert_eq!(
        meta.get_slice::<bool>("a.bool").unwrap(),
        &[true, false, true]
    );
    let f = meta.get_slice::<f32>("a.f32").unwrap();
    assert!(f[2].is_infinite());
    assert!(meta.get_slice::<f64>("a.f64").unwrap()[1].is_sign_negative());
    let nested = meta.get_array("a.nested").unwrap();
    assert_eq!(nested.element_type(), ValueType::Array);
    let inner = nested.as_slice::<Array>().unwrap();
    assert_eq!(
        inner[2].as_slice::<Array>().unwrap()[0],
        Array::from(vec![true])
    );
    assert!(meta.get_array("a.empty").unwrap().is_empty());
}

#[test]
fn tensors_round_trip_zero_copy() {
    let bytes = sample_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_offset() % 32, 0);
    let expected = sample_tensors();
    assert_eq!(file.tensors().len(), expected.len());
    let range = bytes.as_ptr_range();
    for (t, (name, ty, dims, data)) in file.tensors().iter().zip(&expected) {
        assert_eq!(t.name(), *name);
        assert_eq!(t.ggml_type(), *ty);
        assert_eq!(t.dims(), &dims[..]);
        assert_eq!(t.offset() % 32, 0);
        assert_eq!(t.file_offset(), file.data_offset() + t.offset());
        assert_eq!(t.byte_size() as usize, data.len());
        let got = file.data(name).unwrap();
        assert_eq!(got, &data[..], "{name}");
        // Borrowed from the file's bytes, not copied.
        assert!(got.is_empty() || range.contains(&got.as_ptr()));
        assert_eq!(file.tensor(name), Some(t));
    }
    let q4 = file.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!(q4.elements(), 128);
    assert_eq!(q4.row_len(), 32);
    assert_eq!(q4.rows(), 4);
    assert_eq!(q4.format().unwrap(), "q4_1".parse::<Format>().unwrap());
    let scalar = file.tensor("blk.0.scale").unwrap();
    assert_eq!((scalar.elements(), scalar.byte_size()), (1, 2));
    assert_eq!(file.tensor("blk.0.empty").unwrap().byte_size(), 0);
    assert!(file.tensor("nope").is_none());
    assert_eq!(
        file.tensor_bytes(),
        expected.iter().map(|t| t.3.len() as u64).sum::<u64>()
    );
}

#[test]
fn formats_map_and_data_decodes() {
    // A real Q8_0 tensor: quantize with exodus-numerics, store, read back.
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 8.0).collect();
    let q8: Format = "q8_0".parse().unwrap();
    let encoded = q8.quantize(&x, &Default::default()).unwrap();
    let mut w = GgufWriter::new();
    w.add_tensor("w", GgmlType::Q8_0, &[32, 2], encoded.clone())
        .unwrap();
    let bytes = w.to_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    let t = file.tensor("w").unwrap();
    let f = t.format().unwrap();
    let y = f
        .dequantize(file.data("w").unwrap(), t.elements() as usize)
        .unwrap();
    assert_eq!(y, q8.dequantize(&encoded, 64).unwrap());

    // Known ggml types without an exodus format parse, but say so.
    let bytes = sample_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    let ids = file.tensor("blk.0.ids").unwrap();
    let err = ids.format().unwrap_err();
    assert!(matches!(
        err,
        GgufError::UnsupportedTensorType { ref name, ty: GgmlType::I32 } if name == "blk.0.ids"
    ));
    assert!(err.to_string().contains("tensor `blk.0.ids` has type i32"));
    assert_eq!(
        file.data("blk.0.ids").unwrap().len(),
        12,
        "data is still there"
    );
}

#[test]
fn version_2_and_other_alignments() {
    for (version, alignment) in [(2, 32u32), (3, 1), (3, 8), (2, 64), (3, 4096)] {
        let mut w = GgufWriter::new();
        w.version(version).unwrap();
        w.set("general.alignment", alignment).unwrap();
        w.set("x", "y").unwrap();
        w.add_tensor("a", GgmlType::F32, &[3], pattern(12, 1))
            .unwrap();
        w.add_tensor("b", GgmlType::Q4_0, &[32], pattern(18, 2))
            .unwrap();
        let bytes = w.to_bytes();
        let file = Gguf::parse(bytes.clone()).unwrap();
        assert_eq!(file.version(), version);
        assert_eq!(file.alignment(), alignment as u64);
        assert_eq!(file.data_offset() % alignment as u64, 0);
        assert_eq!(file.data("a").unwrap(), &pattern(12, 1)[..]);
        assert_eq!(file.data("b").unwrap(), &pattern(18, 2)[..]);
        assert_eq!(file.tensor("b").unwrap().offset() % alignment as u64, 0);
        assert_eq!(file.into_bytes(), bytes);
    }
}

#[test]
fn no_tensors_no_metadata() {
    let bytes = GgufWriter::new().to_bytes();
    assert_eq!(bytes.len(), 32, "24-byte header padded to 32");
    let file = Gguf::parse(&bytes[..]).unwrap();
    assert!(file.metadata().is_empty());
    assert!(file.tensors().is_empty());
    // Without tensors the padding may be missing.
    let file = Gguf::parse(&bytes[..24]).unwrap();
    assert_eq!(file.data_offset(), 32);
}

#[test]
fn open_maps_and_read_copies() {
    let dir = std::env::temp_dir().join(format!("exodus-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.gguf");
    let bytes = sample_bytes();
    std::fs::write(&path, &bytes).unwrap();
    let mapped = GgufFile::open(&path).unwrap();
    let read = Gguf::read(&path).unwrap();
    assert_eq!(mapped.bytes(), &bytes[..]);
    assert_eq!(mapped.len(), bytes.len() as u64);
    for t in mapped.tensors() {
        assert_eq!(mapped.data(t.name()).unwrap(), read.data(t.name()).unwrap());
        assert_eq!(mapped.tensor_data(t).unwrap().len() as u64, t.byte_size());
    }
    // A tensor info from another file is refused, not misread.
    let other = {
        let mut w = GgufWriter::new();
        w.add_tensor("blk.0.scale", GgmlType::F32, &[1], vec![0; 4])
            .unwrap();
        Gguf::parse(w.to_bytes()).unwrap()
    };
    let foreign = other.tensor("blk.0.scale").unwrap();
    assert!(matches!(
        mapped.tensor_data(foreign),
        Err(GgufError::MissingTensor { .. })
    ));

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        GgufFile::open(&empty),
        Err(GgufError::Truncated { .. })
    ));
    let missing = dir.join("missing.gguf");
    let err = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("missing.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_refuses_what_the_reader_rejects() {
    let mut w = GgufWriter::new();
    w.set("k", 1u32).unwrap();
    assert!(matches!(w.set("k", 2u32), Err(WriteError::DuplicateKey(_))));
    assert!(matches!(w.version(1), Err(WriteError::Version(1))));
    assert!(matches!(
        w.set("general.alignment", 48u32),
        Err(WriteError::Alignment(_))
    ));
    assert!(matches!(
        w.set("general.alignment", 64u64),
        Err(WriteError::Alignment(_))
    ));
    assert!(matches!(
        w.set("k".repeat(65_536), 1u8),
        Err(WriteError::KeyTooLong(65_536))
    ));
    let mut deep = Array::from(vec![1u8]);
    for _ in 0..16 {
        deep = Array::from(vec![deep]);
    }
    assert!(matches!(w.set("deep", deep), Err(WriteError::TooDeep(_))));
    w.add_tensor("t", GgmlType::F32, &[2], vec![0; 8]).unwrap();
    assert!(matches!(
        w.add_tensor("t", GgmlType::F32, &[2], vec![0; 8]),
        Err(WriteError::DuplicateTensor(_))
    ));
    for (dims, len) in [
        (&[2u64][..], 7),          // wrong data length
        (&[1, 1, 1, 1, 1][..], 4), // five dimensions
        (&[1u64 << 62, 4][..], 0), // overflow
    ] {
        assert!(matches!(
            w.add_tensor("u", GgmlType::F32, dims, vec![0; len]),
            Err(WriteError::Tensor { .. })
        ));
    }
    assert!(matches!(
        w.add_tensor("u", GgmlType::Q4_0, &[16], vec![0; 9]),
        Err(WriteError::Tensor { .. })
    ));
    assert!(matches!(
        w.add_tensor("n".repeat(65), GgmlType::F32, &[1], vec![0; 4]),
        Err(WriteError::Tensor { .. })
    ));
    // What was accepted still makes a valid file.
    let file = Gguf::parse(w.to_bytes()).unwrap();
    assert_eq!(file.metadata().get_u32("k").unwrap(), 1);
    assert_eq!(file.tensors().len(), 1);
}

#[test]
fn value_summaries_for_people() {
    let bytes = sample_bytes();
    let file = Gguf::parse(&bytes[..]).unwrap();
    let meta = file.metadata();
    let tokens = meta.get("tokenizer.ggml.tokens").unwrap();
    assert_eq!(
        tokens.summary(80, 3),
        "[string; 5] [\"<s>\", \"</s>\", \"Ġthe\", …]"
    );
    assert_eq!(meta.get("t.u8").unwrap().summary(80, 3), "200");
    assert_eq!(
        meta.get("a.nested").unwrap().summary(80, 3),
        "[array; 4] [[u8; 2], [string; 1], [array; 1], …]"
    );
    assert_eq!(
        Value::from("x".repeat(100)).summary(80, 3),
        format!("\"{}\"… (100 bytes)", "x".repeat(80))
    );
}
