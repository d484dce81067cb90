//! A matmul split along k (tensor parallelism: each rank holds some
//! columns of W, whole blocks of them) sums back to the whole: W x =
//! W[:, a] x[a] + W[:, b] x[b], to float rounding, for every block count
//! of the parts (the kernels' tails).

mod matmul_util;

use exodus_kernels::matmul::matmul_in;
use exodus_kernels::{ThreadPool, Weights};
use exodus_numerics::sample::SplitMix64;
use matmul_util::*;

#[test]
fn column_blocks_of_w_sum_back_to_the_whole() {
    let pool = ThreadPool::new(2);
    let mut rng = SplitMix64::new(11);
    for kind in ["q4_0", "q4_1", "q8_0"] {
        let (n, blocks) = (40, 18);
        let k = 32 * blocks;
        let Owned::Encoded(format, bytes) = make(kind, n, k, 3) else {
            panic!()
        };
        let row_bytes = format.encoded_len(k, false).unwrap();
        let block_bytes = row_bytes / blocks;
        for rows in [1usize, 9] {
            let x = normal(&mut rng, rows * k);
            let mut whole = vec![0f32; rows * n];
            matmul_in(
                &pool,
                &x,
                rows,
                &Weights::new(format, &bytes, n, k).unwrap(),
                &mut whole,
            )
            .unwrap();
            for split in 1..blocks {
                let mut sum = vec![0f32; rows * n];
                for (b0, b1) in [(0, split), (split, blocks)] {
                    let kp = 32 * (b1 - b0);
                    let part: Vec<u8> = (0..n)
                        .flat_map(|r| {
                            bytes
                                [r * row_bytes + b0 * block_bytes..r * row_bytes + b1 * block_bytes]
                                .to_vec()
                        })
                        .collect();
                    let xp: Vec<f32> = (0..rows)
                        .flat_map(|r| x[r * k + 32 * b0..r * k + 32 * b1].to_vec())
                        .collect();
                    let mut out = vec![0f32; rows * n];
                    matmul_in(
                        &pool,
                        &xp,
                        rows,
                        &Weights::new(format, &part, n, kp).unwrap(),
                        &mut out,
                    )
                    .unwrap();
                    sum.iter_mut().zip(&out).for_each(|(s, o)| *s += o);
                }
                let worst = whole
                    .iter()
                    .zip(&sum)
                    .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-4,
                    "{kind}, {rows} rows, split at block {split}: {worst}"
                );
            }
        }
    }
}
