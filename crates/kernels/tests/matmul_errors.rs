//! Malformed matmul calls are typed errors, never panics; degenerate
//! shapes (no rows, no outputs, k = 0) are fine.

use exodus_kernels::matmul::{matmul_in, matmul_reference, matmul_with, tiling_for};
use exodus_kernels::{KernelError, ThreadPool, Tiling, Weights};
use exodus_numerics::cpu;
use exodus_numerics::fp8_block::{BlockFp8, Scales};
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::{ElementFormat, Format};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn small_f32_example_by_hand() {
    // x [2, 3], W [2, 3], out [2, 2]
    let x = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
    let wb = f32_bytes(&[1.0, 0.0, -1.0, 2.0, 2.0, 2.0]);
    let w = Weights::new(Format::Element(ElementFormat::F32), &wb, 2, 3).unwrap();
    let want = [-2.0, 12.0, -1.0, -1.0];
    let mut out = [0f32; 4];
    matmul_reference(&x, 2, &w, &mut out).unwrap();
    assert_eq!(out, want);
    for rows_regime in [
        exodus_kernels::Regime::Decode,
        exodus_kernels::Regime::Prefill,
    ] {
        let pool = ThreadPool::new(2);
        let t = Tiling {
            regime: rows_regime,
            ..tiling_for(2, &w, 2)
        };
        let mut out = [f32::NAN; 4];
        matmul_with(&pool, cpu::active(), &t, &x, 2, &w, &mut out).unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn bad_k_for_a_block_format_is_a_typed_error() {
    let q4 = Format::Gguf(GgufBlockType::Q4_0);
    let bytes = vec![0u8; 18 * 4];
    // 4 blocks of 32 = 128 values: k = 64 fits 2 rows, k = 33 fits nothing.
    assert!(Weights::new(q4, &bytes, 2, 64).is_ok());
    assert!(matches!(
        Weights::new(q4, &bytes, 2, 33),
        Err(KernelError::BadShape { .. })
    ));
    let q4k = Format::Gguf(GgufBlockType::Q4K);
    assert!(matches!(
        Weights::new(q4k, &[0u8; 144], 1, 128),
        Err(KernelError::BadShape { .. })
    ));
    // Right k, wrong byte count.
    assert!(matches!(
        Weights::new(q4, &bytes[..35], 1, 64),
        Err(KernelError::LengthMismatch { .. })
    ));
    // A shape whose byte count overflows.
    assert!(Weights::new(q4, &bytes, usize::MAX, 32).is_err());
}

#[test]
fn bad_operands_are_typed_errors() {
    let wb = f32_bytes(&[1.0; 6]);
    let w = Weights::new(Format::Element(ElementFormat::F32), &wb, 2, 3).unwrap();
    let pool = ThreadPool::new(1);
    let mut out = [0f32; 4];
    assert!(matches!(
        matmul_in(&pool, &[0.0; 5], 2, &w, &mut out),
        Err(KernelError::LengthMismatch { what: "x", .. })
    ));
    assert!(matches!(
        matmul_in(&pool, &[0.0; 6], 2, &w, &mut out[..3]),
        Err(KernelError::LengthMismatch { what: "out", .. })
    ));
    assert!(matches!(
        matmul_reference(&[0.0; 6], 3, &w, &mut out),
        Err(KernelError::LengthMismatch { .. })
    ));
    assert!(matmul_in(&pool, &[0.0; 6], usize::MAX, &w, &mut out).is_err());
    // A tiling the kernels cannot run.
    let t = Tiling {
        nr: 8,
        ..tiling_for(2, &w, 1)
    };
    assert!(matches!(
        matmul_with(&pool, cpu::active(), &t, &[0.0; 6], 2, &w, &mut out),
        Err(KernelError::BadShape { .. })
    ));
    // kc must be whole super-blocks for a K format.
    let q4k = vec![0u8; 144];
    let wk = Weights::new(Format::Gguf(GgufBlockType::Q4K), &q4k, 1, 256).unwrap();
    let t = Tiling {
        kc: 128,
        ..tiling_for(8, &wk, 1)
    };
    let mut out = [0f32; 8];
    assert!(matches!(
        matmul_with(&pool, cpu::active(), &t, &[0.0; 8 * 256], 8, &wk, &mut out),
        Err(KernelError::BadShape { .. })
    ));
}

#[test]
fn bad_fp8_weights_are_typed_errors() {
    let codes = vec![0u8; 6];
    assert!(Weights::fp8_per_row(&codes, &[1.0, 1.0], 2, 3).is_ok());
    assert!(matches!(
        Weights::fp8_per_row(&codes, &[1.0], 2, 3),
        Err(KernelError::LengthMismatch { .. })
    ));
    assert!(matches!(
        Weights::fp8_per_row(&codes, &[1.0, 1.0], 2, 4),
        Err(KernelError::LengthMismatch { .. })
    ));
    let m = BlockFp8 {
        rows: 2,
        cols: 3,
        tile_rows: 128,
        tile_cols: 128,
        values: codes.clone(),
        scales: Scales::F32(vec![1.0, 2.0]),
    };
    assert!(matches!(
        Weights::fp8_block(&m),
        Err(KernelError::LengthMismatch { .. })
    ));
    let zero_tile = BlockFp8 {
        tile_cols: 0,
        scales: Scales::F32(vec![1.0]),
        ..m
    };
    assert!(matches!(
        Weights::fp8_block(&zero_tile),
        Err(KernelError::BadShape { .. })
    ));
}

#[test]
fn degenerate_shapes() {
    let pool = ThreadPool::new(2);
    let f32_format = Format::Element(ElementFormat::F32);
    // k = 0: every output is an empty sum.
    let w = Weights::new(f32_format, &[], 3, 0).unwrap();
    let mut out = [f32::NAN; 6];
    matmul_in(&pool, &[], 2, &w, &mut out).unwrap();
    assert_eq!(out, [0.0; 6]);
    // No rows, no outputs.
    matmul_in(&pool, &[], 0, &w, &mut []).unwrap();
    let w = Weights::new(f32_format, &[], 0, 4).unwrap();
    matmul_in(&pool, &[0.0; 8], 2, &w, &mut []).unwrap();
}
