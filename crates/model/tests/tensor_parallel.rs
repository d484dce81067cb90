//! Tensor parallelism on the real default model, inside one process: the
//! model split over 2 ranks (KV heads 2 + 1, MLP units halved) and 3
//! ranks (a KV head each), every rank a thread.
//!
//! Each rank gathers the attention heads' outputs and the MLP's
//! activations of every rank (AllGather), and computes its rows of
//! `attn_output` and `ffn_down` over the whole width, so each output is
//! the very dot the whole model computes. The split model's logits are
//! therefore the whole model's, bit for bit, at every step of a greedy
//! decode, on every rank.

mod common;

use exodus_gguf::GgufFile;
use exodus_model::sample::argmax;
use exodus_model::{LoadOptions, Mode, Model, Shard};

fn shards(file: &GgufFile, ranks: usize, mode: Mode) -> Vec<Model> {
    common::threads::job(ranks)
        .into_iter()
        .enumerate()
        .map(|(rank, handle)| {
            let opts = LoadOptions {
                mode,
                max_tokens: 128,
                shard: Shard { rank, ranks },
                ..Default::default()
            };
            let mut m = Model::load(file, &opts).unwrap();
            m.set_collective(handle);
            m
        })
        .collect()
}

/// Every shard runs `tokens` at `start`, each in its thread; the logits of
/// each.
fn forward_all(models: &[Model], tokens: &[u32], start: usize) -> Vec<Vec<f32>> {
    std::thread::scope(|s| {
        let runs: Vec<_> = models
            .iter()
            .map(|m| s.spawn(move || m.forward(tokens, start, false).unwrap()))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

#[test]
fn shards_over_2_and_3_ranks_give_the_whole_models_logits_bit_for_bit() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let whole = Model::load(
        &file,
        &LoadOptions {
            max_tokens: 128,
            ..Default::default()
        },
    )
    .unwrap();
    let prompt: Vec<u32> = vec![1, 504, 3575, 282, 4649, 314, 260, 3575, 282];
    for (ranks, mode, steps) in [
        (2, Mode::Graph, 24),
        (3, Mode::Graph, 24),
        (2, Mode::Eager, 4),
    ] {
        let models = shards(&file, ranks, mode);
        let (mut tokens, mut start) = (prompt.clone(), 0);
        for step in 0..steps {
            let logits = forward_all(&models, &tokens, start);
            for other in &logits[1..] {
                assert!(
                    other
                        .iter()
                        .zip(&logits[0])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ranks} ranks: the ranks disagree at step {step}"
                );
            }
            let reference = whole.forward(&tokens, start, false).unwrap();
            let differ = reference
                .iter()
                .zip(&logits[0])
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{ranks} ranks ({mode:?}), step {step}: {differ} logits differ from the whole model's"
            );
            start += tokens.len();
            tokens = vec![argmax(&logits[0])];
        }
    }
}
