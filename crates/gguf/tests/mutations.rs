//! Thousands of deterministic random mutations of a valid file (bit flips,
//! overwritten numbers, truncations, inserted and deleted bytes): the
//! parser never panics, and what it accepts is consistent and bounded
//! (every tensor inside the file, no overlaps, metadata no larger than a
//! small multiple of the file).

mod common;

use common::*;
use exodus_gguf::{Array, Gguf, Value};

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    // One to three mutations on top of each other.
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => {
                let bit = rng.below(8);
                if let Some(x) = b.get_mut(at) {
                    *x ^= 1 << bit;
                }
            }
            1 => {
                // An interesting number over a 4- or 8-byte field.
                let values = [0u64, 1, 2, 31, 32, 255, 1 << 31, 1 << 32, 1 << 62, u64::MAX];
                let v = values[rng.below(values.len())].to_le_bytes();
                let n = if rng.below(2) == 0 { 4 } else { 8 };
                for (i, &x) in v.iter().take(n).enumerate() {
                    if let Some(y) = b.get_mut(at + i) {
                        *y = x;
                    }
                }
            }
            2 => b.truncate(at),
            3 => {
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, fill);
            }
            4 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            _ => {
                if let Some(x) = b.get_mut(at) {
                    *x = rng.next() as u8;
                }
            }
        }
    }
    b
}

/// Rough heap bytes behind a value (what the parser allocated for it).
fn value_heap(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => array_heap(a),
        _ => 0,
    }
}

fn array_heap(a: &Array) -> usize {
    match a {
        Array::String(v) => v.iter().map(|s| 24 + s.len()).sum(),
        Array::Array(v) => v.iter().map(|a| 32 + array_heap(a)).sum(),
        Array::U64(v) => 8 * v.len(),
        Array::I64(v) => 8 * v.len(),
        Array::F64(v) => 8 * v.len(),
        Array::U32(v) => 4 * v.len(),
        Array::I32(v) => 4 * v.len(),
        Array::F32(v) => 4 * v.len(),
        Array::U16(v) => 2 * v.len(),
        Array::I16(v) => 2 * v.len(),
        a => a.len(),
    }
}

/// Touches every accessor of an accepted file and checks its invariants.
fn check_accepted(bytes: &[u8]) {
    let Ok(file) = Gguf::parse(bytes) else {
        return;
    };
    let len = bytes.len() as u64;
    assert!(matches!(file.version(), 2 | 3));
    assert!(file.alignment().is_power_of_two());
    let meta = file.metadata();
    let mut heap = 0;
    for (key, value) in meta.iter() {
        heap += key.len() * 2 + value_heap(value);
        assert!(meta.get(key).is_some_and(|v| std::ptr::eq(v, value)));
        let _ = value.summary(80, 5);
        let _ = value.type_name();
        let _ = meta.get_str(key);
        let _ = meta.get_u32(key);
        let _ = meta.get_count(key);
        let _ = meta.get_array(key);
        let _ = meta.get_slice::<String>(key);
    }
    assert!(
        heap as u64 <= 4 * len,
        "metadata heap {heap} for {len} bytes"
    );
    let mut ranges = Vec::new();
    for t in file.tensors() {
        assert!(t.dims().len() <= 4);
        let range = t.file_range();
        assert!(range.end <= len);
        assert!(t.file_offset() >= file.data_offset());
        assert_eq!(t.offset() % file.alignment(), 0);
        assert_eq!(t.ggml_type().byte_size(t.dims()), Ok(t.byte_size()));
        let data = file.data(t.name()).unwrap();
        assert_eq!(data.len() as u64, t.byte_size());
        if let Ok(format) = t.format() {
            assert_eq!(
                format.encoded_len(t.elements() as usize, false).unwrap() as u64,
                t.byte_size()
            );
        }
        let _ = (t.rows(), t.row_len());
        if !range.is_empty() {
            ranges.push(range);
        }
    }
    ranges.sort_by_key(|r| r.start);
    for pair in ranges.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }
    assert!(file.tensor_bytes() <= len);
}

#[test]
fn mutations_never_panic() {
    let original = sample_bytes();
    check_accepted(&original);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..5000 {
        let bytes = mutate(&mut rng, &original);
        match Gguf::parse(&bytes[..]) {
            Ok(_) => accepted += 1,
            Err(e) => {
                rejected += 1;
                // Every error renders.
                assert!(!e.to_string().is_empty());
            }
        }
        check_accepted(&bytes);
    }
    eprintln!("{accepted} mutants accepted, {rejected} rejected");
    // Both outcomes happen: the mutations reach past the header, and some
    // (changed tensor bytes, say) leave a valid file.
    assert!(accepted > 100 && rejected > 1000, "{accepted} {rejected}");
}

#[test]
fn every_single_byte_value_at_every_header_position() {
    // Exhaustive over the header, metadata and tensor infos.
    let original = sample_bytes();
    let file = Gguf::parse(&original[..]).unwrap();
    let end = file.data_offset() as usize;
    let mut bytes = original.clone();
    for at in 0..end {
        for v in [0u8, 1, 0x7f, 0x80, 0xff, original[at] ^ 0x20] {
            bytes[at] = v;
            check_accepted(&bytes);
        }
        bytes[at] = original[at];
    }
}
