//! The default model (SmolLM2-135M-Instruct, Q4_1) against llama.cpp on
//! the same file, from reference values generated once by
//! `bench/golden/model_llama_cpp.py` (llama-cpp-python) and checked in:
//! greedy continuations, the last token's logits, and perplexity by the
//! same method on the same tokens. Eager and graph mode must agree bit for
//! bit.

mod common;

use exodus_gguf::GgufFile;
use exodus_model::{generate, GenerateOptions, LoadOptions, Mode, Model, SamplerConfig};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/smollm2_llama_cpp.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn load(mode: Mode, max_tokens: usize) -> Model {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    Model::load(
        &file,
        &LoadOptions {
            mode,
            max_tokens,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn greedy_continuations_match_llama_cpp() {
    let g = golden();
    let model = load(Mode::Graph, 512);
    let opts = GenerateOptions {
        max_new_tokens: 64,
        sampler: SamplerConfig::default(),
        stop_tokens: vec![],
    };
    for case in g["greedy"].as_array().unwrap() {
        let prompt = ids(&case["ids"]);
        let want = ids(&case["greedy"]);
        let got = generate(&model, &prompt, &opts, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .tokens;
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        if same < want.len() {
            let top2 = &case["top2"][same];
            let margin = top2[0][1].as_f64().unwrap() - top2[1][1].as_f64().unwrap();
            println!(
                "{:?}: same for {same} tokens, then llama.cpp's top two differ by {margin:.5}",
                case["prompt"]
            );
            // Our logits are within 0.3 of llama.cpp's (see the logits
            // test): a divergence is explained where its top two were
            // closer than twice that. (The issue asks for 1e-3. The 0.3 is
            // int8 activation codes flipping on one-ulp differences: two
            // equally correct RMSNorm roundings move llama.cpp's own
            // arithmetic by 0.43, bench/golden/int8_sensitivity.py.)
            assert!(
                margin < 0.6,
                "{:?} diverges at {same} where llama.cpp's margin was {margin}",
                case["prompt"]
            );
        } else {
            println!("{:?}: all {} tokens the same", case["prompt"], want.len());
        }
    }
}

#[test]
fn last_logits_and_perplexity_are_llama_cpps() {
    let g = golden();
    let eager = load(Mode::Eager, 512);
    let graph = load(Mode::Graph, 512);
    let prompt = ids(&g["last_logits"]["ids"]);
    let a = eager.forward(&prompt, 0, false).unwrap();
    let b = graph.forward(&prompt, 0, false).unwrap();
    assert_eq!(a, b, "eager and graph mode disagree");
    let mut worst = 0f64;
    for pair in g["last_logits"]["top"].as_array().unwrap() {
        let (id, want) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_f64().unwrap(),
        );
        worst = worst.max((b[id] as f64 - want).abs());
    }
    println!("largest difference over llama.cpp's top 20 logits: {worst:.4}");
    assert!(worst < 0.5, "{worst}");
    // Both quantize activations to int8 inside their matmuls (the residual
    // stream has outliers in the hundreds), so neither is exact: the
    // float64 model (bench/golden/model_numpy_reference.py) tells how far
    // each is from the exact result on the same dequantized weights.
    let exact: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/smollm2_float_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ids(&exact["ids"]), prompt);
    let llama: std::collections::HashMap<u64, f64> = g["last_logits"]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let (mut ours_off, mut llama_off) = (0f64, 0f64);
    for pair in exact["top"].as_array().unwrap().iter().take(10) {
        let (id, want) = (pair[0].as_u64().unwrap(), pair[1].as_f64().unwrap());
        ours_off = ours_off.max((b[id as usize] as f64 - want).abs());
        if let Some(l) = llama.get(&id) {
            llama_off = llama_off.max((l - want).abs());
        }
    }
    println!(
        "over the exact model's top 10 logits: exodus within {ours_off:.4}, llama.cpp within {llama_off:.4}"
    );
    assert!(ours_off < 0.5, "{ours_off}");
    let p = &g["perplexity"];
    let tokens = ids(&p["tokens"]);
    let want = p["ppl"].as_f64().unwrap();
    let got = exodus_model::perplexity(&graph, &tokens, 512, None, |_, _, _| {}).unwrap();
    let rel = (got.ppl - want).abs() / want;
    println!(
        "perplexity {:.4} vs llama.cpp {want:.4} ({:.3}%)",
        got.ppl,
        rel * 100.0
    );
    assert_eq!(got.scored, p["scored"].as_u64().unwrap() as usize);
    assert!(rel < 0.01, "{} vs {want}", got.ppl);
}

#[test]
fn a_reused_prefix_runs_only_the_rest_and_must_leave_a_token() {
    let g = golden();
    let model = load(Mode::Graph, 512);
    let prompt = ids(&g["greedy"][0]["ids"]);
    let opts = GenerateOptions {
        max_new_tokens: 4,
        sampler: SamplerConfig::default(),
        stop_tokens: vec![],
    };
    let go = |reused| {
        exodus_model::generate_reusing(&model, &prompt, reused, &opts, |_| {
            std::ops::ControlFlow::Continue(())
        })
    };
    let full = go(0).unwrap();
    assert_eq!(full.cached_positions, prompt.len() + 3);
    // The cache now holds the prompt: run only its last token.
    let rest = go(prompt.len() - 1).unwrap();
    assert_eq!(rest.reused_tokens, prompt.len() - 1);
    assert_eq!(rest.tokens.len(), 4);
    let err = go(prompt.len()).unwrap_err().to_string();
    assert!(err.contains("leave none"), "{err}");
}
