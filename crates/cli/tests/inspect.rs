//! `exodus inspect` end to end: a real process on real GGUF files written
//! by the exodus-gguf writer, a valid one and a corrupt one.

use std::path::PathBuf;
mod common;

use std::process::Output;

fn exodus(args: &[&str]) -> Output {
    common::exodus(args, None)
}

use exodus_gguf::writer::GgufWriter;
use exodus_gguf::{GgmlType, Value};

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exodus-inspect-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn model() -> Vec<u8> {
    let tokens: Vec<String> = (0..1000).map(|i| format!("tok{i}")).collect();
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .unwrap()
        .set("llama.block_count", 2u32)
        .unwrap()
        .set("llama.rope.freq_base", 10000.0f32)
        .unwrap()
        .set(
            "tokenizer.chat_template",
            "{% for m in messages %}".repeat(10),
        )
        .unwrap()
        .set("tokenizer.ggml.tokens", Value::from(tokens))
        .unwrap();
    w.add_tensor(
        "token_embd.weight",
        GgmlType::Q8_0,
        &[64, 1000],
        vec![0u8; 2 * 34 * 1000],
    )
    .unwrap()
    .add_tensor("output_norm.weight", GgmlType::F32, &[64], vec![0u8; 256])
    .unwrap()
    .add_tensor("blk.0.iq", GgmlType::Iq4Nl, &[32], vec![0u8; 18])
    .unwrap();
    w.to_bytes()
}

#[test]
fn inspect_prints_metadata_tensors_and_totals() {
    let dir = temp_dir("ok");
    let path = dir.join("tiny.gguf");
    let bytes = model();
    std::fs::write(&path, &bytes).unwrap();
    let out = exodus(&["inspect", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.ends_with(&format!(
            "GGUF v3, {} bytes, 5 metadata keys, 3 tensors",
            bytes.len()
        )),
        "{first}"
    );
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("general.architecture"),
        "general.architecture string \"llama\""
    );
    assert_eq!(line("llama.block_count"), "llama.block_count u32 2");
    assert_eq!(line("freq_base"), "llama.rope.freq_base f32 10000.0");
    assert_eq!(
        line("tokenizer.ggml.tokens"),
        "tokenizer.ggml.tokens array [string; 1000] [\"tok0\", \"tok1\", \"tok2\", \"tok3\", \"tok4\", …]"
    );
    // Long strings are cut at 80 characters, with their full length.
    assert!(line("chat_template").ends_with("… (230 bytes)"));
    let embd = line("token_embd.weight");
    assert!(
        embd.starts_with("token_embd.weight q8_0 [64, 1000] 68000 "),
        "{embd}"
    );
    assert!(line("blk.0.iq").starts_with("blk.0.iq iq4_nl [32] 18 "));
    assert!(text.contains("total: 3 tensors, 64096 elements, 68274 bytes"));
    assert!(line("(not supported by exodus)").starts_with("iq4_nl 1 tensors 32 elements 18 bytes"));

    // Fewer items and characters on request.
    let out = exodus(&[
        "inspect",
        "--max-items",
        "1",
        "--max-chars",
        "3",
        path.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[string; 1000] [\"tok\"… (4 bytes), …]"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inspect_reports_a_corrupt_file() {
    let dir = temp_dir("corrupt");
    let path = dir.join("cut.gguf");
    let bytes = model();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let out = exodus(&["inspect", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("Error: inspecting "), "{err}");
    assert!(
        err.contains("tensor `output_norm.weight`: data at bytes")
            && err.contains("runs past the end"),
        "{err}"
    );
    std::fs::write(&path, b"PK\x03\x04 not a model").unwrap();
    let err = String::from_utf8(exodus(&["inspect", path.to_str().unwrap()]).stderr).unwrap();
    assert!(err.contains("not a GGUF file"), "{err}");
    let err = String::from_utf8(exodus(&["inspect", "/nonexistent.gguf"]).stderr).unwrap();
    assert_eq!(
        err.trim_end(),
        "Error: reading /nonexistent.gguf: No such file or directory (os error 2)"
    );
    std::fs::remove_dir_all(&dir).ok();
}
