//! Batch invariance: where [`row_results_independent_of_batch`] says so, a
//! row of x gets the very same bits from a matmul whether it runs alone
//! (the decode dots, one W row or four at a time), with a few other rows
//! (still decode), or in a prefill batch of any size (the integer GEMM
//! tile, W packed per call or once): the serving engine relies on it for a
//! request's tokens to be the same alone and batched.

mod matmul_util;

use exodus_kernels::matmul::{
    matmul_group_in, matmul_in, matmul_prepacked, row_results_independent_of_batch, tiling_for,
    PackedWeights,
};
use exodus_kernels::{ThreadPool, Weights};
use exodus_numerics::cpu;
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::sample::SplitMix64;
use exodus_numerics::Format;
use matmul_util::*;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn a_row_gets_the_same_bits_in_any_batch() {
    let level = cpu::active();
    let pool = ThreadPool::new(2);
    let mut rng = SplitMix64::new(5);
    let mut checked = 0;
    for (ki, kind) in ["q4_0", "q4_1", "q8_0"].into_iter().enumerate() {
        // 19 blocks (an odd count: the canonical tail), n not a multiple
        // of 4 or 16 (the remainder rows of both paths).
        let (n, k) = (70, 32 * 19);
        let owned = make(kind, n, k, 40 + ki as u64);
        let w: Weights = owned.weights(n, k);
        let format = match kind {
            "q4_0" => Format::Gguf(GgufBlockType::Q4_0),
            "q4_1" => Format::Gguf(GgufBlockType::Q4_1),
            _ => Format::Gguf(GgufBlockType::Q8_0),
        };
        if !row_results_independent_of_batch(level, format) {
            eprintln!("{kind}: rows are not batch-independent at {level:?}; nothing to check");
            continue;
        }
        // Outliers in x, as in a real residual stream.
        let mut x = normal(&mut rng, 64 * k);
        for i in (0..x.len()).step_by(97) {
            x[i] *= 300.0;
        }
        let alone: Vec<Vec<u32>> = (0..64)
            .map(|r| {
                let mut out = vec![0f32; n];
                matmul_in(&pool, &x[r * k..(r + 1) * k], 1, &w, &mut out).unwrap();
                bits(&out)
            })
            .collect();
        for rows in [2, 3, 4, 5, 8, 13, 16, 17, 33, 64] {
            let mut out = vec![0f32; rows * n];
            matmul_in(&pool, &x[..rows * k], rows, &w, &mut out).unwrap();
            let tiling = tiling_for(rows, &w, pool.threads());
            let packed = PackedWeights::new(&pool, level, &tiling, &w).unwrap();
            let mut out_packed = vec![0f32; rows * n];
            matmul_prepacked(
                &pool,
                level,
                &tiling,
                &x[..rows * k],
                rows,
                &w,
                &packed,
                &mut out_packed,
            )
            .unwrap();
            let mut out_group = vec![0f32; rows * n];
            matmul_group_in(
                &pool,
                &x[..rows * k],
                rows,
                &[&w],
                &mut [&mut out_group[..]],
            )
            .unwrap();
            for r in 0..rows {
                let row = |o: &[f32]| bits(&o[r * n..(r + 1) * n]);
                assert_eq!(row(&out), alone[r], "{kind}: row {r} of {rows}");
                assert_eq!(
                    row(&out_packed),
                    alone[r],
                    "{kind}: row {r} of {rows}, prepacked"
                );
                assert_eq!(
                    row(&out_group),
                    alone[r],
                    "{kind}: row {r} of {rows}, group"
                );
            }
            checked += 1;
        }
    }
    if level.has_avx512() {
        assert_eq!(
            checked, 30,
            "AVX-512 must give batch-independent rows for all three"
        );
    }
}
