//! The `exodus` binary end to end: real processes, real files, pipes.

mod common;

use common::exodus;
use std::process::{Command, Stdio};

use exodus_numerics::{Format, QuantizeOptions};

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn sample(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 250.0 - 2.0) * if i % 7 == 0 { 30.0 } else { 1.0 })
        .collect()
}

#[test]
fn formats_lists_every_format() {
    let out = exodus(&["formats", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = Format::all().iter().map(|f| f.name()).collect();
    assert_eq!(names, expected);
    let e4m3 = &json[3];
    assert_eq!(e4m3["max_finite"], 448.0);
    assert_eq!(e4m3["inf"], false);
}

#[test]
fn formats_error_measures_every_quantizable_format() {
    let out = exodus(&["formats", "--error", "--samples", "4096", "--json"], None);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in json.as_array().unwrap() {
        let err = &f["rms_rel_error_normal"];
        if f["can_quantize"] == true && f["name"] != "e8m0" {
            let e = err
                .as_f64()
                .unwrap_or_else(|| panic!("{} has no error", f["name"]));
            assert!((0.0..0.2).contains(&e), "{}: {e}", f["name"]);
        }
    }
}

#[test]
fn codes_grid_of_hif8() {
    let out = exodus(&["formats", "--codes", "hif8"], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 17);
    assert!(text.contains("32768") && text.contains("inf") && text.contains("NaN"));
}

#[test]
fn convert_through_files_matches_the_library() {
    let dir = std::env::temp_dir().join(format!("exodus-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = sample(1024);
    let input = dir.join("x.f32");
    std::fs::write(&input, f32_bytes(&x)).unwrap();
    for name in [
        "mxfp4",
        "q4_k",
        "fp8-e4m3",
        "hif8",
        "fp8-block128",
        "mxfp6-e3m2",
    ] {
        let encoded = dir.join(format!("x.{name}"));
        let decoded = dir.join(format!("x.{name}.f32"));
        let (i, e, d) = (
            input.to_str().unwrap(),
            encoded.to_str().unwrap(),
            decoded.to_str().unwrap(),
        );
        assert!(
            exodus(&["convert", "--from", "f32", "--to", name, i, e], None)
                .status
                .success()
        );
        assert!(
            exodus(&["convert", "--from", name, "--to", "f32", e, d], None)
                .status
                .success()
        );
        let format: Format = name.parse().unwrap();
        let want = format.quantize(&x, &QuantizeOptions::default()).unwrap();
        assert_eq!(std::fs::read(&encoded).unwrap(), want, "{name}");
        let back = format.dequantize(&want, x.len()).unwrap();
        assert_eq!(std::fs::read(&decoded).unwrap(), f32_bytes(&back), "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn convert_through_pipes_with_options() {
    let x = sample(64);
    let out = exodus(
        &[
            "convert", "--from", "f32", "--to", "fp4-e2m1", "--packed", "-", "-",
        ],
        Some(&f32_bytes(&x)),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32); // 64 four-bit codes
    let out = exodus(
        &[
            "convert",
            "--from",
            "f32",
            "--to",
            "fp8-e5m2",
            "--overflow",
            "nonfinite",
            "-",
            "-",
        ],
        Some(&f32_bytes(&[1e6, -1e6])),
    );
    assert_eq!(out.stdout, vec![0x7c, 0xfc]); // ±Inf
    let out = exodus(
        &["convert", "--from", "f32", "--to", "fp8-e5m2", "-", "-"],
        Some(&f32_bytes(&[1e6])),
    );
    assert_eq!(out.stdout, vec![0x7b]); // saturated to 57344
                                        // Format to format, through f32: bf16 -> fp8-e4m3.
    let bf16: Vec<u8> = [1.0f32, 300.0]
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let out = exodus(
        &["convert", "--from", "bf16", "--to", "fp8-e4m3", "-", "-"],
        Some(&bf16),
    );
    assert_eq!(out.stdout, vec![0x38, 0x79]); // 1.0 and 288 (nearest to 300)
}

#[test]
fn bad_input_is_a_clear_error() {
    let cases: [(&[&str], &[u8], &str); 5] = [
        (
            &["convert", "--from", "f32", "--to", "q4_9", "-", "-"],
            &[0; 4],
            "unknown format `q4_9`",
        ),
        (
            &["convert", "--from", "f32", "--to", "mxfp4", "-", "-"],
            &[0; 12],
            "not a whole number of 32-element blocks",
        ),
        (
            &["convert", "--from", "f32", "--to", "f16", "-", "-"],
            &[0; 6],
            "not a whole number",
        ),
        (
            &["convert", "--from", "f32", "--to", "q2_k", "-", "-"],
            &[0; 1024],
            "not quantize to it",
        ),
        (
            &[
                "convert",
                "--from",
                "f32",
                "--to",
                "mxfp4",
                "--scale-rule",
                "up",
                "-",
                "-",
            ],
            &[0; 128],
            "unknown scale rule `up`",
        ),
    ];
    for (args, stdin, message) in cases {
        let out = exodus(args, Some(stdin));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(message), "{args:?}: stderr was {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    let out = exodus(
        &[
            "convert",
            "--from",
            "f32",
            "--to",
            "f16",
            "/nonexistent/x",
            "-",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/x"));
}

#[test]
fn trace_summary_of_a_recorded_trace() {
    // Record a small trace with exodus-trace, write it, summarise it with the binary.
    exodus_trace::set_enabled(true);
    for _ in 0..3 {
        let _g = exodus_trace::span("matmul", "launch");
    }
    {
        let _g = exodus_trace::span("rms_norm", "launch");
    }
    exodus_trace::set_enabled(false);
    let trace = exodus_trace::take();
    let path = std::env::temp_dir().join(format!("exodus-trace-{}.json", std::process::id()));
    trace.write(&path).unwrap();
    let out = exodus(
        &["trace", "summary", "--json", path.to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["calls"].clone())
    };
    assert_eq!(calls("matmul"), Some(serde_json::json!(3)));
    assert_eq!(calls("rms_norm"), Some(serde_json::json!(1)));
    let table = exodus(&["trace", "summary", path.to_str().unwrap()], None);
    assert!(String::from_utf8_lossy(&table.stdout).contains("matmul"));
    std::fs::write(&path, "{\"traceEvents\": [{\"ph\": \"X\"}]}").unwrap();
    let bad = exodus(&["trace", "summary", path.to_str().unwrap()], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("parsing"));
    std::fs::remove_file(&path).ok();
}

#[test]
fn closed_stdout_is_not_a_crash() {
    // `exodus formats | head -0`: the reader is gone before anything is written.
    for args in [&["formats"][..], &["formats", "--codes", "hif8"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exodus"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("exodus starts");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("exodus runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn graph_dump_prints_passes_plan_and_dot() {
    let out = exodus(&["graph", "dump", "--tokens", "64"], None);
    let (text, _) = common::ok(&out);
    for want in [
        "# before passes",
        "graph block(tokens) {",
        "attn_q.weight: q4_1[576, 576] = weight",
        "common-subexpression-elimination",
        "dead-code-elimination",
        "# after passes",
        "# stream plan: 1 stream, 0 cross-stream waits",
        "# memory plan for tokens = 64: intermediates ",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = exodus(&["graph", "dump", "--streams", "3"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("# stream plan: 2 streams") && text.contains("(waits for "),
        "{text}"
    );
    let out = exodus(&["graph", "dump", "--dot", "--format", "q8_0"], None);
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(
        dot.starts_with("digraph \"block\" {") && dot.contains("q8_0[576, 576]"),
        "{dot}"
    );
    let out = exodus(&["graph", "dump", "--example", "nope"], None);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown --example \"nope\""), "{err}");
    let out = exodus(&["graph", "dump", "--format", "q9_9"], None);
    assert!(!out.status.success());
}

#[test]
fn graph_dump_and_bench_graph_take_the_decoder() {
    let out = exodus(
        &[
            "graph",
            "dump",
            "--example",
            "decoder",
            "--layers",
            "2",
            "--vocab",
            "256",
            "--tokens",
            "8",
        ],
        None,
    );
    let (text, _) = common::ok(&out);
    for want in [
        "graph decoder(tokens) {",
        "token_embd.weight: q4_1[256, 576] = weight",
        "blk.1.attn_q.weight: q4_1[576, 576] = weight",
        "output.weight: q4_1[256, 576] = weight",
        "# memory plan for tokens = 8: intermediates ",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("blk.2."), "two layers only");
    let path = std::env::temp_dir().join(format!("exodus-graph-modes-{}.json", std::process::id()));
    let trace =
        std::env::temp_dir().join(format!("exodus-graph-trace-{}.json", std::process::id()));
    let out = exodus(
        &[
            "bench",
            "graph",
            "--example",
            "decoder",
            "--layers",
            "1",
            "--vocab",
            "64",
            "--tokens",
            "1,3",
            "--repeats",
            "1",
            "--out",
            path.to_str().unwrap(),
            "--streams",
            "2",
            "--trace",
            trace.to_str().unwrap(),
        ],
        None,
    );
    let (text, _) = common::ok(&out);
    assert!(text.contains("eager measured"), "{text}");
    // The trace has a span per run and the launches of both modes.
    let spans = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    for want in [
        "graph run, 3 tokens",
        "eager run, 1 tokens",
        "blk.0.attention",
    ] {
        assert!(spans.contains(want), "missing {want:?} in the trace");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(report["example"], "decoder");
    assert_eq!(report["layers"], 1);
    assert_eq!(report["vocab"], 64);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let measured = row["eager_measured_bytes"].as_u64().unwrap();
        assert!(
            measured >= row["eager_peak_bytes"].as_u64().unwrap(),
            "{row}"
        );
    }
    // Token ids count up from 0: more tokens than the vocabulary is refused.
    let out = exodus(
        &[
            "bench",
            "graph",
            "--example",
            "decoder",
            "--layers",
            "1",
            "--vocab",
            "4",
            "--tokens",
            "5",
            "--out",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--vocab 4"), "{err}");
    let out = exodus(&["bench", "graph", "--example", "nope"], None);
    assert!(!out.status.success());
}
