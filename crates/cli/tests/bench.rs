//! `exodus bench kernels` end to end: a real process writes the JSON report
//! and a trace, and `exodus trace summary` lists the benchmarked case. No
//! timing assertions: only that the numbers are there and positive.

mod common;

use std::process::Output;

fn exodus(args: &[&str]) -> Output {
    common::exodus(args, None)
}

fn positive(v: &serde_json::Value, key: &str) -> bool {
    v[key].as_f64().is_some_and(|x| x > 0.0 && x.is_finite())
}

#[test]
fn bench_kernels_writes_json_and_a_trace() {
    let dir = std::env::temp_dir().join(format!("exodus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("kernels.json");
    let trace = dir.join("trace.json");
    let case = "smollm2.rms_norm.m1";
    let (out_s, trace_s) = (out.to_string_lossy(), trace.to_string_lossy());
    let run = exodus(&[
        "bench",
        "kernels",
        "--filter",
        case,
        "--repeats",
        "1",
        "--json",
        "--out",
        &out_s,
        "--trace",
        &trace_s,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let text = std::fs::read_to_string(&out).expect("report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    let stdout: serde_json::Value =
        serde_json::from_slice(&run.stdout).expect("--json prints the report");
    assert_eq!(report, stdout);
    assert!(positive(&report["limits"], "fma_peak_gflops"));
    assert!(positive(&report["limits"], "memcpy_gbps"));
    let rows = report["cases"].as_array().expect("cases");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["name"], case);
    assert_eq!(row["model"], "smollm2-135m");
    for key in [
        "flops",
        "bytes",
        "min_s",
        "median_s",
        "gflops",
        "gbps",
        "ratio_fma_peak",
        "ratio_memcpy",
    ] {
        assert!(positive(row, key), "{key}: {}", row[key]);
    }

    let summary = exodus(&["trace", "summary", &trace_s]);
    assert!(
        summary.status.success(),
        "{}",
        String::from_utf8_lossy(&summary.stderr)
    );
    assert!(String::from_utf8_lossy(&summary.stdout).contains(case));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_kernels_rejects_a_filter_that_matches_nothing() {
    let run = exodus(&[
        "bench",
        "kernels",
        "--filter",
        "no such case",
        "--out",
        "/dev/null",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no case matches"));
}
