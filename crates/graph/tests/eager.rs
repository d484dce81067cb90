//! Eager execution runs the graph's nodes with exodus-kernels on a runtime
//! stream: a small decoder-style graph gives what the same kernels give
//! when called by hand on the scalar path (int8 matmul budget), and bad
//! bindings are typed errors.

use exodus_graph::{DType, ExecError, GraphBuilder, Session, Tensor, ValueId};
use exodus_kernels::matmul::{matmul_reference, Weights};
use exodus_kernels::ops::{self, QuantizedRows, RmsNormParams, RopeParams, RopeStyle};
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::sample::normal;
use exodus_numerics::{ElementFormat, Format};

const VOCAB: usize = 100;
const D: usize = 64;
const HIDDEN: usize = 96;
const HEAD_DIM: usize = 32;

struct Model {
    session: Session,
    ids: ValueId,
    pos: ValueId,
    table: Vec<u8>,
    norm: Vec<f32>,
    w1: Vec<u8>,
    w2: Vec<f32>,
}

fn q4_1() -> Format {
    Format::Gguf(GgufBlockType::Q4_1)
}

fn q8_0() -> Format {
    Format::Gguf(GgufBlockType::Q8_0)
}

fn model() -> Model {
    let mut b = GraphBuilder::new("tiny");
    let t = b.symbol("tokens");
    let ids = b.input("ids", DType::U32, (t,));
    let pos = b.input("pos", DType::U32, (t,));
    let table = b.weight("embed", DType::Weights(q8_0()), (VOCAB, D));
    let norm = b.weight("norm", DType::F32, (D,));
    let w1 = b.weight("w1", DType::Weights(q4_1()), (HIDDEN, D));
    let w2 = b.weight("w2", DType::F32, (D, HIDDEN));
    let x = b.embedding("embed", table, ids).unwrap();
    let h = b.rms_norm("norm", x, norm, 1e-5).unwrap();
    let h = b.matmul("up", h, w1).unwrap();
    let h = b.rope("rope", h, pos, HEAD_DIM, true, 10000.0).unwrap();
    let h = b.silu("act", h).unwrap();
    let h = b.matmul("down", h, w2).unwrap();
    let y = b.add("residual", x, h).unwrap();
    let scaled = b.scale("scale", y, 0.5).unwrap();
    let z = b.sub("sub", scaled, norm).unwrap();
    let top = b.argmax("argmax", z).unwrap();
    b.output(z).unwrap();
    b.output(top).unwrap();
    let graph = b.finish().unwrap();
    let table_w = q8_0()
        .quantize(&normal(VOCAB * D, 1), &Default::default())
        .unwrap();
    let norm_w: Vec<f32> = normal(D, 2).iter().map(|v| 1.0 + 0.1 * v).collect();
    let w1_w = q4_1()
        .quantize(&normal(HIDDEN * D, 3), &Default::default())
        .unwrap();
    let w2_w: Vec<f32> = normal(D * HIDDEN, 4).iter().map(|v| v * 0.1).collect();
    let weights = [
        (table, Tensor::Bytes(table_w.clone())),
        (norm, Tensor::F32(norm_w.clone())),
        (w1, Tensor::Bytes(w1_w.clone())),
        (w2, Tensor::F32(w2_w.clone())),
    ];
    Model {
        session: Session::new(graph, weights).unwrap(),
        ids,
        pos,
        table: table_w,
        norm: norm_w,
        w1: w1_w,
        w2: w2_w,
    }
}

/// The same computation with the kernels called by hand (scalar paths,
/// exact matmul reference).
fn by_hand(m: &Model, ids: &[u32], pos: &[u32]) -> (Vec<f32>, Vec<u32>) {
    let t = ids.len();
    let s = SimdLevel::Scalar;
    let rows = QuantizedRows {
        bytes: &m.table,
        format: q8_0(),
        vocab: VOCAB,
        dim: D,
    };
    let mut x = vec![0f32; t * D];
    ops::embedding(&rows, ids, &mut x).unwrap();
    let mut h = vec![0f32; t * D];
    ops::rms_norm_with(s, &x, &m.norm, &mut h, t, D, &RmsNormParams { eps: 1e-5 }).unwrap();
    let mut u = vec![0f32; t * HIDDEN];
    let w1 = Weights::new(q4_1(), &m.w1, HIDDEN, D).unwrap();
    matmul_reference(&h, t, &w1, &mut u).unwrap();
    let params = RopeParams {
        style: RopeStyle::NeoX,
        theta: 10000.0,
        rotary_dim: None,
    };
    ops::rope_with(s, &mut u, pos, HIDDEN / HEAD_DIM, HEAD_DIM, &params).unwrap();
    let mut a = vec![0f32; t * HIDDEN];
    ops::silu_with(s, &u, &mut a).unwrap();
    let w2_bytes: Vec<u8> = m.w2.iter().flat_map(|v| v.to_le_bytes()).collect();
    let w2 = Weights::new(Format::Element(ElementFormat::F32), &w2_bytes, D, HIDDEN).unwrap();
    let mut dn = vec![0f32; t * D];
    matmul_reference(&a, t, &w2, &mut dn).unwrap();
    let z: Vec<f32> = x
        .iter()
        .zip(&dn)
        .enumerate()
        .map(|(i, (x, d))| (x + d) * 0.5 - m.norm[i % D])
        .collect();
    let mut top = vec![0u32; t];
    ops::argmax_with(s, &z, t, D, &mut top).unwrap();
    (z, top)
}

#[test]
fn eager_run_matches_the_kernels_called_by_hand() {
    let m = model();
    for tokens in [1usize, 3, 17] {
        let ids: Vec<u32> = (0..tokens as u32)
            .map(|i| (i * 37 + 5) % VOCAB as u32)
            .collect();
        let pos: Vec<u32> = (0..tokens as u32).map(|i| i + 7).collect();
        let out = m
            .session
            .run_eager(
                &[("tokens", tokens)],
                &[
                    (m.ids, Tensor::U32(ids.clone())),
                    (m.pos, Tensor::U32(pos.clone())),
                ],
            )
            .unwrap();
        let (want_z, want_top) = by_hand(&m, &ids, &pos);
        let Tensor::F32(z) = &out[0] else {
            panic!("z is f32")
        };
        assert_eq!(z.len(), tokens * D);
        // The session's matmuls quantize x to int8 (decode for few rows,
        // the integer prefill on AVX-512): well within 2% of the scale.
        let scale = want_z.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in z.iter().zip(&want_z) {
            assert!(
                (g - w).abs() <= 0.02 * scale,
                "{g} vs {w} (tokens {tokens})"
            );
        }
        let Tensor::U32(top) = &out[1] else {
            panic!("argmax is u32")
        };
        assert_eq!(top.len(), tokens);
        // The argmax agrees wherever the winner is clear.
        for (r, (&g, &w)) in top.iter().zip(&want_top).enumerate() {
            let row = &want_z[r * D..(r + 1) * D];
            let mut sorted = row.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 0.05 * scale {
                assert_eq!(g, w, "row {r}");
            }
        }
    }
}

#[test]
fn bad_bindings_are_typed_errors() {
    let m = model();
    let ids = Tensor::U32(vec![1, 2]);
    let pos = Tensor::U32(vec![0, 1]);
    let run = |syms: &[(&str, usize)], inputs: &[(ValueId, Tensor)]| {
        m.session.run_eager(syms, inputs).unwrap_err().to_string()
    };
    let msg = run(&[], &[(m.ids, ids.clone()), (m.pos, pos.clone())]);
    assert!(msg.contains("'tokens': symbol not bound"), "{msg}");
    let msg = run(&[("tokens", 2), ("batch", 1)], &[(m.ids, ids.clone())]);
    assert!(
        msg.contains("'batch': the graph has no such symbol"),
        "{msg}"
    );
    let msg = run(&[("tokens", 2)], &[(m.ids, ids.clone())]);
    assert!(msg.contains("'pos': input not given"), "{msg}");
    let msg = run(
        &[("tokens", 3)],
        &[(m.ids, ids.clone()), (m.pos, pos.clone())],
    );
    assert!(msg.contains("'ids': needs 3 u32 values"), "{msg}");
    let msg = run(
        &[("tokens", 2)],
        &[(m.ids, Tensor::F32(vec![0.0; 2])), (m.pos, pos.clone())],
    );
    assert!(msg.contains("got f32 data"), "{msg}");
    // An id past the vocabulary fails in the kernel: a typed runtime
    // error, and the session stays usable.
    let msg = run(
        &[("tokens", 2)],
        &[(m.ids, Tensor::U32(vec![1, 500])), (m.pos, pos.clone())],
    );
    assert!(msg.contains("embed"), "{msg}");

    // Weights: missing, wrong size.
    let mut b = GraphBuilder::new("w");
    let x = b.input("x", DType::F32, (2, D));
    let w = b.weight("w", DType::Weights(q4_1()), (8, D));
    let y = b.matmul("mm", x, w).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    let err = Session::new(g.clone(), []).unwrap_err();
    assert!(
        matches!(err, ExecError::Binding { .. }) && err.to_string().contains("weight not given")
    );
    let err = Session::new(g, [(w, Tensor::Bytes(vec![0; 7]))]).unwrap_err();
    assert!(
        err.to_string().contains("q4_1 needs 320 bytes, got 7"),
        "{err}"
    );
}

#[test]
fn graph_mode_matches_eager_and_compiles_once_per_bucket() {
    let m = model();
    for round in 0..3 {
        for tokens in [1usize, 3, 17] {
            let ids: Vec<u32> = (0..tokens as u32)
                .map(|i| (i * 13 + round) % VOCAB as u32)
                .collect();
            let pos: Vec<u32> = (0..tokens as u32).collect();
            let inputs = [(m.ids, Tensor::U32(ids)), (m.pos, Tensor::U32(pos))];
            let eager = m.session.run_eager(&[("tokens", tokens)], &inputs).unwrap();
            let graph = m.session.run_graph(&[("tokens", tokens)], &inputs).unwrap();
            // The same kernels on the same data: bit for bit.
            assert_eq!(graph, eager, "tokens {tokens} round {round}");
        }
    }
    assert_eq!(m.session.compiles(), 3, "one compile per binding of tokens");
    // Bad inputs are refused in graph mode too, and the session recovers.
    let err = m
        .session
        .run_graph(&[("tokens", 3)], &[(m.ids, Tensor::U32(vec![1; 3]))])
        .unwrap_err();
    assert!(err.to_string().contains("'pos': input not given"), "{err}");
    let bad = [
        (m.ids, Tensor::U32(vec![1, 999, 2])),
        (m.pos, Tensor::U32(vec![0, 1, 2])),
    ];
    assert!(m.session.run_graph(&[("tokens", 3)], &bad).is_err());
    let good = [
        (m.ids, Tensor::U32(vec![1, 9, 2])),
        (m.pos, Tensor::U32(vec![0, 1, 2])),
    ];
    assert_eq!(
        m.session.run_graph(&[("tokens", 3)], &good).unwrap(),
        m.session.run_eager(&[("tokens", 3)], &good).unwrap()
    );
}
