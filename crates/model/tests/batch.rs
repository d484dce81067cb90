//! A batch of sequences in one step over a shared KV pool (`Model::step`,
//! the serving engine's step): each sequence's logits are the bits its own
//! run gives where the kernels are batch-invariant (`Model::batch_invariant`:
//! Q4_0/Q4_1/Q8_0 on AVX-512 VNNI), and within the rounding of the
//! matmuls' row-count-dependent paths elsewhere; eager and
//! graph mode agree bit for bit; bad tables and positions are typed
//! errors.

mod common;

use exodus_gguf::GgufFile;
use exodus_model::sample::argmax;
use exodus_model::{LoadOptions, Mode, Model, SeqStep};

const MAX: usize = 128;

fn opts(mode: Mode) -> LoadOptions {
    LoadOptions {
        mode,
        max_tokens: MAX,
        ..Default::default()
    }
}

#[test]
fn a_batched_step_gives_each_sequence_its_own_logits() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let single = Model::load(&file, &opts(Mode::Graph)).unwrap();
    let pool = Model::load_pool(&file, &opts(Mode::Graph), 48).unwrap();
    let eager_pool = Model::load_pool(&file, &opts(Mode::Eager), 48).unwrap();
    let vocab = single.config().vocab;
    let prompts: [&[u32]; 3] = [
        &[504, 3575, 282, 4649, 314],
        &[1780, 314, 260, 3575, 282, 4649, 47, 198, 1],
        &[9690],
    ];
    let tables: Vec<Vec<u32>> = (0..3).map(|s| (s * 8..s * 8 + 8).collect()).collect();
    // Prefill all three together, then two decode steps together.
    let mut steps: Vec<Vec<(Vec<u32>, usize)>> =
        vec![prompts.iter().map(|p| (p.to_vec(), 0)).collect()];
    let first = pool
        .step(
            &steps[0]
                .iter()
                .zip(&tables)
                .map(|((t, s), table)| SeqStep {
                    tokens: t,
                    start: *s,
                    table,
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(first.len(), 3 * vocab);
    let next: Vec<u32> = first.chunks(vocab).map(argmax).collect();
    steps.push(
        prompts
            .iter()
            .zip(&next)
            .map(|(p, &t)| (vec![t], p.len()))
            .collect(),
    );
    let mut worst = 0f32;
    for (n, step) in steps.iter().enumerate() {
        let batch: Vec<SeqStep> = step
            .iter()
            .zip(&tables)
            .map(|((t, s), table)| SeqStep {
                tokens: t,
                start: *s,
                table,
            })
            .collect();
        let together = pool.step(&batch).unwrap();
        let eager = eager_pool.step(&batch).unwrap();
        assert_eq!(together, eager, "step {n}: eager and graph mode differ");
        for (s, row) in together.chunks(vocab).enumerate() {
            // The same sequence alone: its earlier steps first.
            let mut alone = Vec::new();
            for earlier in &steps[..=n] {
                let (t, start) = &earlier[s];
                alone = single.forward(t, *start, false).unwrap();
            }
            let diff = row
                .iter()
                .zip(&alone)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(diff);
            assert_eq!(argmax(row), argmax(&alone), "step {n}, sequence {s}");
        }
    }
    println!("largest logit difference, batched vs alone: {worst:.4}");
    if pool.batch_invariant() {
        assert_eq!(
            worst, 0.0,
            "batch-invariant kernels, yet batched differs from alone"
        );
    }
    assert!(worst < 1.0, "{worst}");
}

#[test]
fn bad_batches_are_typed_errors() {
    let file = GgufFile::open(common::default_model_path()).unwrap();
    let pool = Model::load_pool(&file, &opts(Mode::Eager), 16).unwrap();
    let table: Vec<u32> = (0..8).collect();
    let cases: Vec<(Vec<SeqStep>, &str)> = vec![
        (vec![], "empty batch"),
        (
            vec![SeqStep {
                tokens: &[1; 40],
                start: 0,
                table: &table[..2],
            }],
            "a table of 2 blocks",
        ),
        (
            vec![SeqStep {
                tokens: &[1],
                start: 0,
                table: &[99],
            }],
            "outside the pool",
        ),
        (
            vec![SeqStep {
                tokens: &[1],
                start: MAX,
                table: &table,
            }],
            "do not fit",
        ),
        (
            vec![SeqStep {
                tokens: &[u32::MAX],
                start: 0,
                table: &table,
            }],
            "outside the vocabulary",
        ),
    ];
    for (batch, want) in cases {
        let err = pool.step(&batch).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    let err = pool.forward(&[1], 0, false).unwrap_err().to_string();
    assert!(err.contains("Model::step"), "{err}");
    // Still usable.
    pool.step(&[SeqStep {
        tokens: &[1, 2],
        start: 0,
        table: &table,
    }])
    .unwrap();
}
