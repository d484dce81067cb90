//! Property tests of the ops: every SIMD level against the scalar
//! reference, and the scalar reference against a naive f64 formula, over
//! random data and shapes with ragged tails (one row, prime lengths,
//! vector-size ± 1).

mod ops_util;

use exodus_kernels::ops::{self, GeluApprox, LayerNormParams, RmsNormParams};
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::sample::SplitMix64;
use ops_util::{assert_close, levels, normal, range, SIZES};

/// Naive f64 softmax of one row.
fn softmax_f64(row: &[f32]) -> Vec<f32> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}

#[test]
fn rms_norm_matches_the_formula_on_every_level() {
    let mut rng = SplitMix64::new(1);
    for &dim in SIZES {
        let rows = range(&mut rng, 1, 4);
        let x = normal(&mut rng, rows * dim, 3.0);
        let w = normal(&mut rng, dim, 1.0);
        let p = RmsNormParams { eps: 1e-6 };
        let want: Vec<f32> = x
            .chunks(dim)
            .flat_map(|r| {
                let ms = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / dim as f64;
                let inv = 1.0 / (ms + 1e-6).sqrt();
                r.iter()
                    .zip(&w)
                    .map(move |(&v, &w)| (v as f64 * inv * w as f64) as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        for level in levels() {
            let mut out = vec![0f32; rows * dim];
            ops::rms_norm_with(level, &x, &w, &mut out, rows, dim, &p).unwrap();
            assert_close(
                &out,
                &want,
                2e-6,
                1e-7,
                &format!("rms_norm {level:?} dim {dim}"),
            );
        }
    }
}

#[test]
fn layer_norm_matches_the_formula_on_every_level() {
    let mut rng = SplitMix64::new(2);
    for &dim in SIZES {
        let rows = range(&mut rng, 1, 4);
        // An offset mean checks the two-pass variance.
        let x: Vec<f32> = normal(&mut rng, rows * dim, 2.0)
            .iter()
            .map(|v| v + 5.0)
            .collect();
        let w = normal(&mut rng, dim, 1.0);
        let b = normal(&mut rng, dim, 1.0);
        let p = LayerNormParams { eps: 1e-5 };
        for bias in [None, Some(&b[..])] {
            let want: Vec<f32> = x
                .chunks(dim)
                .flat_map(|r| {
                    let mean = r.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
                    let var =
                        r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
                    let inv = 1.0 / (var + 1e-5).sqrt();
                    (0..dim)
                        .map(|i| {
                            let y = (r[i] as f64 - mean) * inv * w[i] as f64;
                            (y + bias.map_or(0.0, |b| b[i] as f64)) as f32
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            for level in levels() {
                let mut out = vec![0f32; rows * dim];
                ops::layer_norm_with(level, &x, &w, bias, &mut out, rows, dim, &p).unwrap();
                // |x - mean| is computed from an f32 mean: absolute error
                // ~ ulp(5) * inv * |w|.
                assert_close(
                    &out,
                    &want,
                    1e-5,
                    2e-6,
                    &format!("layer_norm {level:?} dim {dim}"),
                );
            }
        }
    }
}

#[test]
fn softmax_matches_f64_and_handles_masked_rows() {
    let mut rng = SplitMix64::new(3);
    for &cols in SIZES {
        let rows = range(&mut rng, 1, 4);
        // Wide logits (sigma 10) exercise the max subtraction.
        let mut x = normal(&mut rng, rows * cols, 10.0);
        // Mask a few entries of the first row; it stays finite somewhere.
        for v in x.iter_mut().take(cols).step_by(3).skip(1) {
            *v = f32::NEG_INFINITY;
        }
        let want: Vec<f32> = x.chunks(cols).flat_map(softmax_f64).collect();
        for level in levels() {
            let mut y = x.clone();
            ops::softmax_with(level, &mut y, rows, cols).unwrap();
            assert_close(
                &y,
                &want,
                2e-6,
                1e-9,
                &format!("softmax {level:?} cols {cols}"),
            );
            for row in y.chunks(cols) {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                assert!((s - 1.0).abs() < 1e-5, "sum {s}");
            }
        }
    }
    for level in levels() {
        let mut masked = vec![f32::NEG_INFINITY; 11];
        ops::softmax_with(level, &mut masked, 1, 11).unwrap();
        assert!(masked.iter().all(|&v| v == 0.0), "{level:?} {masked:?}");
        let mut nan = vec![1.0f32; 11];
        nan[9] = f32::NAN;
        ops::softmax_with(level, &mut nan, 1, 11).unwrap();
        assert!(nan.iter().all(|v| v.is_nan()), "{level:?} {nan:?}");
    }
}

/// The activations on a grid covering the whole interesting range, its
/// extremes and random values, at every ragged length.
fn activation_inputs(rng: &mut SplitMix64) -> Vec<f32> {
    let mut x: Vec<f32> = (-2000..=2000).map(|i| i as f32 / 100.0).collect();
    x.extend([
        0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4,
    ]);
    x.extend(normal(rng, 1001, 4.0));
    x
}

#[test]
fn silu_and_swiglu_match_f64() {
    let mut rng = SplitMix64::new(4);
    let x = activation_inputs(&mut rng);
    let up = normal(&mut rng, x.len(), 1.0);
    let silu = |v: f32| {
        let v = v as f64;
        v / (1.0 + (-v).exp())
    };
    let want: Vec<f32> = x.iter().map(|&v| silu(v) as f32).collect();
    let want_glu: Vec<f32> = x
        .iter()
        .zip(&up)
        .map(|(&g, &u)| (silu(g) * u as f64) as f32)
        .collect();
    for level in levels() {
        for &n in SIZES.iter().chain([x.len()].iter()) {
            let mut out = vec![0f32; n];
            ops::silu_with(level, &x[..n], &mut out).unwrap();
            assert_close(
                &out,
                &want[..n],
                4e-7,
                1e-30,
                &format!("silu {level:?} n {n}"),
            );
            ops::swiglu_with(level, &x[..n], &up[..n], &mut out).unwrap();
            assert_close(
                &out,
                &want_glu[..n],
                6e-7,
                1e-30,
                &format!("swiglu {level:?} n {n}"),
            );
        }
    }
}

#[test]
fn gelu_both_forms_match_f64() {
    let mut rng = SplitMix64::new(5);
    let x = activation_inputs(&mut rng);
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let tanh_form: Vec<f32> = x
        .iter()
        .map(|&v| {
            let v = v as f64;
            (v / (1.0 + (-2.0 * k * (v + 0.044715 * v * v * v)).exp())) as f32
        })
        .collect();
    for level in levels() {
        let mut out = vec![0f32; x.len()];
        ops::gelu_with(level, &x, &mut out, GeluApprox::Tanh).unwrap();
        // Far below zero the f32 argument of exp (~60) carries a relative
        // error of a few 1e-6 into outputs below 1e-20: absolute 1e-12.
        assert_close(
            &out,
            &tanh_form,
            1e-6,
            1e-12,
            &format!("gelu tanh {level:?}"),
        );
        ops::gelu_with(level, &x, &mut out, GeluApprox::Erf).unwrap();
        // Known points of the exact GELU (x Phi(x)), from Python's math.erf.
        for (xi, want) in [
            (-3.0f32, -0.004049694),
            (-1.0, -0.15865525),
            (0.5, 0.34573123),
            (1.0, 0.8413447),
            (2.0, 1.9544997),
        ] {
            let i = x.iter().position(|&v| v == xi).unwrap();
            assert!(
                (out[i] - want).abs() <= 2e-6 * want.abs() + 3e-7,
                "{level:?} gelu_erf({xi}) = {}",
                out[i]
            );
        }
        if level != SimdLevel::Scalar {
            let mut reference = vec![0f32; x.len()];
            ops::gelu_with(SimdLevel::Scalar, &x, &mut reference, GeluApprox::Erf).unwrap();
            // Eigen's f32 rational erf is within ~2 ulp of 1 (2.4e-7)
            // absolute; for x < -2, `1 + erf` cancels, so GELU (tiny
            // there) keeps only 0.5 |x| times that absolute accuracy.
            for ((&xi, &g), &w) in x.iter().zip(&out).zip(&reference) {
                let tol = 2e-6 * w.abs() + 1.5e-7 * (1.0 + xi.abs());
                assert!(
                    (g - w).abs() <= tol,
                    "{level:?} gelu_erf({xi}) = {g}, want {w}"
                );
            }
        }
    }
}

#[test]
fn elementwise_ops_are_exact_on_every_level() {
    let mut rng = SplitMix64::new(6);
    for &n in SIZES {
        let a = normal(&mut rng, n, 1.0);
        let b = normal(&mut rng, n, 1.0);
        let add: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let mul: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let sub: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let div: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
        let scaled: Vec<f32> = a.iter().map(|x| x * 0.37).collect();
        for level in levels() {
            let mut out = vec![0f32; n];
            ops::add_with(level, &a, &b, &mut out).unwrap();
            assert_eq!(out, add, "add {level:?} n {n}");
            ops::mul_with(level, &a, &b, &mut out).unwrap();
            assert_eq!(out, mul, "mul {level:?} n {n}");
            ops::sub_with(level, &a, &b, &mut out).unwrap();
            assert_eq!(out, sub, "sub {level:?} n {n}");
            ops::div_with(level, &a, &b, &mut out).unwrap();
            let same = out
                .iter()
                .zip(&div)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "div {level:?} n {n}");
            ops::scale_with(level, &a, 0.37, &mut out).unwrap();
            assert_eq!(out, scaled, "scale {level:?} n {n}");
        }
    }
}
