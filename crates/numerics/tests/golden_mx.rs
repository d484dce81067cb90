//! MX block formats against `scripts/golden/mx_reference.py` (written from
//! the OCP MX v1.0 specification with numpy + ml_dtypes): bit-exact on
//! random and adversarial blocks (all zero, one huge value, NaN and Inf
//! inside, subnormal-only, exact ties), both scale rules; and dequantize
//! equal on the scalar path and every SIMD level.

mod common;

use common::*;
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::mx::{MxElement, ScaleRule};

#[test]
fn quantize_matches_the_spec_reference() {
    let x = f32s(&read_data("mx/inputs.f32"));
    assert!(x.len() >= 32 * 40);
    for e in MxElement::ALL {
        for (rule, rule_name) in [(ScaleRule::Floor, "floor"), (ScaleRule::Ceil, "ceil")] {
            let want = read_data(&format!("mx/{}-{rule_name}.bin", e.name()));
            for level in SimdLevel::supported() {
                let mut got = vec![0u8; want.len()];
                e.quantize_with(level, rule, &x, &mut got).unwrap();
                for (b, (g, w)) in got
                    .chunks(e.block_bytes())
                    .zip(want.chunks(e.block_bytes()))
                    .enumerate()
                {
                    assert_eq!(
                        g,
                        w,
                        "{} {rule_name} {level:?}: block {b} ({:?}...)",
                        e.name(),
                        &x[b * 32..b * 32 + 4]
                    );
                }
            }
        }
    }
}

#[test]
fn dequantize_is_the_same_on_every_level() {
    let x = f32s(&read_data("mx/inputs.f32"));
    for e in MxElement::ALL {
        let mut q = vec![0u8; x.len() / 32 * e.block_bytes()];
        e.quantize(ScaleRule::Floor, &x, &mut q).unwrap();
        // Also every possible code and scale byte: random bytes are valid blocks.
        let noise: Vec<u8> = splitmix64(7, 64 * e.block_bytes())
            .map(|z| (z >> 56) as u8)
            .collect();
        for bytes in [&q[..], &noise[..]] {
            let n = bytes.len() / e.block_bytes() * 32;
            let mut reference = vec![0f32; n];
            e.dequantize_scalar(bytes, &mut reference).unwrap();
            for level in SimdLevel::supported() {
                let mut got = vec![0f32; n];
                e.dequantize_with(level, bytes, &mut got).unwrap();
                for (i, (&g, &r)) in got.iter().zip(&reference).enumerate() {
                    assert!(
                        same_f32(g, r),
                        "{} {level:?} value {i}: {g} vs {r}",
                        e.name()
                    );
                }
            }
        }
    }
}

#[test]
fn dequantize_inverts_quantize_within_the_element_precision() {
    let x = f32s(&read_data("mx/inputs.f32"));
    for e in MxElement::ALL {
        let mut q = vec![0u8; x.len() / 32 * e.block_bytes()];
        e.quantize(ScaleRule::Ceil, &x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        e.dequantize(&q, &mut y).unwrap();
        for (block, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
            if xs.iter().any(|v| !v.is_finite()) {
                assert!(ys.iter().all(|v| v.is_nan()), "{} block {block}", e.name());
                continue;
            }
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            // With the round-up rule nothing clips; the error of each value is
            // at most half a step of the element grid at the block's top binade.
            let man_bits = e.minifloat().map_or(6, |m| m.man_bits) as i32;
            // E8M0 stops at 2^-127: below that, half the element grid's
            // smallest step at that scale is lost too.
            let min_step = e.minifloat().map_or(1.0 / 64.0, |m| m.min_subnormal());
            let bound = amax * 2f64.powi(-man_bits) + 0.5 * min_step * 2f64.powi(-127);
            for (&a, &b) in xs.iter().zip(ys) {
                // Next to f32::MAX an element may round up past f32's range:
                // the product then is an infinity of the right sign.
                let overflowed = b.is_infinite()
                    && a.signum() == b.signum()
                    && a.abs() as f64 + bound > f32::MAX as f64;
                assert!(
                    (a as f64 - b as f64).abs() <= bound || overflowed,
                    "{} block {block}: {a} -> {b}",
                    e.name()
                );
            }
        }
    }
}

#[test]
fn quantize_is_the_same_on_every_level_for_wide_random_blocks() {
    // Random finite bit patterns (every binade, subnormals included) and
    // blocks mixing tiny and huge values.
    let mut x: Vec<f32> = random_f32("bits", 21, 32 * 4096, 0, 0)
        .into_iter()
        .map(|v| if v.is_finite() { v } else { 1.5 })
        .collect();
    x.extend(random_f32("range", 22, 32 * 4096, -140, 127));
    for e in MxElement::ALL {
        for rule in [ScaleRule::Floor, ScaleRule::Ceil] {
            let mut want = vec![0u8; x.len() / 32 * e.block_bytes()];
            e.quantize_with(SimdLevel::Scalar, rule, &x, &mut want)
                .unwrap();
            for level in SimdLevel::supported() {
                let mut got = vec![0u8; want.len()];
                e.quantize_with(level, rule, &x, &mut got).unwrap();
                assert!(
                    got == want,
                    "{} {rule:?} {level:?} differs from the scalar reference",
                    e.name()
                );
            }
        }
    }
}
