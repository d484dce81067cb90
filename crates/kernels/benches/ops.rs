//! Throughput of the non-matmul kernels at SmolLM2-135M shapes (hidden
//! 576, intermediate 1536, vocab 49152; 9 query heads, 3 KV heads,
//! head_dim 64): GB/s of rms_norm, softmax and silu on every SIMD level,
//! and decode attention tokens/s over a paged cache at contexts 512 and
//! 2048 for every cache format.
//!
//! `cargo bench -p exodus-kernels --bench ops` prints a table and writes
//! `bench/results/kernels-ops.json`. Each number is the best (and median)
//! of `EXODUS_BENCH_REPEATS` (default 7) samples of at least ~2 ms each.
//! GB/s counts the f32 bytes a kernel must read and write once. Attention
//! runs on the global pool (`EXODUS_THREADS`), batch 1 (one sequence: 3
//! tasks, one per KV head) and batch 8.

use std::hint::black_box;
use std::time::{Duration, Instant};

use exodus_kernels::attention::{
    paged_attention_with, AttentionParams, KvFormat, KvLayout, PagedKvCache, SeqSpan,
};
use exodus_kernels::ops::{self, RmsNormParams};
use exodus_kernels::pool;
use exodus_numerics::cpu::{self, SimdLevel};
use exodus_numerics::sample;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best and median time of one call of `f`, over `repeats` samples of
/// enough calls to last ~2 ms (after a warm-up sample).
fn time(repeats: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(50));
    let iters = (Duration::from_millis(2).as_nanos() / once.as_nanos()).clamp(1, 100_000) as u32;
    let mut samples: Vec<Duration> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed() / iters
        })
        .collect();
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn main() {
    let repeats = env_usize("EXODUS_BENCH_REPEATS", 7).max(1);
    let levels = SimdLevel::supported();
    let mut results = Vec::new();
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10}",
        "op [shape]", "level", "best us", "GB/s", "median GB/s"
    );

    // (name, rows, cols): decode (1 row) and a 64-token prefill chunk.
    let shapes = [
        ("rms_norm", 1, 576),
        ("rms_norm", 64, 576),
        ("silu", 1, 1536),
        ("silu", 64, 1536),
        ("softmax", 1, 49152),
        ("softmax", 9, 512),
        ("softmax", 9, 2048),
    ];
    for (op, rows, cols) in shapes {
        let n = rows * cols;
        let x = sample::normal(n, 7);
        let w = sample::normal(cols, 8);
        let mut out = vec![0f32; n];
        // Bytes read and written once: x in, out (or x in place) out.
        let bytes = 2 * n * 4 + if op == "rms_norm" { cols * 4 } else { 0 };
        for &level in &levels {
            let (best, median) = match op {
                "rms_norm" => {
                    let p = RmsNormParams::default();
                    time(repeats, || {
                        ops::rms_norm_with(level, black_box(&x), &w, &mut out, rows, cols, &p)
                            .expect("shapes match");
                    })
                }
                "silu" => time(repeats, || {
                    ops::silu_with(level, black_box(&x), &mut out).expect("shapes match");
                }),
                _ => time(repeats, || {
                    out.copy_from_slice(&x);
                    ops::softmax_with(level, black_box(&mut out), rows, cols)
                        .expect("shapes match");
                }),
            };
            let gbps = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
            let name = format!("{op} [{rows}x{cols}]");
            println!(
                "{name:<28} {:>6} {:>10.2} {:>10.2} {:>10.2}",
                level.name(),
                best.as_secs_f64() * 1e6,
                gbps(best),
                gbps(median)
            );
            results.push(serde_json::json!({
                "kind": "op", "op": op, "rows": rows, "cols": cols, "level": level.name(),
                "best_s": best.as_secs_f64(), "median_s": median.as_secs_f64(),
                "gbps_best": gbps(best), "gbps_median": gbps(median),
            }));
        }
    }

    let (n_heads, n_kv, d, block) = (9, 3, 64, 16);
    let pool = pool::global();
    let level = cpu::active();
    println!(
        "\ndecode attention, {n_heads} heads / {n_kv} KV heads x {d}, blocks of {block}, level {}, {} threads",
        level.name(),
        pool.threads()
    );
    println!(
        "{:<12} {:>6} {:>6} {:>10} {:>12} {:>14}",
        "kv format", "ctx", "batch", "best us", "tokens/s", "median tok/s"
    );
    for format in KvFormat::ALL {
        for ctx in [512usize, 2048] {
            for batch in [1, 8] {
                let layout = KvLayout::new(block, n_kv, d, format).expect("valid layout");
                let per_seq = ctx.div_ceil(block);
                let mut cache =
                    PagedKvCache::zeroed(layout, per_seq * batch).expect("pool fits in memory");
                let tables: Vec<Vec<u32>> = (0..batch)
                    .map(|s| (0..per_seq).map(|b| (b * batch + s) as u32).collect())
                    .collect();
                let kv = sample::normal(ctx * n_kv * d, 9);
                for t in &tables {
                    cache.write(t, 0, &kv, &kv, ctx).expect("tables cover ctx");
                }
                let spans: Vec<SeqSpan> = tables
                    .iter()
                    .map(|t| SeqSpan {
                        block_table: t,
                        start_pos: ctx - 1,
                        n_q: 1,
                    })
                    .collect();
                let q = sample::normal(batch * n_heads * d, 10);
                let mut out = vec![0f32; q.len()];
                let params = AttentionParams {
                    n_heads,
                    scale: None,
                };
                let (best, median) = time(repeats, || {
                    paged_attention_with(
                        level,
                        pool,
                        &cache,
                        &spans,
                        black_box(&q),
                        &mut out,
                        &params,
                    )
                    .expect("valid call");
                });
                let tps = |t: Duration| batch as f64 / t.as_secs_f64();
                println!(
                    "{:<12} {ctx:>6} {batch:>6} {:>10.1} {:>12.0} {:>14.0}",
                    format.name(),
                    best.as_secs_f64() * 1e6,
                    tps(best),
                    tps(median)
                );
                results.push(serde_json::json!({
                    "kind": "attention_decode", "format": format.name(), "context": ctx,
                    "batch": batch, "n_heads": n_heads, "n_kv_heads": n_kv, "head_dim": d,
                    "block_size": block, "level": level.name(), "threads": pool.threads(),
                    "best_s": best.as_secs_f64(), "median_s": median.as_secs_f64(),
                    "tokens_per_s_best": tps(best), "tokens_per_s_median": tps(median),
                }));
            }
        }
    }

    let report = serde_json::json!({
        "bench": "kernels-ops",
        "repeats": repeats,
        "detected_level": cpu::detected().name(),
        "results": results,
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/results/kernels-ops.json"
    );
    match std::fs::write(
        path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    ) {
        Ok(()) => println!("\nwrote {path}"),
        Err(e) => eprintln!("\ncould not write {path}: {e}"),
    }
}
