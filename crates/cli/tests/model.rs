//! The model commands end to end on the default model (fetched into the
//! cache by `.ci/run` before the tests, or here on first use): `run`
//! streams an answer and reports its timings, the same seed gives the same
//! text, both modes give the same greedy text, `chat` keeps a
//! conversation, `perplexity` and `bench model` report, and bad arguments
//! are clear errors.

mod common;

use common::{exodus, ok};

#[test]
fn run_streams_an_answer_and_reports_its_timings() {
    let prompt = "Name one planet of the solar system.";
    let (text, report) = ok(&exodus(&["run", prompt, "--max-tokens", "12"], None));
    assert!(!text.trim().is_empty(), "no answer");
    for want in [
        "graph mode",
        "prompt ",
        "time to first token",
        "prefill",
        "decode",
    ] {
        assert!(report.contains(want), "missing {want:?} in {report}");
    }
    // Greedy text is the same in eager mode.
    let (eager, _) = ok(&exodus(
        &["run", prompt, "--max-tokens", "12", "--mode", "eager"],
        None,
    ));
    assert_eq!(eager, text);
    // Sampling: the same seed, the same text.
    let sampled = |seed: &str| {
        ok(&exodus(
            &[
                "run",
                prompt,
                "--max-tokens",
                "16",
                "--temperature",
                "0.9",
                "--seed",
                seed,
            ],
            None,
        ))
        .0
    };
    assert_eq!(sampled("7"), sampled("7"));
    // A stop string ends the text before it.
    let (stopped, _) = ok(&exodus(
        &[
            "run",
            "Count from 1 to 20, separated by commas.",
            "--max-tokens",
            "60",
            "--stop",
            "5",
        ],
        None,
    ));
    assert!(!stopped.contains('5'), "{stopped}");
}

#[test]
fn chat_keeps_the_conversation() {
    let input = b"My name is Ada.\nWhat is my name?\n\n";
    let (text, report) = ok(&exodus(&["chat", "--max-tokens", "24"], Some(input)));
    assert!(!text.trim().is_empty());
    // Two turns answered; the second runs only what follows the first
    // turn in the KV cache.
    assert_eq!(report.matches("time to first token").count(), 2, "{report}");
    let reused: Vec<usize> = report
        .split(" reused from the cache")
        .filter_map(|part| part.rsplit('(').next()?.trim().parse().ok())
        .collect();
    assert_eq!(reused.len(), 2, "{report}");
    assert_eq!(reused[0], 0, "{report}");
    assert!(reused[1] > 20, "{report}");
}

#[test]
fn perplexity_and_bench_model_report() {
    let dir = std::env::temp_dir().join(format!("exodus-model-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let (out, _) = ok(&exodus(
        &["perplexity", "-f", text.to_str().unwrap(), "-c", "64"],
        None,
    ));
    let ppl: f64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // A repeated sentence is easy to predict.
    assert!(ppl > 1.0 && ppl < 3.0, "{out}");
    let json = dir.join("model.json");
    let (out, _) = ok(&exodus(
        &[
            "bench",
            "model",
            "--pp",
            "16",
            "--tg",
            "4",
            "--repeats",
            "1",
            "--out",
            json.to_str().unwrap(),
        ],
        None,
    ));
    assert!(out.contains("pp16") && out.contains("tg4"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["tg_tokens_per_second"]["median"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_model_arguments_are_clear_errors() {
    for (args, want) in [
        (
            vec!["run", "hi", "--model", "/nonexistent/model.gguf"],
            "does not exist",
        ),
        (
            vec!["run", "hi", "--model", "no-such-model"],
            "no-such-model",
        ),
        (vec!["run", "hi", "--mode", "fast"], "unknown mode"),
        (vec!["run", "hi", "--top-p", "0"], "top_p"),
        (
            vec!["perplexity", "-f", "/nonexistent.txt"],
            "nonexistent.txt",
        ),
    ] {
        let out = exodus(&args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
