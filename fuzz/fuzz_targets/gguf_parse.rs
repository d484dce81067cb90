//! The GGUF reader takes arbitrary bytes without panicking, and whatever
//! it accepts is consistent: every accessor answers, every tensor's data
//! lies in the file with the size its type and shape say, no two overlap.
//!
//! `cargo +nightly fuzz run gguf_parse -- -max_total_time=60` (from `fuzz/`).
#![no_main]

use exodus_gguf::{Gguf, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = match Gguf::parse(data) {
        Ok(file) => file,
        Err(e) => {
            // Every error renders.
            let _ = e.to_string();
            return;
        }
    };
    let len = data.len() as u64;
    let meta = file.metadata();
    for (key, value) in meta.iter() {
        let _ = value.summary(80, 5);
        let _ = value.to_string();
        let _ = (meta.get_str(key), meta.get_u32(key), meta.get_f32(key));
        let _ = (meta.get_bool(key), meta.get_count(key), meta.get_array(key));
        let _ = meta.get_slice::<String>(key);
        if let Value::Array(a) = value {
            let _ = (a.len(), a.element_type(), a.type_name());
        }
    }
    let mut ranges = Vec::new();
    for t in file.tensors() {
        let range = t.file_range();
        assert!(range.end <= len);
        assert!(t.file_offset() >= file.data_offset());
        assert_eq!(t.offset() % file.alignment(), 0);
        let bytes = file.data(t.name()).expect("listed tensor has data");
        assert_eq!(bytes.len() as u64, t.byte_size());
        assert_eq!(file.tensor(t.name()), Some(t));
        if let Ok(format) = t.format() {
            let n = format.values_in(bytes.len(), false).expect("whole blocks");
            assert_eq!(n as u64, t.elements());
        }
        let _ = (t.rows(), t.row_len(), t.dims(), t.ggml_type().name());
        if !range.is_empty() {
            ranges.push(range);
        }
    }
    ranges.sort_by_key(|r| r.start);
    for pair in ranges.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlapping tensors accepted");
    }
    assert!(file.tensor_bytes() <= len);
});
