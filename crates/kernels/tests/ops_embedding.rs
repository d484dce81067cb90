//! Embedding gather from quantized tables: every row equals the format's
//! own dequantization of that row, for element, MX, block-FP8 and GGUF
//! formats.

mod ops_util;

use exodus_kernels::ops::{embedding, QuantizedRows};
use exodus_kernels::KernelError;
use exodus_numerics::sample::SplitMix64;
use exodus_numerics::{Format, QuantizeOptions};
use ops_util::normal;

#[test]
fn gathered_rows_equal_the_dequantized_table() {
    let mut rng = SplitMix64::new(31);
    let names = [
        "f32",
        "f16",
        "bf16",
        "fp8-e4m3",
        "mxfp4",
        "mxfp8-e5m2",
        "fp8-block128",
        "q4_0",
        "q8_0",
        "q4_k",
    ];
    for name in names {
        let format: Format = name.parse().unwrap();
        let dim = if format.block_elems() > 32 { 256 } else { 64 };
        let vocab = 37;
        let values = normal(&mut rng, vocab * dim, 1.0);
        let bytes = format
            .quantize(&values, &QuantizeOptions::default())
            .unwrap();
        let all = format.dequantize(&bytes, vocab * dim).unwrap();
        let table = QuantizedRows {
            bytes: &bytes,
            format,
            vocab,
            dim,
        };
        let ids = [36u32, 0, 5, 5, 17];
        let mut out = vec![0f32; ids.len() * dim];
        embedding(&table, &ids, &mut out).unwrap();
        for (row, &id) in out.chunks(dim).zip(&ids) {
            let want = &all[id as usize * dim..(id as usize + 1) * dim];
            assert_eq!(row, want, "{name} id {id}");
        }
    }
}

#[test]
fn bad_ids_and_ragged_rows_are_errors() {
    let format: Format = "mxfp4".parse().unwrap();
    let bytes = vec![0u8; 4 * 17];
    let table = QuantizedRows {
        bytes: &bytes,
        format,
        vocab: 4,
        dim: 32,
    };
    let mut out = vec![0f32; 64];
    assert!(matches!(
        embedding(&table, &[1, 4], &mut out),
        Err(KernelError::OutOfRange {
            index: 4,
            limit: 4,
            ..
        })
    ));
    assert!(matches!(
        embedding(&table, &[1], &mut out),
        Err(KernelError::LengthMismatch { what: "out", .. })
    ));
    let ragged = QuantizedRows { dim: 48, ..table };
    assert!(matches!(
        embedding(&ragged, &[0], &mut out[..48]),
        Err(KernelError::BadShape { .. })
    ));
    let short = QuantizedRows { vocab: 5, ..table };
    assert!(matches!(
        embedding(&short, &[0], &mut out[..32]),
        Err(KernelError::LengthMismatch { what: "table", .. })
    ));
}
