//! `matmul_group_in` (several weights against one x, as the q/k/v or
//! gate/up projections of a layer) gives, for every weight, the very bits
//! `matmul_in` gives for that weight alone: in the decode regime, where the
//! group runs as one job, and in the prefill regime, where it runs each
//! weight on its own; and it refuses mismatched outputs.

mod matmul_util;

use exodus_kernels::matmul::{matmul_group_in, matmul_in};
use exodus_kernels::{KernelError, ThreadPool, Weights};
use exodus_numerics::sample::SplitMix64;
use matmul_util::*;

#[test]
fn every_weight_of_a_group_matches_its_own_matmul_bit_for_bit() {
    let mut rng = SplitMix64::new(11);
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads);
        for (ki, &kind) in KINDS.iter().enumerate() {
            let k = k_block(kind).max(32) * 3;
            let ns = [67, 16, 129];
            let owned: Vec<Owned> = ns
                .iter()
                .enumerate()
                .map(|(i, &n)| make(kind, n, k, 100 * ki as u64 + i as u64))
                .collect();
            let ws: Vec<Weights> = owned
                .iter()
                .zip(&ns)
                .map(|(o, &n)| o.weights(n, k))
                .collect();
            let refs: Vec<&Weights> = ws.iter().collect();
            for rows in [0, 1, 2, 5, 40] {
                let x = normal(&mut rng, rows * k);
                let mut outs: Vec<Vec<f32>> =
                    ns.iter().map(|&n| vec![f32::NAN; rows * n]).collect();
                let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
                matmul_group_in(&pool, &x, rows, &refs, &mut views).unwrap();
                for (i, w) in ws.iter().enumerate() {
                    let mut alone = vec![0f32; rows * ns[i]];
                    matmul_in(&pool, &x, rows, w, &mut alone).unwrap();
                    let same = alone
                        .iter()
                        .zip(&outs[i])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{kind}, rows {rows}, weight {i}, {threads} threads");
                }
            }
        }
    }
}

#[test]
fn a_group_refuses_outputs_that_do_not_fit() {
    let pool = ThreadPool::new(2);
    let (n, k) = (8, 64);
    let owned = make("q4_1", n, k, 3);
    let w = owned.weights(n, k);
    let x = vec![0.5f32; k];
    let mut a = vec![0f32; n];
    let mut short = vec![0f32; n - 1];
    let err = matmul_group_in(&pool, &x, 1, &[&w, &w], &mut [&mut a[..]]).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { .. }), "{err}");
    let err =
        matmul_group_in(&pool, &x, 1, &[&w, &w], &mut [&mut a[..], &mut short[..]]).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { .. }), "{err}");
}

#[test]
fn swiglu_epilogue_matches_two_matmuls_and_the_activation_bit_for_bit() {
    use exodus_kernels::matmul::matmul_swiglu_in;
    use exodus_kernels::ops::swiglu;
    let mut rng = SplitMix64::new(5);
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads);
        for (ki, &kind) in KINDS.iter().enumerate() {
            let k = k_block(kind).max(32) * 2;
            // Odd widths put SIMD tails at the end of the vector.
            for n in [16, 67, 129, 1000] {
                let (og, ou) = (
                    make(kind, n, k, 7 * ki as u64),
                    make(kind, n, k, 7 * ki as u64 + 1),
                );
                let (wg, wu) = (og.weights(n, k), ou.weights(n, k));
                for rows in [1, 3] {
                    let x = normal(&mut rng, rows * k);
                    let mut fused = vec![f32::NAN; rows * n];
                    matmul_swiglu_in(&pool, &x, rows, &wg, &wu, &mut fused).unwrap();
                    let (mut g, mut u) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                    matmul_in(&pool, &x, rows, &wg, &mut g).unwrap();
                    matmul_in(&pool, &x, rows, &wu, &mut u).unwrap();
                    let mut want = vec![0f32; rows * n];
                    swiglu(&g, &u, &mut want).unwrap();
                    let same = want
                        .iter()
                        .zip(&fused)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{kind}, n {n}, rows {rows}, {threads} threads");
                }
            }
        }
    }
}
