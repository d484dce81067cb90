//! Every SIMD bulk path equals the scalar reference: all element formats
//! (f16 and bf16 included), both directions, every overflow policy, ragged
//! lengths (0..=40, so every tail length) and misaligned slices (offsets
//! 1..=3 into a larger buffer).

mod common;

use common::*;
use exodus_numerics::bulk;
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::{ElementFormat, EncodeOptions, Overflow, Rounding};

fn interesting_f32() -> Vec<f32> {
    let mut x: Vec<f32> = random_f32("bits", 11, 1 << 16, 0, 0);
    x.extend(random_f32("range", 12, 1 << 16, -30, 20));
    x.extend((0..=u16::MAX).map(|b| f32::from_bits((b as u32) << 16)));
    x.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
    ]);
    x.extend([
        65504.0, 65519.0, 65520.0, 65536.0, 448.0, 464.0, 465.0, 57344.0, 61440.0,
    ]);
    x
}

fn all_options() -> Vec<EncodeOptions> {
    let mut v = Vec::new();
    for rounding in [Rounding::NearestEven, Rounding::NearestAway] {
        for overflow in [Overflow::Saturate, Overflow::NonFinite] {
            v.push(EncodeOptions { rounding, overflow });
        }
    }
    v
}

#[test]
fn encode_equals_scalar_on_every_level() {
    let x = interesting_f32();
    for f in ElementFormat::ALL {
        let bytes = f.unpacked_bytes();
        for opts in all_options() {
            let mut want = vec![0u8; x.len() * bytes];
            bulk::encode_with(SimdLevel::Scalar, f, &x, &mut want, opts).unwrap();
            for level in SimdLevel::supported() {
                let mut got = vec![0u8; x.len() * bytes];
                bulk::encode_with(level, f, &x, &mut got, opts).unwrap();
                if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                    let v = x[i / bytes];
                    panic!(
                        "{} {opts:?} {level:?}: input {v:e} ({:#010x}) differs",
                        f.name(),
                        v.to_bits()
                    );
                }
            }
        }
    }
}

#[test]
fn decode_equals_scalar_on_every_level() {
    for f in ElementFormat::ALL {
        let bytes = f.unpacked_bytes();
        let n = if bytes == 1 { 256 } else { 1 << 16 };
        let codes: Vec<u8> = match bytes {
            1 => (0..=255u8).collect(),
            2 => (0..=u16::MAX).flat_map(|c| c.to_le_bytes()).collect(),
            _ => random_f32("bits", 5, n, 0, 0)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        let mut want = vec![0f32; n];
        bulk::decode_with(SimdLevel::Scalar, f, &codes, &mut want).unwrap();
        for level in SimdLevel::supported() {
            let mut got = vec![0f32; n];
            bulk::decode_with(level, f, &codes, &mut got).unwrap();
            for i in 0..n {
                assert!(
                    same_f32(got[i], want[i]),
                    "{} {level:?} code {i}: {} vs {}",
                    f.name(),
                    got[i],
                    want[i]
                );
            }
        }
    }
}

#[test]
fn ragged_lengths_and_misaligned_slices() {
    let x = interesting_f32();
    for f in ElementFormat::ALL {
        let bytes = f.unpacked_bytes();
        for offset in 0..4usize {
            for len in 0..=40usize {
                let src = &x[100..100 + len];
                let mut want = vec![0u8; len * bytes];
                bulk::encode_with(
                    SimdLevel::Scalar,
                    f,
                    src,
                    &mut want,
                    EncodeOptions::SATURATE,
                )
                .unwrap();
                let mut decoded_want = vec![0f32; len];
                bulk::decode_with(SimdLevel::Scalar, f, &want, &mut decoded_want).unwrap();
                for level in SimdLevel::supported() {
                    // Misaligned destination and source byte buffers.
                    let mut buf = vec![0u8; len * bytes + offset];
                    bulk::encode_with(level, f, src, &mut buf[offset..], EncodeOptions::SATURATE)
                        .unwrap();
                    assert_eq!(
                        &buf[offset..],
                        &want[..],
                        "{} {level:?} len {len} offset {offset}",
                        f.name()
                    );
                    let mut out = vec![0f32; len + 1];
                    bulk::decode_with(level, f, &buf[offset..], &mut out[1..]).unwrap();
                    for (a, b) in out[1..].iter().zip(&decoded_want) {
                        assert!(
                            same_f32(*a, *b),
                            "{} {level:?} len {len} offset {offset}",
                            f.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    for f in ElementFormat::ALL {
        // 4 values need at least 4 bytes in every format; 5 bytes are never 4 values.
        assert!(bulk::encode(f, &[1.0; 4], &mut [0u8; 3], EncodeOptions::SATURATE).is_err());
        assert!(bulk::decode(f, &[0u8; 5], &mut [0f32; 4]).is_err());
        let exact = vec![0u8; 4 * f.unpacked_bytes()];
        assert!(bulk::decode(f, &exact, &mut [0f32; 4]).is_ok());
    }
}

#[test]
fn scaled_decode_equals_scalar_on_every_level() {
    let codes: Vec<u8> = (0..=255u8).cycle().take(256 * 3 + 13).collect();
    let scales = [
        1.0,
        0.5,
        3.0e-3,
        2f32.powi(-127),
        2f32.powi(127),
        f32::NAN,
        0.0,
        -7.25,
    ];
    for f in ElementFormat::ALL
        .into_iter()
        .filter(|f| f.unpacked_bytes() == 1)
    {
        for &scale in &scales {
            for len in [0, 1, 15, 16, 17, 40, codes.len()] {
                let mut want = vec![0f32; len];
                bulk::decode_scaled_with(SimdLevel::Scalar, f, &codes[..len], scale, &mut want)
                    .unwrap();
                for level in SimdLevel::supported() {
                    let mut got = vec![0f32; len];
                    bulk::decode_scaled_with(level, f, &codes[..len], scale, &mut got).unwrap();
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        // A NaN times a NaN scale: IEEE 754 leaves the sign open.
                        let both_nan = a.is_nan() && b.is_nan() && scale.is_nan();
                        assert!(
                            same_f32(*a, *b) || both_nan,
                            "{} {level:?} scale {scale} code {i}: {a} vs {b}",
                            f.name()
                        );
                    }
                }
            }
        }
    }
}
