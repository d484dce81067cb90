//! Passes: each one's effect on small graphs, and the property that random
//! graphs give the same eager outputs with the passes on and off; memory
//! planning never lets two live values share bytes and plans less than the
//! sum of all intermediates.

use exodus_graph::{
    run_passes, CommonSubexpressions, ConstantFolding, DType, DeadCodeElimination,
    ElementwiseFusion, Graph, GraphBuilder, Op, Pass, Session, Tensor, ValueId, ALIGN,
};
use exodus_numerics::sample::{normal, SplitMix64};

fn run(graph: Graph, x: ValueId, tokens: usize, width: usize) -> Vec<Tensor> {
    let session = Session::new(graph, []).unwrap();
    let data = normal(tokens * width, 7);
    session
        .run_eager(&[("tokens", tokens)], &[(x, Tensor::F32(data))])
        .unwrap()
}

#[test]
fn dead_code_goes_and_results_stay() {
    let mut b = GraphBuilder::new("dce");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 8));
    let a = b.silu("used", x).unwrap();
    let dead = b.gelu("unused", x, true).unwrap();
    let _dead2 = b.add("unused2", dead, x).unwrap();
    let y = b.scale("out", a, 2.0).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    let before = run(g.clone(), x, 3, 8);
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &[&DeadCodeElimination]).unwrap();
    assert_eq!(stats[0].pass, "dead-code-elimination");
    assert_eq!(stats[0].nodes, (4, 2));
    assert!(
        stats[0].detail.contains("removed 2 nodes"),
        "{}",
        stats[0].detail
    );
    assert!(!opt.dump().contains("unused"), "{}", opt.dump());
    assert_eq!(run(opt, x, 3, 8), before);
}

#[test]
fn common_subexpressions_merge_and_results_stay() {
    let mut b = GraphBuilder::new("cse");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 8));
    let a1 = b.silu("a1", x).unwrap();
    let a2 = b.silu("a2", x).unwrap();
    let s1 = b.scale("s1", x, 0.5).unwrap();
    let s2 = b.scale("s2", x, 0.25).unwrap(); // another attribute: stays
    let sum = b.add("sum", a1, a2).unwrap();
    let sum2 = b.add("sum2", a2, a1).unwrap();
    let m = b.mul("m", s1, s2).unwrap();
    let y = b.add("y", sum, m).unwrap();
    let y = b.add("y2", y, sum2).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    let before = run(g.clone(), x, 5, 8);
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &[&CommonSubexpressions, &DeadCodeElimination]).unwrap();
    // a2 merges into a1; then sum and sum2 are both add(a1, a1) and merge
    // too; s1 and s2 differ in their attribute and stay.
    assert_eq!(stats[0].nodes, (9, 7), "{stats:?}");
    assert!(stats[0].detail.contains("merged 2 nodes"), "{stats:?}");
    assert!(!opt.dump().contains("a2"), "{}", opt.dump());
    assert_eq!(run(opt, x, 5, 8), before);
}

/// A random DAG of elementwise ops over one input, with repeats and dead
/// branches on purpose.
fn random_graph(rng: &mut SplitMix64) -> (Graph, ValueId) {
    let mut b = GraphBuilder::new("random");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 16));
    let mut pool = vec![x];
    let n = 3 + (rng.next_u64() % 12) as usize;
    for i in 0..n {
        let pick = |rng: &mut SplitMix64, pool: &[ValueId]| {
            pool[(rng.next_u64() % pool.len() as u64) as usize]
        };
        let (a, c) = (pick(rng, &pool), pick(rng, &pool));
        let v = match rng.next_u64() % 6 {
            0 => b.add(format!("n{i}"), a, c),
            1 => b.mul(format!("n{i}"), a, c),
            2 => b.sub(format!("n{i}"), a, c),
            3 => b.silu(format!("n{i}"), a),
            4 => b.scale(format!("n{i}"), a, 0.5),
            _ => b.softmax(format!("n{i}"), a),
        }
        .unwrap();
        pool.push(v);
    }
    let out = pool[pool.len() - 1 - (rng.next_u64() % 2) as usize];
    b.output(out).unwrap();
    (b.finish().unwrap(), x)
}

#[test]
fn random_graphs_give_the_same_results_with_passes_on_and_off() {
    let mut rng = SplitMix64::new(5);
    let passes: [&dyn Pass; 3] = [
        &CommonSubexpressions,
        &DeadCodeElimination,
        &CommonSubexpressions,
    ];
    for _ in 0..40 {
        let (g, x) = random_graph(&mut rng);
        let before = run(g.clone(), x, 3, 16);
        let mut opt = g.clone();
        let stats = run_passes(&mut opt, &passes).unwrap();
        assert!(stats.iter().all(|s| s.nodes.1 <= s.nodes.0));
        // Graph mode (captured and replayed) on the optimised graph too.
        let session = Session::new(opt.clone(), []).unwrap();
        let data = normal(3 * 16, 7);
        let inputs = [(x, Tensor::F32(data))];
        session.run_graph(&[("tokens", 3)], &inputs).unwrap();
        // Replay again over poisoned buffers: shared buffers must never
        // leak a stale (here NaN) value into a result.
        session.poison_graph_buffers(f32::NAN).unwrap();
        let replayed = session.run_graph(&[("tokens", 3)], &inputs).unwrap();
        let after = run(opt, x, 3, 16);
        // The same kernels on the same values, in the same order per value:
        // bit for bit, eager or replayed, passes on or off.
        assert_eq!(after, before, "{}", g.dump());
        assert_eq!(replayed, before, "{}", g.dump());
    }
}

#[test]
fn memory_plan_never_overlaps_live_values_and_beats_the_sum() {
    let mut rng = SplitMix64::new(9);
    for _ in 0..200 {
        let (g, _) = random_graph(&mut rng);
        let plan = g
            .plan_memory(&[("tokens", 1 + (rng.next_u64() % 300) as usize)])
            .unwrap();
        // Every node-defined value is planned: in the arena, or (graph
        // outputs) in a buffer of its own.
        assert_eq!(plan.slots.len() + plan.separate.len(), g.nodes().len());
        assert!(g.outputs().iter().all(|v| plan.separate.contains_key(v)));
        assert!(plan.arena_bytes <= plan.total_bytes);
        let slots: Vec<_> = plan.slots.iter().collect();
        for (i, (va, a)) in slots.iter().enumerate() {
            assert_eq!(a.offset % ALIGN, 0);
            assert!(a.offset + a.bytes <= plan.arena_bytes);
            // In place only over an input read for the last time there.
            if let Some(input) = a.in_place_of {
                let s = plan.slots[&input];
                assert_eq!((s.offset, s.last), (a.offset, a.first), "{a:?}");
            }
            for (vb, b) in &slots[i + 1..] {
                let live_together = a.first <= b.last && b.first <= a.last;
                let share = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
                // An output computed in place shares with its input at the
                // one node where the input dies and the output is born.
                let handed = (b.in_place_of == Some(**va) && a.last == b.first)
                    || (a.in_place_of == Some(**vb) && b.last == a.first);
                assert!(
                    !(live_together && share) || handed,
                    "{a:?} and {b:?} overlap\n{}",
                    g.dump()
                );
            }
        }
    }
    // A chain of 10 elementwise steps runs in place in one extent, not ten.
    let mut b = GraphBuilder::new("chain");
    let t = b.symbol("tokens");
    let mut v = b.input("x", DType::F32, (t, 576));
    for i in 0..10 {
        v = b.silu(format!("s{i}"), v).unwrap();
    }
    b.output(v).unwrap();
    let plan = b.finish().unwrap().plan_memory(&[("tokens", 512)]).unwrap();
    let one = 512 * 576 * 4;
    assert_eq!(plan.total_bytes, 10 * one);
    assert_eq!(plan.arena_bytes, one);
    assert_eq!(plan.output_bytes, one);
    assert_eq!(plan.intermediate_bytes(), one);
    let err = GraphBuilder::new("x").finish().unwrap_err();
    assert!(err.to_string().contains("returns nothing"));
}

#[test]
fn elementwise_chains_fuse_into_one_node_with_the_same_bits() {
    let mut b = GraphBuilder::new("chain");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 40));
    let w = b
        .constant("w", (40,), (0..40).map(|i| 0.5 + i as f32 * 0.01).collect())
        .unwrap();
    let a = b.silu("act", x).unwrap();
    let s = b.scale("half", a, 0.5).unwrap();
    let r = b.add("residual", s, x).unwrap();
    let m = b.mul("gain", r, w).unwrap(); // broadcast [40] over [tokens, 40]
    let side = b.softmax("side", x).unwrap(); // not elementwise: stays
    let y = b.sub("out", m, side).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    // 1029 tokens x 40 = 41160 values: many 1024-value chunks and a tail.
    let before = run(g.clone(), x, 1029, 40);
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &[&ElementwiseFusion]).unwrap();
    assert_eq!(stats[0].nodes, (6, 2), "{stats:?}");
    assert!(
        stats[0].detail.contains("fused 5 elementwise nodes into 1"),
        "{stats:?}"
    );
    let fused = opt
        .nodes()
        .iter()
        .find(|n| matches!(n.op, Op::Fused(_)))
        .unwrap();
    assert_eq!(fused.name, "act+half+residual+gain+out");
    let text = opt.dump();
    assert!(
        text.contains("= fused(") && text.contains("[silu(r0); scale(r3)"),
        "{text}"
    );
    assert_eq!(run(opt.clone(), x, 1029, 40), before);
    let session = Session::new(opt, []).unwrap();
    let data = normal(1029 * 40, 7);
    let replayed = session
        .run_graph(&[("tokens", 1029)], &[(x, Tensor::F32(data))])
        .unwrap();
    assert_eq!(replayed, before);
}

#[test]
fn graph_mode_shares_buffers_by_lifetime() {
    let mut b = GraphBuilder::new("chain");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 576));
    let mut v = x;
    for i in 0..10 {
        v = b.silu(format!("s{i}"), v).unwrap();
    }
    b.output(v).unwrap();
    let g = b.finish().unwrap();
    let eager = run(g.clone(), x, 7, 576);
    let session = Session::new(g, []).unwrap();
    let bytes = session.graph_intermediate_bytes(&[("tokens", 7)]).unwrap();
    assert_eq!(bytes, 7 * 576 * 4, "ten values in place in one extent");
    session.poison_graph_buffers(f32::NAN).unwrap();
    let data = normal(7 * 576, 7);
    let replayed = session
        .run_graph(&[("tokens", 7)], &[(x, Tensor::F32(data))])
        .unwrap();
    assert_eq!(replayed, eager);
    assert_eq!(session.compiles(), 1);
}

#[test]
fn a_graph_output_in_a_longer_shared_buffer_comes_back_at_its_own_length() {
    // x[t, 64] -> a[t, 64] -> b[t, 16] (a reshape-free narrowing via a
    // matmul) -> c[t, 16]: c may take a's longer buffer.
    let mut b = GraphBuilder::new("narrow");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 64));
    let w = b.weight("w", DType::F32, (16, 64));
    let a = b.silu("a", x).unwrap();
    let n = b.matmul("n", a, w).unwrap();
    let c = b.silu("c", n).unwrap();
    b.output(c).unwrap();
    let g = b.finish().unwrap();
    let weights = vec![(w, Tensor::F32(normal(16 * 64, 3)))];
    let session = Session::new(g, weights).unwrap();
    let inputs = [(x, Tensor::F32(normal(2 * 64, 4)))];
    let eager = session.run_eager(&[("tokens", 2)], &inputs).unwrap();
    let graph = session.run_graph(&[("tokens", 2)], &inputs).unwrap();
    assert!(matches!(&graph[0], Tensor::F32(v) if v.len() == 2 * 16));
    assert_eq!(graph, eager);
}

#[test]
fn constant_chains_fold_into_constants_with_the_same_bits() {
    let mut b = GraphBuilder::new("fold");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 8));
    let w = b
        .constant("w", (8,), (0..8).map(|i| i as f32 * 0.3 - 1.0).collect())
        .unwrap();
    let s = b.silu("sw", w).unwrap();
    let s = b.scale("sw2", s, 3.0).unwrap();
    let y = b.mul("y", x, s).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    let before = run(g.clone(), x, 4, 8);
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &[&ConstantFolding]).unwrap();
    assert_eq!(stats[0].nodes, (3, 1), "{stats:?}");
    assert!(stats[0].detail.contains("folded 2 nodes"), "{stats:?}");
    assert!(
        opt.dump().contains("sw2: f32[8] = const(8 values)"),
        "{}",
        opt.dump()
    );
    assert_eq!(run(opt, x, 4, 8), before);
}

#[test]
fn residual_additions_fold_into_their_matmuls_with_the_same_bits() {
    use exodus_graph::examples::{block, BlockDims};
    use exodus_graph::MatMulEpilogues;
    use exodus_kernels::attention::KvFormat;
    let g = block(
        BlockDims::SMOLLM2_135M,
        "q8_0".parse().unwrap(),
        KvFormat::Bf16,
    )
    .unwrap();
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &[&MatMulEpilogues]).unwrap();
    assert_eq!(stats[0].nodes, (15, 13), "{stats:?}");
    assert!(
        stats[0].detail.contains("and 2 residual additions"),
        "{stats:?}"
    );
    let text = opt.dump();
    assert!(
        text.contains("attn_residual: f32[tokens, 576] = linear(")
            && text.contains("weights=1 epilogue=residual"),
        "{text}"
    );
    assert!(opt
        .nodes()
        .iter()
        .any(|n| n.name == "attn_output+attn_residual"));
    let weights = exodus_graph::bench::random_weights(&g, 3).unwrap();
    for tokens in [1usize, 7] {
        let syms = [("tokens", tokens)];
        let inputs = exodus_graph::bench::random_inputs(&g, &syms);
        let plain = Session::new(g.clone(), weights.clone()).unwrap();
        let folded = Session::new(opt.clone(), weights.clone()).unwrap();
        let want = plain.run_eager(&syms, &inputs).unwrap();
        assert_eq!(
            folded.run_eager(&syms, &inputs).unwrap(),
            want,
            "tokens {tokens}"
        );
        assert_eq!(
            folded.run_graph(&syms, &inputs).unwrap(),
            want,
            "tokens {tokens}"
        );
    }
}

#[test]
fn norms_fuse_with_the_elementwise_ops_that_follow() {
    // A decomposed LayerNorm (GPT-2 / BERT style exports): norm, scale,
    // shift, activation; rows of 40 (not a multiple of any SIMD width).
    let mut b = GraphBuilder::new("ln_chain");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 40));
    let ones = b.constant("ones", (40,), vec![1.0; 40]).unwrap();
    let zeros = b.constant("zeros", (40,), vec![0.0; 40]).unwrap();
    let gamma = b
        .constant(
            "gamma",
            (40,),
            (0..40).map(|i| 0.5 + i as f32 / 40.0).collect(),
        )
        .unwrap();
    let beta = b
        .constant(
            "beta",
            (40,),
            (0..40).map(|i| i as f32 / 80.0 - 0.25).collect(),
        )
        .unwrap();
    let n = b.layer_norm("ln", x, ones, zeros, 1e-5).unwrap();
    let s = b.mul("scale", n, gamma).unwrap();
    let s = b.add("shift", s, beta).unwrap();
    let s = b.gelu("act", s, true).unwrap();
    let r = b.rms_norm("rms", s, gamma, 1e-6).unwrap();
    let y = b.add("residual", r, x).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &[&ElementwiseFusion]).unwrap();
    assert_eq!(stats[0].nodes, (6, 1), "{stats:?}");
    let text = opt.dump();
    assert!(
        text.contains("layer_norm(r0, r1, r2)") && text.contains("rms_norm("),
        "{text}"
    );
    for tokens in [1, 5, 1029] {
        let before = run(g.clone(), x, tokens, 40);
        assert_eq!(run(opt.clone(), x, tokens, 40), before, "tokens {tokens}");
        let session = Session::new(opt.clone(), []).unwrap();
        let data = normal(tokens * 40, 7);
        let inputs = [(x, Tensor::F32(data))];
        session.run_graph(&[("tokens", tokens)], &inputs).unwrap();
        session.poison_graph_buffers(f32::NAN).unwrap();
        let replayed = session.run_graph(&[("tokens", tokens)], &inputs).unwrap();
        assert_eq!(replayed, before, "tokens {tokens}");
    }
}
