//! Per-launch cost of 1,000 tiny launches submitted one by one (eager)
//! against the same 1,000 launches captured once and replayed as one
//! queue entry, each timed from the first submission to `synchronize`.
//!
//! `cargo bench -p exodus-runtime` prints a table and writes
//! `bench/results/runtime-launch.json`. Environment: `EXODUS_BENCH_LAUNCHES`
//! (default 1000), `EXODUS_BENCH_REPEATS` (default 300: a run takes under a second, and eager launches vary with thread wake-ups, so many repeats keep the best stable). `ratio` is eager
//! over replay per-launch time (best of the repeats; median alongside).

use std::sync::Arc;
use std::time::{Duration, Instant};

use exodus_runtime::{CpuDevice, Device, DeviceBuffer, Launch, RuntimeError, Stream, Task};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best and median of `repeats` timings (after one warm-up run).
fn time(
    repeats: usize,
    mut f: impl FnMut() -> Result<(), RuntimeError>,
) -> Result<(Duration, Duration), RuntimeError> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[0], times[times.len() / 2]))
}

fn per_launch_ns(t: Duration, launches: usize) -> f64 {
    t.as_nanos() as f64 / launches as f64
}

fn eager(
    stream: &Stream,
    task: &Task,
    buf: &DeviceBuffer<u64>,
    n: usize,
) -> Result<(), RuntimeError> {
    for _ in 0..n {
        stream.launch(Launch::from_task("tiny", Arc::clone(task)).output(buf))?;
    }
    stream.synchronize()
}

fn main() -> Result<(), RuntimeError> {
    let n = env_usize("EXODUS_BENCH_LAUNCHES", 1000).max(1);
    let repeats = env_usize("EXODUS_BENCH_REPEATS", 300).max(1);
    let dev = CpuDevice::new();
    let stream = dev.create_stream()?;
    let buf = dev.alloc::<u64>(16)?;
    let task: Task = Arc::new(|k| {
        k.output::<u64>(0)?[0] += 1;
        Ok(())
    });

    let (eager_best, eager_median) = time(repeats, || eager(&stream, &task, &buf, n))?;

    let capture_start = Instant::now();
    stream.begin_capture()?;
    for _ in 0..n {
        stream.launch(Launch::from_task("tiny", Arc::clone(&task)).output(&buf))?;
    }
    let graph = stream.end_capture()?;
    let exec = graph.instantiate()?;
    let capture = capture_start.elapsed();

    let (replay_best, replay_median) = time(repeats, || {
        stream.replay(&exec)?;
        stream.synchronize()
    })?;

    // Every launch ran exactly once: warm-up + repeats, eager and replayed.
    let expected = 2 * (repeats as u64 + 1) * n as u64;
    let got = buf.to_host()[0];
    if got != expected {
        eprintln!("lost launches: counter {got}, expected {expected}");
        std::process::exit(1);
    }

    let eager_ns = per_launch_ns(eager_best, n);
    let replay_ns = per_launch_ns(replay_best, n);
    let ratio = eager_ns / replay_ns;
    let ratio_median = per_launch_ns(eager_median, n) / per_launch_ns(replay_median, n);
    println!("{n} tiny launches on one stream, best (median) of {repeats}, counter checked");
    println!("{:<22} {:>14} {:>14}", "mode", "ns/launch", "median");
    println!(
        "{:<22} {eager_ns:>14.1} {:>14.1}",
        "eager",
        per_launch_ns(eager_median, n)
    );
    println!(
        "{:<22} {replay_ns:>14.1} {:>14.1}",
        "graph replay",
        per_launch_ns(replay_median, n)
    );
    println!(
        "{:<22} {:>14.1}",
        "capture + instantiate",
        per_launch_ns(capture, n)
    );
    println!("ratio eager/replay: {ratio:.1}x (median {ratio_median:.1}x; goal >= 5x)");

    let json = serde_json::json!({
        "bench": "runtime-launch",
        "launches": n,
        "repeats": repeats,
        "eager_ns_per_launch": eager_ns,
        "eager_ns_per_launch_median": per_launch_ns(eager_median, n),
        "replay_ns_per_launch": replay_ns,
        "replay_ns_per_launch_median": per_launch_ns(replay_median, n),
        "capture_instantiate_ns_per_launch": per_launch_ns(capture, n),
        "ratio": ratio,
        "ratio_median": ratio_median,
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/results");
    let path = format!("{dir}/runtime-launch.json");
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, format!("{json:#}\n"))) {
        Ok(()) => println!("wrote bench/results/runtime-launch.json"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
    Ok(())
}
