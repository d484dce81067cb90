//! Every decoder takes arbitrary bytes and every encoder arbitrary f32s
//! without panicking, and lengths that do not fit come back as errors.
//!
//! `cargo +nightly fuzz run codecs -- -max_total_time=60` (from `fuzz/`).
#![no_main]

use exodus_numerics::mx::ScaleRule;
use exodus_numerics::{Format, Overflow, QuantizeOptions, Rounding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let formats = Format::all();
    let format = formats[selector as usize % formats.len()];
    let packed = selector & 0x80 != 0;
    // Decode whatever the bytes are, if they are a whole number of values.
    match format.values_in(bytes.len(), packed) {
        Ok(n) => {
            let mut out = vec![0f32; n];
            format
                .dequantize_into(bytes, &mut out, packed)
                .expect("values_in said the length fits");
        }
        Err(_) => {
            let mut out = vec![0f32; 1];
            let _ = format.dequantize_into(bytes, &mut out, packed);
        }
    }
    // Encode the same bytes read as f32s (NaN, Inf, subnormals included).
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let opts = QuantizeOptions {
        rounding: if selector & 0x40 != 0 {
            Rounding::NearestAway
        } else {
            Rounding::NearestEven
        },
        overflow: if selector & 0x20 != 0 {
            Overflow::NonFinite
        } else {
            Overflow::Saturate
        },
        scale_rule: if selector & 0x10 != 0 {
            ScaleRule::Ceil
        } else {
            ScaleRule::Floor
        },
        packed,
    };
    if let Ok(encoded) = format.quantize(&values, &opts) {
        let back = format.dequantize(&encoded, values.len());
        assert!(
            back.is_ok() || packed,
            "{format}: cannot decode its own output"
        );
    }
});
