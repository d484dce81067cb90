//! This machine's limits, measured in the same run as the cases: the FMA
//! peak (independent fused multiply-add chains on every pool thread, the
//! GEMM micro-kernel's instruction mix without its loads) and the memory
//! bandwidth (a memcpy split over the pool).

use std::hint::black_box;
use std::time::{Duration, Instant};

use exodus_numerics::cpu::SimdLevel;

use crate::matmul::{fma_probe, fma_probe_flops_per_round};
use crate::pool::ThreadPool;

/// Best of `repeats` timings of `f` (after one warm-up call).
fn best_of(repeats: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
        .max(Duration::from_nanos(1))
}

/// GB/s of a memcpy of `bytes` bytes split over `pool`, counting bytes read
/// plus bytes written (`2 * bytes` per copy), the same convention as the
/// cases' byte counts. Best of `repeats`. Use a size well beyond the last
/// cache level (e.g. 128 MiB) to measure DRAM.
pub fn memcpy_gbps(pool: &ThreadPool, bytes: usize, repeats: usize) -> f64 {
    let bytes = bytes.max(1);
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let chunk = bytes.div_ceil(pool.threads());
    let best = best_of(repeats, || {
        pool.for_each_chunk_mut(&mut dst, chunk, |i, d| {
            d.copy_from_slice(&src[i * chunk..i * chunk + d.len()]);
        });
        black_box(&mut dst);
    });
    2.0 * bytes as f64 / best.as_secs_f64() / 1e9
}

/// GB/s of reading `bytes` bytes split over `pool` (each thread sums its
/// part as 64-bit words), best of `repeats`: the ceiling of a kernel that
/// streams weights, such as a decode step that reads every weight once. A
/// buffer the size of what the kernel streams puts the probe in the same
/// cache situation.
pub fn read_gbps(pool: &ThreadPool, bytes: usize, repeats: usize) -> f64 {
    let words = bytes.div_ceil(8).max(1);
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(pool.threads());
    let mut sums = vec![0u64; pool.threads()];
    let best = best_of(repeats, || {
        pool.for_each_chunk_mut(&mut sums, 1, |i, s| {
            let part = buf.chunks(chunk).nth(i).unwrap_or_default();
            // Eight independent sums, so the adds never wait on each other.
            let mut acc = [0u64; 8];
            for block in part.chunks_exact(8) {
                for (a, &w) in acc.iter_mut().zip(block) {
                    *a = a.wrapping_add(w);
                }
            }
            let tail = part.chunks_exact(8).remainder().iter();
            s[0] = acc.iter().chain(tail).fold(0, |a, &w| a.wrapping_add(w));
        });
        black_box(&mut sums);
    });
    (8 * words) as f64 / best.as_secs_f64() / 1e9
}

/// GFLOP/s of `rounds` rounds of [`fma_probe`] on every thread of `pool`
/// at `level` (the FMA peak the matmul kernels of that level can reach).
/// Best of `repeats`.
pub fn fma_peak_gflops(pool: &ThreadPool, level: SimdLevel, rounds: usize, repeats: usize) -> f64 {
    let best = best_of(repeats, || {
        pool.parallel_for(pool.threads(), |t| {
            black_box(fma_probe(level, rounds, black_box(t as f32 * 1e-3)));
        });
    });
    (pool.threads() * rounds * fma_probe_flops_per_round(level)) as f64 / best.as_secs_f64() / 1e9
}

/// Both limits of this machine, as the benchmark reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// FMA peak, GFLOP/s.
    pub fma_gflops: f64,
    /// memcpy bandwidth, GB/s (read + written).
    pub memcpy_gbps: f64,
    /// Bytes of the memcpy probe.
    pub memcpy_bytes: usize,
}

impl Limits {
    /// Measures both limits on `pool` at `level`: a 256 MiB memcpy (64 MiB
    /// when `quick`) and 20 M FMA rounds per thread (5 M when `quick`).
    pub fn measure(pool: &ThreadPool, level: SimdLevel, quick: bool) -> Limits {
        let (bytes, rounds) = if quick {
            (64 << 20, 5_000_000)
        } else {
            (256 << 20, 20_000_000)
        };
        Limits {
            fma_gflops: fma_peak_gflops(pool, level, rounds, 3),
            memcpy_gbps: memcpy_gbps(pool, bytes, 5),
            memcpy_bytes: bytes,
        }
    }
}
