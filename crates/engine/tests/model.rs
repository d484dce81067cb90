//! The engine on the real default model (SmolLM2-135M-Instruct, Q4_1):
//! a request alone gives exactly what `exodus run` (`generate`) gives for
//! the same seed, and requests served concurrently (batched decodes,
//! chunked prefills) give the same greedy tokens as each served alone.

use std::sync::Arc;

use exodus_engine::{
    BlockManager, Engine, Event, FinishReason, GenerationRequest, Scheduler, SchedulerConfig,
};
use exodus_gguf::GgufFile;
use exodus_model::llama::KV_BLOCK_TOKENS;
use exodus_model::{generate, GenerateOptions, LoadOptions, Model, SamplerConfig};

const CONTEXT: usize = 512;
const BLOCKS: usize = 96;

fn engine(file: &GgufFile, max_batch_tokens: usize) -> Engine {
    let opts = LoadOptions {
        max_tokens: CONTEXT,
        ..LoadOptions::default()
    };
    let model = Model::load_pool(file, &opts, BLOCKS).unwrap();
    let config = SchedulerConfig {
        max_running: 4,
        max_batch_tokens,
        context: CONTEXT,
        vocab: model.config().vocab,
        ..SchedulerConfig::default()
    };
    let blocks = BlockManager::new(BLOCKS as u32, KV_BLOCK_TOKENS).unwrap();
    Engine::start(model, Scheduler::new(config, blocks).unwrap()).unwrap()
}

fn run(engine: &Engine, prompt: &[u32], sampler: &SamplerConfig, n: usize) -> Vec<u32> {
    let mut stream = engine
        .submit(GenerationRequest {
            prompt: prompt.to_vec(),
            sampler: sampler.clone(),
            max_new_tokens: n,
            stop_tokens: vec![],
            logprobs: None,
        })
        .unwrap();
    let mut tokens = Vec::new();
    loop {
        match stream.blocking_next().expect("a Finished event") {
            Event::Token { token, .. } => tokens.push(token),
            Event::Finished { reason, usage, .. } => {
                assert_eq!(reason, FinishReason::Length);
                assert_eq!(usage.completion_tokens, tokens.len());
                return tokens;
            }
        }
    }
}

/// Token ids of a few short English prompts (from the model's tokenizer).
fn prompts(file: &GgufFile) -> Vec<Vec<u32>> {
    let tok = exodus_model::Tokenizer::from_gguf(file).unwrap();
    [
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there lived",
        "def fibonacci(n):",
        "The three primary colors are",
    ]
    .iter()
    .map(|p| tok.encode(p, false, false).unwrap())
    .collect()
}

#[test]
fn a_request_alone_gives_what_generate_gives_for_the_same_seed() {
    let file = GgufFile::open(exodus_model::fetch::test_model_path()).unwrap();
    let single = Model::load(
        &file,
        &LoadOptions {
            max_tokens: CONTEXT,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let engine = engine(&file, 256);
    let sampled = SamplerConfig {
        temperature: 0.8,
        seed: 42,
        ..SamplerConfig::default()
    };
    for (prompt, sampler) in prompts(&file).iter().zip([
        SamplerConfig::default(),
        sampled.clone(),
        SamplerConfig::default(),
        sampled,
    ]) {
        let opts = GenerateOptions {
            max_new_tokens: 24,
            sampler: sampler.clone(),
            stop_tokens: vec![],
        };
        let want = generate(&single, prompt, &opts, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .tokens;
        assert_eq!(
            run(&engine, prompt, &sampler, 24),
            want,
            "prompt {prompt:?}"
        );
    }
}

#[test]
fn concurrent_greedy_requests_equal_the_sequential_ones_token_for_token() {
    let file = GgufFile::open(exodus_model::fetch::test_model_path()).unwrap();
    // A small step budget, so prompts are chunked and steps mix prefill
    // chunks with other requests' decodes.
    let engine = Arc::new(engine(&file, 16));
    let greedy = SamplerConfig::default();
    let ps = prompts(&file);
    let alone: Vec<Vec<u32>> = ps.iter().map(|p| run(&engine, p, &greedy, 32)).collect();
    let together: Vec<Vec<u32>> = ps
        .iter()
        .cloned()
        .map(|p| {
            let engine = Arc::clone(&engine);
            let greedy = greedy.clone();
            std::thread::spawn(move || run(&engine, &p, &greedy, 32))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "prompt {i}: served alone vs concurrently");
    }
    assert_eq!(engine.stats().kv_usage, 0.0);
}
