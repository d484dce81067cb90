//! Matmul throughput on a two-thread pool, against ceilings measured in
//! the same run:
//!
//! - decode (1 row) at 7B shapes (`n x k` = 4096 x 4096 and 11008 x 4096)
//!   for Q4_1, Q4_K, MXFP4 and FP8 (per-row and 128x128-tile scales), as GB/s
//!   of weight bytes against a two-thread memcpy of as many bytes. Both
//!   come from DRAM, as a 7B model's weights do: the timed calls rotate over
//!   enough copies of W (and of the memcpy's buffers) to fill twice the L3,
//!   so no call finds its bytes in cache (`EXODUS_BENCH_WARM=1` keeps one
//!   copy, the cache-resident case);
//! - prefill (512 rows, f32 W, `k = n` from 576 to 2048) as GFLOP/s against
//!   a two-thread loop of independent FMAs (the machine's FMA peak).
//!
//! `cargo bench -p exodus-kernels --bench matmul` prints a table and writes
//! `bench/results/kernels-matmul.json`. Min and median over repeats; the
//! ratios use the min times. Environment: `EXODUS_BENCH_THREADS` (default
//! 2), `EXODUS_BENCH_REPEATS` (default 15), `EXODUS_BENCH_FILTER=q4_k`
//! (decode formats whose name contains it; `f32` for prefill only),
//! `EXODUS_FORCE_SCALAR=1`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use exodus_kernels::matmul::{
    fma_probe, fma_probe_flops_per_round, matmul_prepacked, matmul_with, tiling_for, PackedWeights,
};
use exodus_kernels::tiling::CacheSizes;
use exodus_kernels::{ThreadPool, Weights};
use exodus_numerics::cpu::{self, SimdLevel};
use exodus_numerics::fp8_block::{BlockFp8, Scales};
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::mx::MxElement;
use exodus_numerics::sample::SplitMix64;
use exodus_numerics::{ElementFormat, Format};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// Min and median of `repeats` timings of `f`, after one warm-up run.
fn time(repeats: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let mut t: Vec<Duration> = (0..repeats)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[0], t[t.len() / 2])
}

/// Weights owned by the benchmark: random codes with sane scales (the
/// speed does not depend on the values).
enum Owned {
    Encoded(Format, Vec<u8>),
    Fp8Row(Vec<u8>, Vec<f32>),
    Fp8Block(BlockFp8),
}

fn no_nan_e4m3(mut codes: Vec<u8>) -> Vec<u8> {
    codes
        .iter_mut()
        .filter(|c| **c & 0x7F == 0x7F)
        .for_each(|c| *c &= 0xF7);
    codes
}

fn make(name: &str, n: usize, k: usize, rng: &mut SplitMix64) -> Owned {
    let d = half::f16::from_f32(0.01).to_le_bytes();
    match name {
        "q4_1" | "q4_k" => {
            let t = if name == "q4_1" {
                GgufBlockType::Q4_1
            } else {
                GgufBlockType::Q4K
            };
            let mut b = rng.bytes(n * k / t.block_elems() * t.block_bytes());
            for blk in b.chunks_exact_mut(t.block_bytes()) {
                blk[..2].copy_from_slice(&d);
                blk[2..4].copy_from_slice(&d);
            }
            Owned::Encoded(Format::Gguf(t), b)
        }
        "mxfp4" => {
            let e = MxElement::Fp4E2M1;
            let mut b = rng.bytes(n * k / 32 * e.block_bytes());
            b.chunks_exact_mut(e.block_bytes())
                .for_each(|blk| blk[0] = 120);
            Owned::Encoded(Format::Mx(e), b)
        }
        "fp8-row" => Owned::Fp8Row(no_nan_e4m3(rng.bytes(n * k)), vec![0.01; n]),
        _ => Owned::Fp8Block(BlockFp8 {
            rows: n,
            cols: k,
            tile_rows: 128,
            tile_cols: 128,
            values: no_nan_e4m3(rng.bytes(n * k)),
            scales: Scales::F32(vec![0.01; n.div_ceil(128) * k.div_ceil(128)]),
        }),
    }
}

impl Owned {
    fn weights(&self, n: usize, k: usize) -> Weights<'_> {
        match self {
            Owned::Encoded(f, b) => Weights::new(*f, b, n, k),
            Owned::Fp8Row(c, s) => Weights::fp8_per_row(c, s, n, k),
            Owned::Fp8Block(m) => Weights::fp8_block(m),
        }
        .expect("bench weights are well-formed")
    }
}

/// Best and median time of a memcpy of `bytes` bytes split over the pool,
/// rotating over `copies` source and destination buffers.
fn memcpy_time(
    pool: &ThreadPool,
    bytes: usize,
    copies: usize,
    repeats: usize,
) -> (Duration, Duration) {
    let src: Vec<Vec<u8>> = (0..copies).map(|c| vec![c as u8 + 1; bytes]).collect();
    // Written once here (`vec![0; n]` maps zero pages lazily), so no timed
    // copy pays for page faults.
    let mut dst: Vec<Vec<u8>> = (0..copies).map(|_| vec![0xA5u8; bytes]).collect();
    let chunk = bytes.div_ceil(pool.threads());
    let mut call = 0;
    time(repeats, || {
        let (src, dst) = (&src[call % copies], &mut dst[call % copies]);
        call += 1;
        pool.for_each_chunk_mut(dst, chunk, |i, d| {
            d.copy_from_slice(&src[i * chunk..i * chunk + d.len()]);
        });
        black_box(dst);
    })
}

/// FLOP/s of independent FMA chains on every pool thread
/// ([`fma_probe`]: the FMA peak of the level the GEMM runs on).
fn fma_peak(pool: &ThreadPool, level: SimdLevel, repeats: usize) -> f64 {
    const ROUNDS: usize = 20_000_000;
    let run = || {
        pool.parallel_for(pool.threads(), |t| {
            black_box(fma_probe(level, ROUNDS, black_box(t as f32 * 1e-3)));
        });
    };
    let (best, _) = time(repeats.min(5), run);
    (pool.threads() * ROUNDS * fma_probe_flops_per_round(level)) as f64 / best.as_secs_f64()
}

fn main() {
    let threads = env_usize("EXODUS_BENCH_THREADS", 2);
    let repeats = env_usize("EXODUS_BENCH_REPEATS", 15);
    let filter = std::env::var("EXODUS_BENCH_FILTER").unwrap_or_default();
    let warm = std::env::var("EXODUS_BENCH_WARM").is_ok_and(|v| v == "1");
    let pool = ThreadPool::new(threads);
    let level = cpu::active();
    let caches = CacheSizes::detect();
    println!(
        "matmul, {} threads, level {}, caches L1d {} KiB, L2 {} KiB, L3 {} KiB",
        pool.threads(),
        level.name(),
        caches.l1d >> 10,
        caches.l2 >> 10,
        caches.l3 >> 10
    );
    let mut rng = SplitMix64::new(1);
    let mut decode = Vec::new();
    println!(
        "\ndecode (1 row): GB/s of weight bytes vs a memcpy of as many bytes ({})",
        if warm {
            "one copy: cache-resident when it fits"
        } else {
            "rotating copies over 2x L3: from DRAM"
        }
    );
    println!(
        "{:<14} {:>6} {:>6} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "format", "n", "k", "MB", "copies", "min GB/s", "med GB/s", "memcpy", "ratio", "med"
    );
    for (n, k) in [(4096, 4096), (11008, 4096)] {
        let x: Vec<f32> = (0..k).map(|_| rng.normal() as f32).collect();
        let mut out = vec![0f32; n];
        for name in ["q4_1", "q4_k", "mxfp4", "fp8-row", "fp8-block128"] {
            if !filter.is_empty() && !name.contains(filter.as_str()) {
                continue;
            }
            let first = make(name, n, k, &mut rng);
            let bytes = first.weights(n, k).byte_len();
            let copies = if warm {
                1
            } else {
                (2 * caches.l3).div_ceil(bytes).max(2)
            };
            let owned: Vec<Owned> = std::iter::once(first)
                .chain((1..copies).map(|_| make(name, n, k, &mut rng)))
                .collect();
            let ws: Vec<Weights> = owned.iter().map(|o| o.weights(n, k)).collect();
            let tiling = tiling_for(1, &ws[0], pool.threads());
            let mut call = 0;
            let (min, med) = time(repeats, || {
                let w = &ws[call % copies];
                call += 1;
                matmul_with(&pool, level, &tiling, black_box(&x), 1, w, &mut out)
                    .expect("bench matmul");
                black_box(&mut out);
            });
            let (copy, copy_med) = memcpy_time(&pool, bytes, copies, repeats);
            let gbps = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
            let ratio = copy.as_secs_f64() / min.as_secs_f64();
            let ratio_med = copy_med.as_secs_f64() / med.as_secs_f64();
            println!(
                "{:<14} {:>6} {:>6} {:>9.1} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>7.2} {:>7.2}",
                name,
                n,
                k,
                bytes as f64 / 1e6,
                copies,
                gbps(min),
                gbps(med),
                gbps(copy),
                ratio,
                ratio_med
            );
            decode.push(json!({
                "format": name, "rows": 1, "n": n, "k": k, "weight_bytes": bytes,
                "copies": copies,
                "min_s": min.as_secs_f64(), "median_s": med.as_secs_f64(),
                "gbps_min": gbps(min), "gbps_median": gbps(med),
                "memcpy_gbps": gbps(copy), "memcpy_gbps_median": gbps(copy_med),
                "ratio_vs_memcpy": ratio, "ratio_vs_memcpy_median": ratio_med,
            }));
        }
    }

    let peak = fma_peak(&pool, level, repeats);
    println!(
        "\nprefill (512 rows, f32 W): GFLOP/s vs FMA peak {:.1} GFLOP/s",
        peak / 1e9
    );
    println!(
        "{:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>12} {:>12}",
        "rows", "n", "k", "min GF/s", "med GF/s", "ratio", "packed GF/s", "packed ratio"
    );
    let mut prefill = Vec::new();
    let rows = 512;
    for size in [576, 1024, 2048] {
        if !filter.is_empty() && !"f32".contains(filter.as_str()) {
            continue;
        }
        let (n, k) = (size, size);
        let w_f32: Vec<u8> = (0..n * k)
            .flat_map(|_| (rng.normal() as f32).to_le_bytes())
            .collect();
        let w =
            Weights::new(Format::Element(ElementFormat::F32), &w_f32, n, k).expect("f32 weights");
        let x: Vec<f32> = (0..rows * k).map(|_| rng.normal() as f32).collect();
        let mut out = vec![0f32; rows * n];
        let tiling = tiling_for(rows, &w, pool.threads());
        let (min, med) = time(repeats.min(7), || {
            matmul_with(&pool, level, &tiling, black_box(&x), rows, &w, &mut out)
                .expect("bench matmul");
            black_box(&mut out);
        });
        // The same GEMM with W packed once beforehand, as a model would
        // keep it (PackedWeights): no B packing in the timed calls.
        let packed = PackedWeights::new(&pool, level, &tiling, &w).expect("pack");
        let (pmin, pmed) = time(repeats.min(7), || {
            matmul_prepacked(
                &pool,
                level,
                &tiling,
                black_box(&x),
                rows,
                &w,
                &packed,
                &mut out,
            )
            .expect("bench matmul");
            black_box(&mut out);
        });
        let flops = 2.0 * (rows * n * k) as f64;
        let gf = |t: Duration| flops / t.as_secs_f64() / 1e9;
        let ratio = gf(min) * 1e9 / peak;
        let pratio = gf(pmin) * 1e9 / peak;
        println!(
            "{:>6} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>12.1} {:>12.2}",
            rows,
            n,
            k,
            gf(min),
            gf(med),
            ratio,
            gf(pmin),
            pratio
        );
        prefill.push(json!({
            "format": "f32", "rows": rows, "n": n, "k": k,
            "tiling": format!("{tiling:?}"),
            "min_s": min.as_secs_f64(), "median_s": med.as_secs_f64(),
            "gflops_min": gf(min), "gflops_median": gf(med), "ratio_vs_fma_peak": ratio,
            "prepacked_min_s": pmin.as_secs_f64(), "prepacked_median_s": pmed.as_secs_f64(),
            "prepacked_gflops_min": gf(pmin), "prepacked_ratio_vs_fma_peak": pratio,
        }));
    }

    let report = json!({
        "bench": "kernels-matmul",
        "threads": pool.threads(),
        "simd_level": level.name(),
        "repeats": repeats,
        "decode_cache": if warm { "warm" } else { "cold (rotating copies over 2x L3)" },
        "caches": {"l1d": caches.l1d, "l2": caches.l2, "l3": caches.l3},
        "fma_peak_gflops": peak / 1e9,
        "decode": decode,
        "prefill": prefill,
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/results/kernels-matmul.json"
    );
    match serde_json::to_string_pretty(&report) {
        Ok(text) => match std::fs::write(path, text + "\n") {
            Ok(()) => println!("\nwrote {path}"),
            Err(e) => eprintln!("could not write {path}: {e}"),
        },
        Err(e) => eprintln!("could not serialize the report: {e}"),
    }
}
