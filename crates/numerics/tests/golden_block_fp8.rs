//! DeepSeek-style block FP8 against `scripts/golden/block_fp8_reference.py`
//! (numpy + ml_dtypes, the reference recipe): 128x128 weight tiles and 1x128
//! activation tiles with ragged edges, an all-zero tile and a NaN tile,
//! f32 and UE8M0 scales, bit-exact.

mod common;

use common::*;
use exodus_numerics::fp8_block::{quantize_tiled, ScaleFormat, Scales};

#[test]
fn matches_the_reference_recipe() {
    for (name, rows, cols, tile_rows) in [
        ("weight-140x260", 140, 260, 128),
        ("activation-3x384", 3, 384, 1),
    ] {
        let x = f32s(&read_data(&format!("fp8_block/{name}.f32")));
        for (format, kind) in [(ScaleFormat::F32, "f32"), (ScaleFormat::Ue8m0, "ue8m0")] {
            let want = read_data(&format!("fp8_block/{name}-{kind}.bin"));
            let q = quantize_tiled(&x, rows, cols, tile_rows, 128, format).unwrap();
            let (want_values, want_scales) = want.split_at(rows * cols);
            if let Some(i) = (0..rows * cols).find(|&i| q.values[i] != want_values[i]) {
                panic!(
                    "{name} {kind}: value {i} ({}) encodes to {:#04x}, want {:#04x}",
                    x[i], q.values[i], want_values[i]
                );
            }
            let got_scales: Vec<u8> = match &q.scales {
                Scales::F32(s) => s.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Scales::Ue8m0(s) => s.clone(),
            };
            assert_eq!(got_scales, want_scales, "{name} {kind}: scales");
            // Dequantize: code value times tile scale, so the error is at most
            // half an E4M3 step: 1/16 relative, or half the smallest subnormal
            // step (2^-10) times the tile scale. The NaN tile stays NaN.
            let y = q.dequantize().unwrap();
            let mut nan_values = 0;
            for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
                let tile = (i / cols / tile_rows) * cols.div_ceil(128) + (i % cols) / 128;
                let scale = match &q.scales {
                    Scales::F32(s) => s[tile],
                    Scales::Ue8m0(s) => 2f32.powi(s[tile] as i32 - 127),
                };
                if b.is_nan() {
                    nan_values += 1;
                } else {
                    let bound = a.abs() / 16.0 + scale * 2f32.powi(-10);
                    assert!((a - b).abs() <= bound, "{name} {kind}: {a} -> {b}");
                }
            }
            assert_eq!(
                nan_values,
                if tile_rows == 1 { 128 } else { 0 },
                "{name} {kind}"
            );
        }
    }
}
