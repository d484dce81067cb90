//! Single-thread quantize and dequantize throughput of every format,
//! against a memcpy of the same f32 bytes measured in the same run.
//!
//! `cargo bench -p exodus-numerics` prints a table and writes
//! `bench/results/numerics-<simd level>-<values>.json`. Throughput is f32 bytes (4 per value)
//! per second; `ratio` is the codec's best time against memcpy's best
//! time for those bytes, so it holds on a noisy machine better than either
//! number alone. Environment: `EXODUS_BENCH_VALUES` (default 2^22),
//! `EXODUS_BENCH_REPEATS` (default 7), `EXODUS_FORCE_SCALAR=1` for the
//! scalar paths, `EXODUS_BENCH_FILTER=q4_k` to run some formats only.

use std::hint::black_box;
use std::time::{Duration, Instant};

use exodus_numerics::{cpu, sample, Format, QuantizeOptions};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best and median of `repeats` timings of `f` (after one warm-up run).
fn time(repeats: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let mut times: Vec<Duration> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[times.len() / 2])
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    let values = env_usize("EXODUS_BENCH_VALUES", 1 << 22) / 256 * 256;
    let repeats = env_usize("EXODUS_BENCH_REPEATS", 7).max(1);
    let filter = std::env::var("EXODUS_BENCH_FILTER").unwrap_or_default();
    let f32_bytes = values * 4;
    // Deterministic N(0,1) data.
    let data = sample::normal(values, 1);

    let src_bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut dst_bytes = vec![0u8; f32_bytes];
    let (memcpy_min, memcpy_median) = time(repeats, || {
        dst_bytes.copy_from_slice(black_box(&src_bytes));
        black_box(&mut dst_bytes);
    });
    let memcpy = gbps(f32_bytes, memcpy_min);
    let level = cpu::active();
    println!(
        "values {values}, repeats {repeats}, level {}, memcpy of {} MiB: {memcpy:.2} GB/s (median {:.2})",
        level.name(),
        f32_bytes >> 20,
        gbps(f32_bytes, memcpy_median)
    );
    println!(
        "{:<13} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8}",
        "format", "quant GB/s", "median", "ratio", "deq GB/s", "median", "ratio"
    );

    let opts = QuantizeOptions::default();
    let mut results = Vec::new();
    let mut out = vec![0f32; values];
    for format in Format::all() {
        if !filter.is_empty() && !filter.split(',').any(|f| f == format.name()) {
            continue;
        }
        let encoded = if format.can_quantize() {
            format.quantize(&data, &opts).expect("whole blocks")
        } else {
            // Dequantize-only formats: time decoding of valid-looking bytes.
            let len = format.encoded_len(values, false).expect("whole blocks");
            (0..len).map(|i| (i * 131 % 251) as u8 & 0x3f).collect()
        };
        let quant = format.can_quantize().then(|| {
            let mut buf = vec![0u8; encoded.len()];
            time(repeats, || {
                format
                    .quantize_into(black_box(&data), &mut buf, &opts)
                    .expect("quantize");
                black_box(&mut buf);
            })
        });
        let deq = time(repeats, || {
            format
                .dequantize_into(black_box(&encoded), &mut out, false)
                .expect("dequantize");
            black_box(&mut out);
        });
        let fmt_q = |q: Option<(Duration, Duration)>| match q {
            Some((min, med)) => format!(
                "{:>10.2} {:>10.2} {:>8.2}",
                gbps(f32_bytes, min),
                gbps(f32_bytes, med),
                gbps(f32_bytes, min) / memcpy
            ),
            None => format!("{:>10} {:>10} {:>8}", "-", "-", "-"),
        };
        println!(
            "{:<13} {} {}",
            format.name(),
            fmt_q(quant),
            fmt_q(Some(deq))
        );
        results.push(serde_json::json!({
            "format": format.name(),
            "encoded_bytes": encoded.len(),
            "quantize_gbps_best": quant.map(|q| gbps(f32_bytes, q.0)),
            "quantize_gbps_median": quant.map(|q| gbps(f32_bytes, q.1)),
            "quantize_vs_memcpy": quant.map(|q| gbps(f32_bytes, q.0) / memcpy),
            "dequantize_gbps_best": gbps(f32_bytes, deq.0),
            "dequantize_gbps_median": gbps(f32_bytes, deq.1),
            "dequantize_vs_memcpy": gbps(f32_bytes, deq.0) / memcpy,
        }));
    }
    let report = serde_json::json!({
        "values": values,
        "repeats": repeats,
        "simd_level": level.name(),
        "threads": 1,
        "memcpy_gbps_best": memcpy,
        "memcpy_gbps_median": gbps(f32_bytes, memcpy_median),
        "formats": results,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results");
    let name = format!("numerics-{}-{values}.json", level.name());
    if !filter.is_empty() {
        println!("(EXODUS_BENCH_FILTER set: results not written)");
    } else if std::fs::create_dir_all(&dir).is_ok() {
        let path = dir.join(name);
        match std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        ) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}
