//! The IR, builder, verifier and dump: a transformer block builds with
//! symbolic shapes and prints readably; mismatches are refused at the call
//! that makes them, naming the node; malformed graphs from outside the
//! builder are refused by the verifier (and random garbage never panics).

use exodus_graph::{
    DType, Def, Graph, GraphBuilder, GraphError, Node, NodeId, Op, Shape, ValueId, ValueInfo,
};
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::sample::SplitMix64;
use exodus_numerics::Format;

const HIDDEN: usize = 576;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const FFN: usize = 1536;

fn q4_1() -> DType {
    DType::Weights(Format::Gguf(GgufBlockType::Q4_1))
}

/// The projections and MLP of one SmolLM2 block (attention itself is a
/// later op), written the way the model layer will write it.
fn block() -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("block");
    let tokens = b.symbol("tokens");
    let x = b.input("x", DType::F32, (tokens, HIDDEN));
    let pos = b.input("pos", DType::U32, (tokens,));
    let norm_w = b.weight("attn_norm.weight", DType::F32, (HIDDEN,));
    let wq = b.weight("wq", q4_1(), (HEADS * HEAD_DIM, HIDDEN));
    let wk = b.weight("wk", q4_1(), (KV_HEADS * HEAD_DIM, HIDDEN));
    let wo = b.weight("wo", q4_1(), (HIDDEN, HEADS * HEAD_DIM));
    let w_gate = b.weight("w_gate", q4_1(), (FFN, HIDDEN));
    let w_up = b.weight("w_up", q4_1(), (FFN, HIDDEN));
    let w_down = b.weight("w_down", q4_1(), (HIDDEN, FFN));
    let h = b.rms_norm("attn_norm", x, norm_w, 1e-5)?;
    let q = b.matmul("q_proj", h, wq)?;
    let q = b.rope("q_rope", q, pos, HEAD_DIM, true, 10000.0)?;
    let k = b.matmul("k_proj", h, wk)?;
    let _k = b.rope("k_rope", k, pos, HEAD_DIM, true, 10000.0)?;
    let o = b.matmul("o_proj", q, wo)?;
    let x = b.add("attn_residual", x, o)?;
    let gate = b.matmul("gate", x, w_gate)?;
    let up = b.matmul("up", x, w_up)?;
    let act = b.swiglu("swiglu", gate, up)?;
    let down = b.matmul("down", act, w_down)?;
    let y = b.add("mlp_residual", x, down)?;
    b.output(y)?;
    b.finish()
}

#[test]
fn a_block_builds_with_symbolic_shapes_and_dumps() {
    let g = block().unwrap();
    g.verify().unwrap();
    assert_eq!(g.symbols(), ["tokens"]);
    assert_eq!(g.nodes().len(), 12);
    let out = g.value(g.outputs()[0]).unwrap();
    assert_eq!(out.dtype, DType::F32);
    assert_eq!(out.shape.display(g.symbols()).to_string(), "[tokens, 576]");
    let text = g.dump();
    assert!(text.starts_with("graph block(tokens) {\n"), "{text}");
    assert!(text.contains("%0 x: f32[tokens, 576] = input\n"), "{text}");
    assert!(text.contains("wq: q4_1[576, 576] = weight"), "{text}");
    assert!(text.contains("q_rope: f32[tokens, 576] = rope(%"), "{text}");
    assert!(text.contains("head_dim=64 neox=true theta=10000"), "{text}");
    assert!(
        text.contains("k_proj: f32[tokens, 192] = matmul(%"),
        "{text}"
    );
    assert!(
        text.contains("attn_norm: f32[tokens, 576] = rms_norm(%0, %2) eps=0.00001"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("}"));
    // One line per value plus header, return and closing brace.
    assert_eq!(text.lines().count(), g.values().len() + 3);
}

/// The error of the last builder call of `f`.
fn refused(f: impl FnOnce(&mut GraphBuilder) -> Result<ValueId, GraphError>) -> String {
    let mut b = GraphBuilder::new("bad");
    let err = f(&mut b).expect_err("the builder must refuse this");
    err.to_string()
}

#[test]
fn the_builder_refuses_mismatches_naming_the_node() {
    let msg = refused(|b| {
        let x = b.input("x", DType::F32, (4, 576));
        let w = b.weight("w", q4_1(), (1536, 512));
        b.matmul("layer0.up", x, w)
    });
    assert!(
        msg.contains("node 'layer0.up' (matmul)") && msg.contains("disagree on k"),
        "{msg}"
    );

    let msg = refused(|b| {
        let x = b.input("x", DType::F32, (4, 100));
        let w = b.weight("w", q4_1(), (8, 100));
        b.matmul("odd_k", x, w)
    });
    assert!(
        msg.contains("not a multiple of q4_1's block of 32"),
        "{msg}"
    );

    let msg = refused(|b| {
        let t = b.symbol("tokens");
        let x = b.input("x", DType::F32, (t, 576));
        let y = b.input("y", DType::F32, (t, 575));
        b.add("residual", x, y)
    });
    assert!(
        msg.contains("node 'residual' (add)") && msg.contains("[tokens, 575]"),
        "{msg}"
    );

    let msg = refused(|b| {
        let t = b.symbol("tokens");
        let x = b.input("x", DType::F32, (t, 576));
        b.reshape("heads", x, (t, 9, 63))
    });
    assert!(
        msg.contains("cannot reshape [tokens, 576] to [tokens, 9, 63]"),
        "{msg}"
    );

    let msg = refused(|b| {
        let t = b.symbol("tokens");
        let s = b.symbol("seqs");
        let x = b.input("x", DType::F32, (t, 576));
        b.reshape("mix", x, (s, 576))
    });
    assert!(msg.contains("element counts differ"), "{msg}");

    let msg = refused(|b| {
        let x = b.input("x", DType::F32, (4, 576));
        let w = b.weight("w", DType::F32, (575,));
        b.rms_norm("norm", x, w, 1e-5)
    });
    assert!(
        msg.contains("node 'norm' (rms_norm)") && msg.contains("must have shape [576]"),
        "{msg}"
    );

    let msg = refused(|b| {
        let x = b.input("x", DType::F32, (4, 100));
        let p = b.input("p", DType::U32, (4,));
        b.rope("rope", x, p, 64, false, 10000.0)
    });
    assert!(msg.contains("not a fixed multiple of head_dim 64"), "{msg}");

    let msg = refused(|b| {
        let table = b.weight("emb", q4_1(), (49152, 576));
        let ids = b.input("ids", DType::F32, (4,));
        b.embedding("embed", table, ids)
    });
    assert!(msg.contains("ids must be u32"), "{msg}");

    let msg = refused(|b| b.silu("act", ValueId(7)));
    assert!(msg.contains("input 7 does not exist"), "{msg}");

    let mut b = GraphBuilder::new("c");
    let err = b.constant("c", (2, 3), vec![0.0; 5]).unwrap_err();
    assert!(
        err.to_string().contains("value 'c'")
            && err.to_string().contains("holds 6 values, data has 5")
    );
}

fn value(name: &str, dtype: DType, shape: Shape, def: Def) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype,
        shape,
        def,
    }
}

fn f32v(name: &str, def: Def) -> ValueInfo {
    value(name, DType::F32, Shape::of([4usize]), def)
}

fn silu(name: &str, input: u32, output: u32) -> Node {
    Node {
        name: name.into(),
        op: Op::Unary(exodus_graph::Unary::Silu),
        inputs: vec![ValueId(input)],
        outputs: vec![ValueId(output)],
    }
}

fn node_def(node: u32) -> Def {
    Def::Node {
        node: NodeId(node),
        index: 0,
    }
}

#[test]
fn the_verifier_refuses_malformed_graphs_naming_what_is_wrong() {
    let check = |g: Graph, want: &[&str]| {
        let msg = g.verify().expect_err("must be refused").to_string();
        for w in want {
            assert!(msg.contains(w), "{msg} (wanted {w:?})");
        }
    };
    // A cycle: a reads b's output, b reads a's.
    check(
        Graph::from_parts(
            "cycle",
            vec![],
            vec![f32v("a", node_def(0)), f32v("b", node_def(1))],
            vec![silu("a", 1, 0), silu("b", 0, 1)],
            vec![ValueId(1)],
        ),
        &["node 'a' (silu)", "before node 1 defines it"],
    );
    // Two nodes claim one value.
    check(
        Graph::from_parts(
            "twice",
            vec![],
            vec![f32v("x", Def::Input), f32v("y", node_def(0))],
            vec![silu("first", 0, 1), silu("second", 0, 1)],
            vec![ValueId(1)],
        ),
        &["node 'second'", "defined elsewhere"],
    );
    // A value says a node made it, but the node does not list it.
    check(
        Graph::from_parts(
            "orphan",
            vec![],
            vec![
                f32v("x", Def::Input),
                f32v("y", node_def(0)),
                f32v("z", node_def(0)),
            ],
            vec![silu("n", 0, 1)],
            vec![ValueId(1)],
        ),
        &["value 'z'", "does not list it"],
    );
    // An undeclared symbol.
    check(
        Graph::from_parts(
            "sym",
            vec![],
            vec![value(
                "x",
                DType::F32,
                Shape::of([exodus_graph::Sym(3)]),
                Def::Input,
            )],
            vec![],
            vec![ValueId(0)],
        ),
        &["value 'x'", "symbol 3"],
    );
    // A recorded output shape the op does not give.
    check(
        Graph::from_parts(
            "shape",
            vec![],
            vec![
                f32v("x", Def::Input),
                value("y", DType::F32, Shape::of([5usize]), node_def(0)),
            ],
            vec![silu("act", 0, 1)],
            vec![ValueId(1)],
        ),
        &[
            "node 'act' (silu)",
            "recorded as f32[5], the op gives f32[4]",
        ],
    );
    // A missing input, a wrong arity, no outputs, a missing output.
    check(
        Graph::from_parts(
            "missing",
            vec![],
            vec![f32v("y", node_def(0))],
            vec![silu("act", 9, 0)],
            vec![ValueId(0)],
        ),
        &["node 'act'", "input 9 does not exist"],
    );
    let mut add = silu("sum", 0, 1);
    add.op = Op::Add;
    check(
        Graph::from_parts(
            "arity",
            vec![],
            vec![f32v("x", Def::Input), f32v("y", node_def(0))],
            vec![add],
            vec![ValueId(1)],
        ),
        &["node 'sum' (add)", "takes 2 inputs, got 1"],
    );
    check(
        Graph::from_parts("empty", vec![], vec![f32v("x", Def::Input)], vec![], vec![]),
        &["graph 'empty'", "returns nothing"],
    );
    check(
        Graph::from_parts(
            "gone",
            vec![],
            vec![f32v("x", Def::Input)],
            vec![],
            vec![ValueId(4)],
        ),
        &["output 4 does not exist"],
    );
}

/// A random (mostly malformed) graph from raw parts.
fn random_graph(rng: &mut SplitMix64) -> Graph {
    let mut pick = |n: u64| (rng.next_u64() % n.max(1)) as u32;
    let n_values = pick(6) as usize + 1;
    let n_nodes = pick(5) as usize;
    let ops = [
        Op::Add,
        Op::MatMul,
        Op::Softmax,
        Op::SwiGlu,
        Op::Argmax,
        Op::RmsNorm { eps: 1e-5 },
        Op::Embedding,
        Op::Reshape(Shape::of([4usize])),
        Op::Rope {
            head_dim: 2,
            neox: false,
            theta: 1e4,
        },
    ];
    let dtypes = [DType::F32, DType::U32, q4_1()];
    let values = (0..n_values)
        .map(|i| {
            let rank = pick(3) as usize;
            let dims: Vec<exodus_graph::Dim> = (0..rank)
                .map(|_| match pick(4) {
                    0 => exodus_graph::Sym(pick(2)).into(),
                    _ => [0usize, 1, 4, 32][pick(4) as usize].into(),
                })
                .collect();
            let def = match pick(4) {
                0 => Def::Input,
                1 => Def::Weight,
                2 => Def::Const(vec![0.0; pick(5) as usize]),
                _ => Def::Node {
                    node: NodeId(pick(n_nodes as u64 + 1)),
                    index: pick(2) as usize,
                },
            };
            value(&format!("v{i}"), dtypes[pick(3) as usize], Shape(dims), def)
        })
        .collect();
    let nodes = (0..n_nodes)
        .map(|i| Node {
            name: format!("n{i}"),
            op: ops[pick(ops.len() as u64) as usize].clone(),
            inputs: (0..pick(4))
                .map(|_| ValueId(pick(n_values as u64 + 1)))
                .collect(),
            outputs: (0..pick(3))
                .map(|_| ValueId(pick(n_values as u64 + 1)))
                .collect(),
        })
        .collect();
    let outputs = (0..pick(3))
        .map(|_| ValueId(pick(n_values as u64 + 1)))
        .collect();
    Graph::from_parts("random", vec!["tokens".into()], values, nodes, outputs)
}

#[test]
fn random_raw_graphs_never_panic_the_verifier_or_the_dump() {
    let mut rng = SplitMix64::new(42);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let g = random_graph(&mut rng);
        let _ = g.dump();
        if g.verify().is_ok() {
            accepted += 1;
        }
    }
    // Some random graphs are well formed (inputs only, trivial nodes).
    assert!(accepted > 0);
}

#[test]
fn the_dot_form_has_every_node_value_and_edge() {
    let g = block().unwrap();
    let dot = g.to_dot();
    assert!(dot.starts_with("digraph \"block\" {"), "{dot}");
    assert!(dot.trim_end().ends_with('}'));
    let boxes = dot.lines().filter(|l| l.contains("[shape=box")).count();
    assert_eq!(boxes, g.nodes().len());
    let edges = dot.lines().filter(|l| l.contains(" -> n")).count();
    assert_eq!(
        edges,
        g.nodes().iter().map(|n| n.inputs.len()).sum::<usize>()
    );
    assert!(dot.contains("label=\"f32[tokens, 576]\""), "{dot}");
    assert!(dot.contains("rms_norm\\nattn_norm eps=0.00001"), "{dot}");
}
