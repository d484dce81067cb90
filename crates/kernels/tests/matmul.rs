//! Property tests of `out[rows, n] = x[rows, k] · W[n, k]ᵀ`: every weight
//! kind, random and ragged shapes, both regimes, scalar and SIMD, one and
//! two threads, against the exact reference with stated error budgets.
//!
//! Budgets: float paths (f32, f16, bf16, FP8, MXFP8 decode; every prefill)
//! stay within `1e-5 * sum |x w|` of the reference per output and 1e-5 RMS
//! relative. The int8 decode paths (Q4_0, Q4_1, Q8_0, MXFP4: x in int8
//! blocks of 32; Q4_K, Q5_K, Q6_K: blocks of 256) add at most half a
//! quantization step of x per value, `sum_b (amax_b / 254) * sum_b |w|`
//! per output, and must stay within 1 % RMS relative error.

mod matmul_util;

use exodus_kernels::matmul::{int8_x_block, matmul_with, tiling_for};
use exodus_kernels::tiling::{Regime, Tiling, MR, NR};
use exodus_kernels::ThreadPool;
use exodus_numerics::cpu::{self, SimdLevel};
use exodus_numerics::sample::SplitMix64;
use matmul_util::*;

/// Float error per output, relative to `sum |x w|`.
const FLOAT_REL: f32 = 1e-5;
/// RMS relative budget of the float paths.
const FLOAT_RMS: f64 = 1e-5;
/// RMS relative budget of the int8 decode paths.
const INT8_RMS: f64 = 0.01;

/// Shapes `(rows, n, k)` for a kind: one row, prime sizes, ragged tails
/// (k ragged only where the format allows: element formats and FP8).
fn shapes(kind: &str, rng: &mut SplitMix64) -> Vec<(usize, usize, usize)> {
    let block = k_block(kind);
    let mut v = Vec::new();
    let ks: Vec<usize> = if block == 1 {
        vec![1, 7, 131, 257]
    } else {
        vec![block, 3 * block]
    };
    for &k in &ks {
        for &(rows, n) in &[(1, 1), (1, 67), (3, 17), (7, 33), (13, 31), (40, 19)] {
            v.push((rows, n, k));
        }
    }
    // A few random ones.
    for _ in 0..3 {
        let rows = 1 + (rng.next_u64() % 50) as usize;
        let n = 1 + (rng.next_u64() % 70) as usize;
        let k = block * (1 + (rng.next_u64() % 4) as usize)
            + if block == 1 {
                (rng.next_u64() % 40) as usize
            } else {
                0
            };
        v.push((rows, n, k));
    }
    v
}

/// The tilings a shape is run with: the chosen one in both regimes, and a
/// tiny prefill tiling that makes every blocking loop run several times.
fn tilings(rows: usize, w: &exodus_kernels::Weights, threads: usize) -> Vec<Tiling> {
    let chosen = tiling_for(rows, w, threads);
    // Block sizes are powers of two: max(16, block) is a multiple of both.
    let kc = w.k_block().max(16);
    vec![
        Tiling {
            regime: Regime::Decode,
            decode_cols: 8,
            ..chosen
        },
        Tiling {
            regime: Regime::Prefill,
            ..chosen
        },
        Tiling {
            regime: Regime::Prefill,
            kc,
            mc: MR,
            nc: NR,
            ..chosen
        },
    ]
}

#[test]
fn every_kind_every_path_within_budget() {
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let levels: Vec<SimdLevel> = SimdLevel::supported();
    let mut rng = SplitMix64::new(7);
    for (ki, &kind) in KINDS.iter().enumerate() {
        for (si, (rows, n, k)) in shapes(kind, &mut rng).into_iter().enumerate() {
            let owned = make(kind, n, k, 1000 * ki as u64 + si as u64);
            let w = owned.weights(n, k);
            let x = normal(&mut rng, rows * k);
            let want = reference(&x, rows, &w);
            let wd = dequantized(&w);
            let float_tol = tolerances(&x, rows, &wd, n, k, FLOAT_REL, None);
            // Int8 tolerances by x block (32 or 256), made when first needed.
            let mut int8_tols: Vec<(usize, Vec<f32>)> = Vec::new();
            for pool in &pools {
                for tiling in tilings(rows, &w, pool.threads()) {
                    for &level in &levels {
                        let mut got = vec![f32::NAN; rows * n];
                        matmul_with(pool, level, &tiling, &x, rows, &w, &mut got)
                            .unwrap_or_else(|e| panic!("{kind} {rows}x{n}x{k}: {e}"));
                        let int8 = int8_x_block(level, &tiling, &w);
                        if tiling.regime == Regime::Decode {
                            assert_eq!(int8, int8_block(kind), "{kind}: decode int8 block");
                        }
                        let (tol, budget) = match int8 {
                            Some(block) => {
                                if !int8_tols.iter().any(|(b, _)| *b == block) {
                                    let t = tolerances(&x, rows, &wd, n, k, FLOAT_REL, Some(block));
                                    int8_tols.push((block, t));
                                }
                                let found = int8_tols.iter().find(|(b, _)| *b == block);
                                (&found.expect("just made").1, INT8_RMS)
                            }
                            None => (&float_tol, FLOAT_RMS),
                        };
                        let ctx = format!(
                            "{kind} rows {rows} n {n} k {k} threads {} {:?} {} tiling {tiling:?}",
                            pool.threads(),
                            tiling.regime,
                            level.name()
                        );
                        for (i, ((g, r), t)) in got.iter().zip(&want).zip(tol).enumerate() {
                            assert!(
                                (g - r).abs() <= *t,
                                "{ctx}: out[{i}] = {g}, reference {r}, tolerance {t}"
                            );
                        }
                        // An RMS over a handful of outputs is dominated by
                        // any that cancel to near zero: only judge 32 or more.
                        if got.len() >= 32 {
                            let rel = rms_rel(&got, &want);
                            assert!(rel <= budget, "{ctx}: RMS relative error {rel} > {budget}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn simd_matches_scalar_closely() {
    let pool = ThreadPool::new(2);
    let mut rng = SplitMix64::new(11);
    for (ki, &kind) in KINDS.iter().enumerate() {
        // An odd number of blocks: the AVX-512 dots take blocks in pairs
        // and 64 E4M3 codes at a time, so this exercises their tails.
        let (rows, n, k) = (3, 37, 5 * k_block(kind).max(64));
        let owned = make(kind, n, k, 77 + ki as u64);
        let w = owned.weights(n, k);
        let x = normal(&mut rng, rows * k);
        let wd = dequantized(&w);
        // Same integer sums on both levels: only the f32 order differs.
        let tol = tolerances(&x, rows, &wd, n, k, 2e-6, None);
        let levels = SimdLevel::supported().into_iter().skip(1);
        for (regime, level) in [Regime::Decode, Regime::Prefill]
            .into_iter()
            .flat_map(|r| levels.clone().map(move |l| (r, l)))
        {
            let tiling = Tiling {
                regime,
                ..tiling_for(rows, &w, 2)
            };
            let mut simd = vec![0f32; rows * n];
            let mut scalar = vec![0f32; rows * n];
            matmul_with(&pool, level, &tiling, &x, rows, &w, &mut simd).unwrap();
            matmul_with(&pool, SimdLevel::Scalar, &tiling, &x, rows, &w, &mut scalar).unwrap();
            // Where the SIMD path quantizes x and the scalar one does not
            // (AVX-512 integer prefill), they agree within the int8 budget.
            let int8 = int8_x_block(level, &tiling, &w);
            let int8_tol;
            let tol = if int8 != int8_x_block(SimdLevel::Scalar, &tiling, &w) {
                int8_tol = tolerances(&x, rows, &wd, n, k, 2e-6, int8);
                &int8_tol
            } else {
                &tol
            };
            for ((a, b), t) in simd.iter().zip(&scalar).zip(tol) {
                assert!(
                    (a - b).abs() <= *t,
                    "{kind} {regime:?} {}: simd {a} scalar {b} tol {t}",
                    level.name()
                );
            }
        }
    }
}

#[test]
fn one_and_two_threads_agree_exactly() {
    // Each output is computed by one task in a fixed order, so the thread
    // count must not change a single bit.
    let (one, two) = (ThreadPool::new(1), ThreadPool::new(2));
    let mut rng = SplitMix64::new(3);
    for &kind in &["q4_k", "f16", "mxfp4", "fp8-block128"] {
        let (rows, n, k) = (9, 45, 512);
        let owned = make(kind, n, k, 5);
        let w = owned.weights(n, k);
        let x = normal(&mut rng, rows * k);
        for regime in [Regime::Decode, Regime::Prefill] {
            let tiling = Tiling {
                regime,
                ..tiling_for(rows, &w, 2)
            };
            let mut a = vec![0f32; rows * n];
            let mut b = vec![1f32; rows * n];
            matmul_with(&one, cpu::active(), &tiling, &x, rows, &w, &mut a).unwrap();
            matmul_with(&two, cpu::active(), &tiling, &x, rows, &w, &mut b).unwrap();
            assert_eq!(a, b, "{kind} {regime:?}");
        }
    }
}

#[test]
fn prepacked_weights_give_the_same_bits_and_refuse_a_mismatch() {
    use exodus_kernels::matmul::{matmul_prepacked, PackedWeights};
    use exodus_kernels::KernelError;
    let pool = ThreadPool::new(2);
    let mut rng = SplitMix64::new(21);
    for &kind in &["f32", "bf16", "q4_1", "q4_k", "mxfp4", "fp8-block128"] {
        let (rows, n, k) = (37, 45, 512);
        let owned = make(kind, n, k, 8);
        let w = owned.weights(n, k);
        let x = normal(&mut rng, rows * k);
        for level in SimdLevel::supported() {
            for regime in [Regime::Prefill, Regime::Decode] {
                let tiling = Tiling {
                    regime,
                    ..tiling_for(rows, &w, 2)
                };
                let packed = PackedWeights::new(&pool, level, &tiling, &w).unwrap();
                assert!(packed.bytes() > 0);
                let mut want = vec![0f32; rows * n];
                let mut got = vec![f32::NAN; rows * n];
                matmul_with(&pool, level, &tiling, &x, rows, &w, &mut want).unwrap();
                matmul_prepacked(&pool, level, &tiling, &x, rows, &w, &packed, &mut got).unwrap();
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{kind} {} {regime:?}", level.name());
            }
        }
        // A pack for another tiling, level or matrix is refused.
        let tiling = tiling_for(rows, &w, 2);
        let packed = PackedWeights::new(&pool, SimdLevel::Scalar, &tiling, &w).unwrap();
        let mut out = vec![0f32; rows * n];
        let other_kc = Tiling {
            kc: tiling.kc + 256,
            ..tiling
        };
        let level = SimdLevel::supported().into_iter().last().unwrap();
        for (t, l) in [(other_kc, SimdLevel::Scalar), (tiling, level)] {
            if (t.kc, l) == (tiling.kc, SimdLevel::Scalar) {
                continue;
            }
            let err = matmul_prepacked(&pool, l, &t, &x, rows, &w, &packed, &mut out);
            assert!(
                matches!(err, Err(KernelError::BadShape { .. })),
                "{kind}: {err:?}"
            );
        }
        let small = make(kind, n - 1, k, 9);
        let ws = small.weights(n - 1, k);
        let mut out = vec![0f32; rows * (n - 1)];
        let err = matmul_prepacked(
            &pool,
            SimdLevel::Scalar,
            &tiling,
            &x,
            rows,
            &ws,
            &packed,
            &mut out,
        );
        assert!(
            matches!(err, Err(KernelError::BadShape { .. })),
            "{kind}: {err:?}"
        );
    }
}
