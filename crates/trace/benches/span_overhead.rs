//! Cost of one span with tracing off and on: an RAII guard opened and
//! dropped in a loop, and an explicit `record` of a pre-timed span.
//!
//! `cargo bench -p exodus-trace` prints ns per span and writes
//! `bench/results/trace-overhead.json`. Environment: `EXODUS_BENCH_SPANS`
//! (spans per timing, default 1,000,000), `EXODUS_BENCH_REPEATS` (default 5).

use std::hint::black_box;
use std::time::Instant;

use exodus_trace::{record, set_enabled, span, take, Span, Track};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best ns per iteration of `repeats` runs of `n` iterations of `f`; the
/// recorded spans are drained (untimed) after each run.
fn ns_per(n: usize, repeats: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..repeats + 1 {
        let start = Instant::now();
        for i in 0..n {
            f(black_box(i));
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        best = best.min(ns);
        black_box(take());
    }
    best
}

fn main() {
    let n = env_usize("EXODUS_BENCH_SPANS", 1_000_000).max(1);
    let repeats = env_usize("EXODUS_BENCH_REPEATS", 5).max(1);
    let guard = |i: usize| {
        let _g = span("bench-op", "bench");
        black_box(i);
    };
    let explicit = |i: usize| {
        record(Span::new(
            "bench-op",
            "bench",
            Track::stream(0),
            i as u64,
            1,
        ))
    };

    set_enabled(false);
    let guard_off = ns_per(n, repeats, guard);
    let record_off = ns_per(n, repeats, explicit);
    set_enabled(true);
    let guard_on = ns_per(n, repeats, guard);
    let record_on = ns_per(n, repeats, explicit);
    set_enabled(false);

    println!("spans per run {n}, best of {repeats}");
    println!("{:<16} {:>12} {:>12}", "path", "off ns/span", "on ns/span");
    println!("{:<16} {guard_off:>12.2} {guard_on:>12.2}", "span guard");
    println!(
        "{:<16} {record_off:>12.2} {record_on:>12.2}",
        "record(span)"
    );

    let json = serde_json::json!({
        "bench": "trace-overhead",
        "spans_per_run": n,
        "repeats": repeats,
        "guard_off_ns": guard_off,
        "guard_on_ns": guard_on,
        "record_off_ns": record_off,
        "record_on_ns": record_on,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/results");
    let path = format!("{dir}/trace-overhead.json");
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, format!("{json:#}\n"))) {
        Ok(()) => println!("wrote {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}
