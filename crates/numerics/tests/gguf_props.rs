//! Property tests of the GGUF codecs: every SIMD level equals the scalar
//! path on random (including NaN/Inf-scaled) blocks, for block counts 0, 1,
//! 2, 3, 7, 64 and misaligned source slices; malformed lengths are errors,
//! never panics; quantizing odd inputs never panics; round-trip error on
//! N(0, 1) data stays within [`quantize_error_budget`].

mod gguf_common;

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::gguf::{
    dequantize, dequantize_with, quantize, quantize_error_budget, GgufBlockType,
};
use exodus_numerics::NumericsError;
use gguf_common::{assert_same_f32, SplitMix64};

const COUNTS: [usize; 7] = [0, 1, 2, 3, 7, 64, 65];

#[test]
fn simd_equals_scalar_on_random_blocks() {
    let mut rng = SplitMix64::new(0x5EED);
    for t in GgufBlockType::ALL {
        for &n in &COUNTS {
            for misalign in [0usize, 1, 3] {
                let len = n * t.block_bytes();
                // Fully random bytes: scales may be NaN, Inf, subnormal.
                let store = rng.bytes(len + misalign);
                let src = &store[misalign..];
                let mut want = vec![0f32; n * t.block_elems()];
                dequantize_with(SimdLevel::Scalar, t, src, &mut want).expect("scalar");
                for level in SimdLevel::supported() {
                    let mut got = vec![1.5f32; want.len()];
                    dequantize_with(level, t, src, &mut got).expect("simd");
                    let what = format!("{} n={n} off={misalign} [{}]", t.name(), level.name());
                    assert_same_f32(&got, &want, &what);
                }
                // The misaligned destination too: a window into a larger buffer.
                let mut big = vec![0f32; want.len() + 1];
                dequantize(t, src, &mut big[1..]).expect("dispatch");
                assert_same_f32(&big[1..], &want, t.name());
            }
        }
    }
}

#[test]
fn all_levels_listed_are_usable() {
    // Levels the CPU lacks must not be reachable by accident: asking for one
    // still works (scalar fallback) and gives the same bits.
    let mut rng = SplitMix64::new(7);
    for t in GgufBlockType::ALL {
        let src = rng.bytes(3 * t.block_bytes());
        let mut want = vec![0f32; 3 * t.block_elems()];
        dequantize_with(SimdLevel::Scalar, t, &src, &mut want).expect("scalar");
        for level in [SimdLevel::Avx2, SimdLevel::Neon] {
            let mut got = vec![0f32; want.len()];
            dequantize_with(level, t, &src, &mut got).expect("any level");
            assert_same_f32(&got, &want, t.name());
        }
    }
}

#[test]
fn malformed_lengths_are_errors() {
    for t in GgufBlockType::ALL {
        let (bb, be) = (t.block_bytes(), t.block_elems());
        for level in SimdLevel::supported() {
            for extra in [1, bb - 1] {
                let src = vec![0u8; 2 * bb + extra];
                let mut dst = vec![0f32; 2 * be];
                let e = dequantize_with(level, t, &src, &mut dst).unwrap_err();
                assert!(matches!(e, NumericsError::RaggedBytes { .. }), "{e}");
            }
            let src = vec![0u8; 2 * bb];
            for dlen in [0, 2 * be - 1, 2 * be + 1, 3 * be] {
                let mut dst = vec![0f32; dlen];
                let e = dequantize_with(level, t, &src, &mut dst).unwrap_err();
                assert_eq!(
                    e,
                    NumericsError::LengthMismatch {
                        format: t.name(),
                        what: "destination",
                        expected: 2 * be,
                        got: dlen
                    }
                );
            }
        }
        let mut empty: [f32; 0] = [];
        dequantize(t, &[], &mut empty).expect("zero blocks");

        if !t.can_quantize() {
            let e = quantize(t, &vec![0.0; be], &mut vec![0u8; bb]).unwrap_err();
            assert_eq!(e, NumericsError::QuantizeUnsupported(t.name()));
            continue;
        }
        let e = quantize(t, &vec![0.0; be + 1], &mut vec![0u8; bb]).unwrap_err();
        assert!(matches!(e, NumericsError::RaggedBlocks { .. }), "{e}");
        for blen in [0, bb - 1, bb + 1] {
            let e = quantize(t, &vec![0.0; be], &mut vec![0u8; blen]).unwrap_err();
            assert!(matches!(e, NumericsError::LengthMismatch { .. }), "{e}");
        }
        quantize(t, &[], &mut []).expect("zero blocks");
    }
}

#[test]
fn quantize_never_panics_on_odd_inputs() {
    let specials = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        65504.0,
        1e30,
    ];
    let mut rng = SplitMix64::new(99);
    for t in GgufBlockType::ALL.into_iter().filter(|t| t.can_quantize()) {
        let be = t.block_elems();
        let mut inputs: Vec<Vec<f32>> = specials.iter().map(|&s| vec![s; be]).collect();
        for _ in 0..64 {
            // Random bit patterns, then mixes of specials and normals.
            inputs.push(
                (0..be)
                    .map(|_| f32::from_bits(rng.next_u64() as u32))
                    .collect(),
            );
            inputs.push(
                (0..be)
                    .map(|_| {
                        let r = rng.next_u64();
                        if r & 3 == 0 {
                            specials[(r >> 8) as usize % specials.len()]
                        } else {
                            rng.normal() as f32
                        }
                    })
                    .collect(),
            );
        }
        for x in inputs {
            let mut b = vec![0u8; t.block_bytes()];
            quantize(t, &x, &mut b).expect("quantize");
            let mut y = vec![0f32; be];
            dequantize(t, &b, &mut y).expect("dequantize");
        }
    }
}

/// RMS relative error of the round trip on N(0, 1) data, per format.
fn rms_rel_error(t: GgufBlockType, n: usize) -> f64 {
    let mut rng = SplitMix64::new(0xC0FFEE ^ t.block_bytes() as u64);
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let mut q = vec![0u8; n / t.block_elems() * t.block_bytes()];
    quantize(t, &x, &mut q).expect("quantize");
    let mut y = vec![0f32; n];
    dequantize(t, &q, &mut y).expect("dequantize");
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in x.iter().zip(&y) {
        num += ((a - b) as f64).powi(2);
        den += (*a as f64).powi(2);
    }
    (num / den).sqrt()
}

#[test]
fn rms_error_within_budget() {
    for t in GgufBlockType::ALL {
        if !t.can_quantize() {
            assert!(quantize_error_budget(t).is_infinite());
            continue;
        }
        let e = rms_rel_error(t, 1 << 18);
        let budget = quantize_error_budget(t) as f64;
        eprintln!("{}: RMS relative error {e:.5} (budget {budget})", t.name());
        assert!(e < budget, "{}: {e} >= {budget}", t.name());
    }
}
