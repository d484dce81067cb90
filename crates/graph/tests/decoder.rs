//! The example decoder: a 2-layer SmolLM2-shaped decoder with a small
//! vocabulary builds, verifies, keeps GGUF-style names per layer, passes
//! the default passes, and gives the same logits bit for bit eagerly as
//! written and in graph mode after the passes; the benchmark's measured
//! eager memory is consistent with its lower bound.

use exodus_graph::bench::{compare_modes, random_inputs, random_weights};
use exodus_graph::examples::{
    block, decoder, BlockDims, CACHE_BLOCKS, SMOLLM2_135M_LAYERS, SMOLLM2_135M_VOCAB,
};
use exodus_graph::{default_passes, run_passes, DType, Def, Dim, Graph, Op, Session, Tensor};
use exodus_kernels::attention::KvFormat;
use exodus_numerics::Format;

const VOCAB: usize = 256;

fn small_decoder(format: &str) -> Graph {
    let format: Format = format.parse().unwrap();
    decoder(BlockDims::SMOLLM2_135M, 2, VOCAB, format, KvFormat::Fp8E4M3).unwrap()
}

#[test]
fn smollm2_sizes() {
    assert_eq!(SMOLLM2_135M_LAYERS, 30);
    assert_eq!(SMOLLM2_135M_VOCAB, 49152);
}

#[test]
fn a_small_decoder_builds_with_prefixed_names() {
    let g = small_decoder("q4_1");
    g.verify().unwrap();
    assert_eq!(g.name(), "decoder");
    assert_eq!(g.symbols(), ["tokens".to_owned()]);
    let named = |name: &str| {
        g.values()
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no value {name:?} in\n{}", g.dump()))
    };
    // Inputs shared by every layer.
    let inputs: Vec<&str> = g
        .values()
        .iter()
        .filter(|v| v.def == Def::Input)
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(inputs, ["ids", "pos", "table", "start"]);
    assert_eq!(named("ids").dtype, DType::U32);
    assert_eq!(named("table").shape.0, [Dim::Fixed(CACHE_BLOCKS)]);
    // One KV cache per layer.
    let states: Vec<&str> = g
        .values()
        .iter()
        .filter(|v| v.def == Def::State)
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(states, ["blk.0.kv_cache", "blk.1.kv_cache"]);
    let hidden = BlockDims::SMOLLM2_135M.hidden;
    let embd = named("token_embd.weight");
    assert_eq!(embd.def, Def::Weight);
    assert_eq!(
        embd.shape.0,
        [Dim::Fixed(VOCAB), Dim::Fixed(hidden)],
        "token_embd is [vocab, hidden]"
    );
    assert_eq!(named("output.weight").shape.0, embd.shape.0);
    assert!(matches!(named("output.weight").dtype, DType::Weights(_)));
    assert_eq!(named("output_norm.weight").dtype, DType::F32);
    for layer in 0..2 {
        for w in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            assert_eq!(named(&format!("blk.{layer}.{w}.weight")).def, Def::Weight);
        }
    }
    assert!(!g.values().iter().any(|v| v.name == "attn_q.weight"));
    // Two attention nodes, each over its own layer's cache.
    let attention: Vec<_> = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Attention { .. }))
        .collect();
    assert_eq!(attention.len(), 2);
    for (layer, node) in attention.iter().enumerate() {
        let cache = &g.values()[node.inputs[3].0 as usize];
        assert_eq!(cache.name, format!("blk.{layer}.kv_cache"));
    }
    // The output: f32 logits over the vocabulary.
    assert_eq!(g.outputs().len(), 1);
    let logits = &g.values()[g.outputs()[0].0 as usize];
    assert_eq!(logits.dtype, DType::F32);
    assert_eq!(logits.shape.0.len(), 2);
    assert!(matches!(logits.shape.0[0], Dim::Sym(_)));
    assert_eq!(logits.shape.0[1], Dim::Fixed(VOCAB));
    let dump = g.dump();
    for want in [
        "blk.0.attn_q.weight",
        "blk.1.attn_q.weight",
        "blk.1.kv_cache",
        "token_embd.weight",
        "output_norm.weight",
        "output.weight",
    ] {
        assert!(dump.contains(want), "missing {want:?} in\n{dump}");
    }
    // The single block keeps its unprefixed names.
    let b = block(
        BlockDims::SMOLLM2_135M,
        "q4_1".parse().unwrap(),
        KvFormat::Fp8E4M3,
    )
    .unwrap();
    assert!(b.dump().contains("attn_q.weight: q4_1[576, 576] = weight"));
    assert!(!b.dump().contains("blk."));
}

#[test]
fn every_weight_of_a_format_or_f32() {
    for format in ["q8_0", "f32"] {
        let f: Format = format.parse().unwrap();
        let g = decoder(BlockDims::SMOLLM2_135M, 1, VOCAB, f, KvFormat::Bf16).unwrap();
        for name in [
            "token_embd.weight",
            "blk.0.ffn_down.weight",
            "output.weight",
        ] {
            let v = g.values().iter().find(|v| v.name == name).unwrap();
            assert_eq!(v.dtype, DType::Weights(f), "{name}");
        }
    }
    // Formats whose block does not divide the width are refused by name.
    let err = decoder(
        BlockDims::SMOLLM2_135M,
        1,
        VOCAB,
        "q4_k".parse().unwrap(),
        KvFormat::Bf16,
    )
    .unwrap_err();
    assert!(err.to_string().contains("blk.0."), "{err}");
}

#[test]
fn eager_and_graph_mode_give_the_same_logits() {
    for format in ["q4_1", "q8_0"] {
        let g = small_decoder(format);
        let mut opt = g.clone();
        let stats = run_passes(&mut opt, &default_passes()).unwrap();
        opt.verify().unwrap();
        assert!(!stats.is_empty());
        assert!(
            opt.nodes().len() < g.nodes().len(),
            "the passes shrink the graph: {} -> {}",
            g.nodes().len(),
            opt.nodes().len()
        );
        assert!(opt.dump().contains("blk.1.attn_q.weight"));
        let weights = random_weights(&g, 7).unwrap();
        let eager = Session::new(g.clone(), weights.clone()).unwrap();
        let graph = Session::new(opt.clone(), weights).unwrap();
        for tokens in [1, 5] {
            let syms = [("tokens", tokens)];
            let inputs = random_inputs(&g, &syms);
            let want = eager.run_eager(&syms, &inputs).unwrap();
            assert_eq!(want.len(), 1);
            let Tensor::F32(logits) = &want[0] else {
                panic!("logits are f32");
            };
            assert_eq!(logits.len(), tokens * VOCAB);
            assert!(logits.iter().all(|x| x.is_finite()), "{format}");
            let distinct = logits
                .iter()
                .map(|x| x.to_bits())
                .collect::<std::collections::HashSet<_>>();
            assert!(distinct.len() > VOCAB / 2, "logits vary");
            let got = graph.run_graph(&syms, &inputs).unwrap();
            assert!(got == want, "{format}, tokens {tokens}: graph mode differs");
            // A replay gives the same bits again.
            assert!(graph.run_graph(&syms, &inputs).unwrap() == want);
        }
    }
}

#[test]
fn measured_eager_memory_is_at_least_the_lower_bound() {
    let g = small_decoder("q4_1");
    for tokens in [1, 5] {
        let r = compare_modes(&g, &[("tokens", tokens)], 1).unwrap();
        assert_eq!(r.eager_launches, g.nodes().len());
        assert!(r.eager_peak_bytes > 0);
        assert!(
            r.eager_measured_bytes >= r.eager_peak_bytes,
            "tokens {tokens}: measured {} < lower bound {}",
            r.eager_measured_bytes,
            r.eager_peak_bytes
        );
        // Never more than every intermediate at once, each in its size
        // class (at most 25% over, at least 512 bytes).
        let bound = r.sum_bytes * 5 / 4 + 512 * g.nodes().len() * 2;
        assert!(
            r.eager_measured_bytes <= bound,
            "tokens {tokens}: measured {} > {bound}",
            r.eager_measured_bytes
        );
    }
}
