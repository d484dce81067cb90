//! The linear-layer passes (matmul groups, the SwiGLU epilogue, the norm
//! prologue, after matmul epilogues): their effect on a transformer block,
//! and the property that graphs give the same bits with the passes on and
//! off, eager or replayed (over poisoned buffers), in the decode regime and
//! in the chunked prefill one; malformed linear nodes are refused by name.

use exodus_graph::bench::{random_inputs, random_weights};
use exodus_graph::examples::{block, BlockDims};
use exodus_graph::{
    default_passes, run_passes, DType, Def, Epilogue, Graph, GraphBuilder, Linear, Node, NodeId,
    Op, Session, ValueId, ValueInfo,
};
use exodus_kernels::attention::KvFormat;
use exodus_numerics::sample::SplitMix64;

/// Runs `g` as written (eager) and `opt` eager, in graph mode, and in graph
/// mode again over NaN-poisoned buffers, for each token count: all equal,
/// bit for bit.
fn same_bits(g: &Graph, opt: &Graph, token_counts: &[usize], seed: u64) {
    let weights = random_weights(g, seed).unwrap();
    let plain = Session::new(g.clone(), weights.clone()).unwrap();
    let fused = Session::new(opt.clone(), weights).unwrap();
    for &tokens in token_counts {
        let syms = [("tokens", tokens)];
        let inputs = random_inputs(g, &syms);
        let want = plain.run_eager(&syms, &inputs).unwrap();
        let what = format!("tokens {tokens}\n{}", opt.dump());
        assert_eq!(
            fused.run_eager(&syms, &inputs).unwrap(),
            want,
            "eager, {what}"
        );
        assert_eq!(
            fused.run_graph(&syms, &inputs).unwrap(),
            want,
            "graph, {what}"
        );
        fused.poison_graph_buffers(f32::NAN).unwrap();
        assert_eq!(
            fused.run_graph(&syms, &inputs).unwrap(),
            want,
            "poisoned, {what}"
        );
    }
}

#[test]
fn a_block_becomes_four_linear_launches_with_the_same_bits() {
    for format in ["q4_1", "q8_0", "f32"] {
        let g = block(
            BlockDims::SMOLLM2_135M,
            format.parse().unwrap(),
            KvFormat::Bf16,
        )
        .unwrap();
        let mut opt = g.clone();
        let stats = run_passes(&mut opt, &default_passes()).unwrap();
        let detail = |pass: &str| {
            stats
                .iter()
                .find(|s| s.pass == pass)
                .map(|s| s.detail.clone())
                .unwrap_or_default()
        };
        assert!(
            detail("matmul-groups").contains("grouped 5 matmuls into 2 launches"),
            "{stats:?}"
        );
        assert!(
            detail("swiglu-epilogue").contains("folded 1 swiglu"),
            "{stats:?}"
        );
        assert!(
            detail("norm-prologue").contains("folded 2 rms norms"),
            "{stats:?}"
        );
        // norm+q/k/v, rope q, rope k, attention, o+residual,
        // norm+gate/up+swiglu, down+residual.
        assert_eq!(opt.nodes().len(), 7, "{}", opt.dump());
        let text = opt.dump();
        assert!(text.contains("rms_norm=0.00001 weights=3"), "{text}");
        assert!(text.contains("weights=2 epilogue=swiglu"), "{text}");
        // 100 and 130 rows run the prefill regime in chunks (64 + 36, and
        // 64 + 64 + 2).
        same_bits(&g, &opt, &[1, 3, 100, 130], 5);
    }
}

/// A random stack of linear layers over one x: groups of 1-3 matmuls,
/// optionally after an RMS norm, then SwiGLU or a residual or neither.
fn random_layers(rng: &mut SplitMix64, format: &str) -> Graph {
    let w_type = DType::Weights(format.parse().unwrap());
    let mut b = GraphBuilder::new("layers");
    let t = b.symbol("tokens");
    let k = 64;
    let mut x = b.input("x", DType::F32, (t, k));
    for layer in 0..3 {
        let h = if rng.next_u64().is_multiple_of(2) {
            let nw = b.weight(format!("l{layer}.norm"), DType::F32, (k,));
            b.rms_norm(format!("l{layer}.norm"), x, nw, 1e-5).unwrap()
        } else {
            x
        };
        let n_mm = 1 + (rng.next_u64() % 3) as usize;
        let width = [64, 96][(rng.next_u64() % 2) as usize];
        // Sometimes every projection of the layer has a bias (Qwen2's q/k/v).
        let biased = rng.next_u64().is_multiple_of(3);
        let outs: Vec<ValueId> = (0..n_mm)
            .map(|i| {
                let w = b.weight(format!("l{layer}.w{i}"), w_type, (width, k));
                let y = b.matmul(format!("l{layer}.mm{i}"), h, w).unwrap();
                if biased {
                    let bias = b.weight(format!("l{layer}.b{i}"), DType::F32, (width,));
                    b.add(format!("l{layer}.bias{i}"), y, bias).unwrap()
                } else {
                    y
                }
            })
            .collect();
        let mut y = match (rng.next_u64() % 3, n_mm) {
            (0, 2..) => b.swiglu(format!("l{layer}.act"), outs[0], outs[1]).unwrap(),
            _ => outs[0],
        };
        if width != k {
            let w = b.weight(format!("l{layer}.back"), w_type, (k, width));
            y = b.matmul(format!("l{layer}.back"), y, w).unwrap();
        }
        x = if rng.next_u64().is_multiple_of(2) {
            b.add(format!("l{layer}.residual"), x, y).unwrap()
        } else {
            y
        };
        // Sometimes a second matmul output is a graph output too.
        if n_mm == 3 && rng.next_u64().is_multiple_of(2) {
            b.output(outs[2]).unwrap();
        }
    }
    b.output(x).unwrap();
    b.finish().unwrap()
}

#[test]
fn random_linear_stacks_give_the_same_bits_with_the_passes() {
    let mut rng = SplitMix64::new(21);
    for round in 0..24 {
        let format = ["q4_1", "q8_0", "f32", "q4_0"][round % 4];
        let g = random_layers(&mut rng, format);
        let mut opt = g.clone();
        run_passes(&mut opt, &default_passes()).unwrap();
        assert!(opt.nodes().len() <= g.nodes().len());
        same_bits(&g, &opt, &[1, 2, 70], round as u64);
    }
}

#[test]
fn malformed_linear_nodes_are_refused_by_name() {
    let f32v = |name: &str, shape: Vec<usize>, def: Def| ValueInfo {
        name: name.into(),
        dtype: DType::F32,
        shape: exodus_graph::Shape(shape.into_iter().map(exodus_graph::Dim::Fixed).collect()),
        def,
    };
    let out = |index| Def::Node {
        node: NodeId(0),
        index,
    };
    let cases: Vec<(Linear, Vec<u32>, usize, &str)> = vec![
        // A SwiGLU epilogue needs exactly two weights.
        (
            Linear {
                rms_norm: None,
                weights: 1,
                bias: false,
                epilogue: Epilogue::SwiGlu,
            },
            vec![0, 1],
            1,
            "do not fit",
        ),
        // A norm weight of the wrong width.
        (
            Linear {
                rms_norm: Some(1e-5),
                weights: 1,
                bias: false,
                epilogue: Epilogue::None,
            },
            vec![0, 3, 1],
            1,
            "norm",
        ),
        // Too few inputs for the spec.
        (
            Linear {
                rms_norm: None,
                weights: 2,
                bias: false,
                epilogue: Epilogue::None,
            },
            vec![0, 1],
            2,
            "inputs",
        ),
    ];
    for (spec, inputs, n_out, want) in cases {
        let mut values = vec![
            f32v("x", vec![2, 8], Def::Input),
            f32v("w", vec![4, 8], Def::Weight),
            f32v("w2", vec![4, 8], Def::Weight),
            f32v("bad_norm", vec![5], Def::Weight),
        ];
        let outputs: Vec<ValueId> = (0..n_out)
            .map(|i| {
                values.push(f32v("y", vec![2, 4], out(i)));
                ValueId(values.len() as u32 - 1)
            })
            .collect();
        let node = Node {
            name: "layer0.bad".into(),
            op: Op::Linear(spec),
            inputs: inputs.into_iter().map(ValueId).collect(),
            outputs: outputs.clone(),
        };
        let g = Graph::from_parts("bad", vec![], values, vec![node], outputs);
        let err = g.verify().unwrap_err().to_string();
        assert!(err.contains("layer0.bad") && err.contains(want), "{err}");
    }
}

#[test]
fn biased_projections_group_and_keep_their_bits() {
    // Qwen2-style q/k/v with biases, and an o projection with a bias and a
    // residual.
    let mut b = GraphBuilder::new("qkv_bias");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 64));
    let w = DType::Weights("q8_0".parse().unwrap());
    let mut outs = Vec::new();
    for (name, n) in [("q", 64), ("k", 32), ("v", 32)] {
        let wt = b.weight(format!("{name}.weight"), w, (n, 64));
        let bias = b.weight(format!("{name}.bias"), DType::F32, (n,));
        let y = b.matmul(name, x, wt).unwrap();
        outs.push(b.add(format!("{name}.add_bias"), y, bias).unwrap());
    }
    let wo = b.weight("o.weight", w, (64, 64));
    let bo = b.weight("o.bias", DType::F32, (64,));
    let o = b.matmul("o", outs[0], wo).unwrap();
    let o = b.add("o.add_bias", o, bo).unwrap();
    let y = b.add("residual", x, o).unwrap();
    for v in [y, outs[1], outs[2]] {
        b.output(v).unwrap();
    }
    let g = b.finish().unwrap();
    let mut opt = g.clone();
    let stats = run_passes(&mut opt, &default_passes()).unwrap();
    let text = opt.dump();
    assert!(text.contains("weights=3 bias"), "{text}\n{stats:?}");
    assert!(text.contains("weights=1 bias epilogue=residual"), "{text}");
    assert_eq!(opt.nodes().len(), 2, "{text}");
    same_bits(&g, &opt, &[1, 3, 70], 9);
}
