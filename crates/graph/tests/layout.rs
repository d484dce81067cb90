//! Layout ops and reductions: transpose, slice, concat and row sums give
//! what index arithmetic says, in eager and graph mode, and misuse is
//! refused by the builder naming the node.

use exodus_graph::{DType, GraphBuilder, Session, Tensor};

#[test]
fn layout_ops_compute_what_the_indices_say() {
    let mut b = GraphBuilder::new("layout");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 24));
    let heads = b.reshape("heads", x, (t, 6, 4)).unwrap();
    let swapped = b.transpose("swap", heads, &[1, 0, 2]).unwrap(); // [6, t, 4]
    let mid = b.slice("mid", heads, 1, 2, 5).unwrap(); // [t, 3, 4]
    let first = b.slice("first", heads, 1, 0, 2).unwrap(); // [t, 2, 4]
    let last = b.slice("last", heads, 1, 5, 6).unwrap(); // [t, 1, 4]
    let back = b.concat("back", &[first, mid, last], 1).unwrap(); // [t, 6, 4]
    let sums = b.reduce("sums", back, false).unwrap(); // [t, 6]
    let means = b.reduce("means", swapped, true).unwrap(); // [6, t]
    b.output(back).unwrap();
    b.output(sums).unwrap();
    b.output(means).unwrap();
    b.output(swapped).unwrap();
    let g = b.finish().unwrap();
    let session = Session::new(g, []).unwrap();
    let tokens = 3;
    let data: Vec<f32> = (0..tokens * 24).map(|v| v as f32).collect();
    let inputs = [(x, Tensor::F32(data.clone()))];
    let eager = session.run_eager(&[("tokens", tokens)], &inputs).unwrap();
    let graph = session.run_graph(&[("tokens", tokens)], &inputs).unwrap();
    assert_eq!(eager, graph);
    let f = |i: usize| match &eager[i] {
        Tensor::F32(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(f(0), data, "slices concatenated back are the input");
    let at = |tk: usize, h: usize, d: usize| data[(tk * 6 + h) * 4 + d];
    let sums = f(1);
    for tk in 0..tokens {
        for h in 0..6 {
            let want: f32 = (0..4).map(|d| at(tk, h, d)).sum();
            assert_eq!(sums[tk * 6 + h], want);
        }
    }
    let swapped = f(3);
    let means = f(2);
    for h in 0..6 {
        for tk in 0..tokens {
            for d in 0..4 {
                assert_eq!(swapped[(h * tokens + tk) * 4 + d], at(tk, h, d));
            }
            let want = (0..4).map(|d| at(tk, h, d)).sum::<f32>() / 4.0;
            assert_eq!(means[h * tokens + tk], want);
        }
    }
}

#[test]
fn layout_misuse_is_refused_naming_the_node() {
    let mut b = GraphBuilder::new("bad");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 6, 4));
    let err = |r: Result<_, exodus_graph::GraphError>| r.unwrap_err().to_string();
    let msg = err(b.transpose("perm", x, &[0, 0, 1]));
    assert!(
        msg.contains("node 'perm' (transpose)") && msg.contains("not a permutation"),
        "{msg}"
    );
    let msg = err(b.slice("past", x, 1, 4, 7));
    assert!(
        msg.contains("node 'past' (slice)") && msg.contains("4..7 of axis 1"),
        "{msg}"
    );
    let msg = err(b.slice("symbolic", x, 0, 0, 1));
    assert!(msg.contains("the axis must be fixed"), "{msg}");
    let y = b.input("y", DType::F32, (t, 5, 3));
    let msg = err(b.concat("join", &[x, y], 1));
    assert!(
        msg.contains("node 'join' (concat)") && msg.contains("does not join"),
        "{msg}"
    );
    let msg = err(b.concat("nothing", &[], 0));
    assert!(msg.contains("concat needs inputs"), "{msg}");
}

#[test]
fn split_and_top_k_have_several_outputs_in_both_modes() {
    let mut b = GraphBuilder::new("multi");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 10));
    let parts = b.split("qkv", x, 1, &[5, 3, 2]).unwrap();
    assert_eq!(parts.len(), 3);
    let (values, indices) = b.top_k("best", x, 3).unwrap();
    // A later reader of one part only: the others are outputs.
    let doubled = b.scale("double", parts[1], 2.0).unwrap();
    for v in [parts[0], doubled, parts[2], values, indices] {
        b.output(v).unwrap();
    }
    let g = b.finish().unwrap();
    let text = g.dump();
    assert!(text.contains("split(%0) axis=1 sizes=[5, 3, 2]"), "{text}");
    assert!(
        text.contains("best: u32[tokens, 3] = top_k(%0) k=3"),
        "{text}"
    );
    let session = Session::new(g, []).unwrap();
    let tokens = 4;
    // Distinct values in a scrambled order per row.
    let data: Vec<f32> = (0..tokens * 10)
        .map(|i| ((i * 7919) % 101) as f32 - 50.0)
        .collect();
    let inputs = [(x, Tensor::F32(data.clone()))];
    let eager = session.run_eager(&[("tokens", tokens)], &inputs).unwrap();
    session.run_graph(&[("tokens", tokens)], &inputs).unwrap();
    session.poison_graph_buffers(f32::NAN).unwrap();
    let graph = session.run_graph(&[("tokens", tokens)], &inputs).unwrap();
    assert_eq!(eager, graph);
    let cols = |v: &Tensor, from: usize, to: usize, scale: f32| -> bool {
        let Tensor::F32(v) = v else { return false };
        let w = to - from;
        (0..tokens).all(|r| (0..w).all(|c| v[r * w + c] == scale * data[r * 10 + from + c]))
    };
    assert!(cols(&eager[0], 0, 5, 1.0));
    assert!(cols(&eager[1], 5, 8, 2.0));
    assert!(cols(&eager[2], 8, 10, 1.0));
    let (Tensor::F32(vals), Tensor::U32(idx)) = (&eager[3], &eager[4]) else {
        panic!("{:?}", &eager[3..]);
    };
    for r in 0..tokens {
        let mut row: Vec<(f32, u32)> = (0..10).map(|c| (data[r * 10 + c], c as u32)).collect();
        row.sort_by(|a, b| b.0.total_cmp(&a.0));
        for j in 0..3 {
            assert_eq!((vals[r * 3 + j], idx[r * 3 + j]), row[j], "row {r}");
        }
    }
}

#[test]
fn bad_split_and_top_k_are_refused_by_name() {
    let mut b = GraphBuilder::new("bad");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 10));
    let err = b
        .split("blk.0.split", x, 1, &[5, 4])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("blk.0.split") && err.contains("do not split"),
        "{err}"
    );
    let err = b.split("rows", x, 0, &[1]).unwrap_err().to_string();
    assert!(err.contains("rows") && err.contains("fixed"), "{err}");
    let err = b.top_k("blk.0.topk", x, 11).unwrap_err().to_string();
    assert!(
        err.contains("blk.0.topk") && err.contains("k = 11"),
        "{err}"
    );
    let err = b.top_k("zero", x, 0).unwrap_err().to_string();
    assert!(err.contains("zero"), "{err}");
}

#[test]
fn gather_takes_rows_by_index_and_refuses_rows_past_the_end() {
    let mut b = GraphBuilder::new("gather");
    let t = b.symbol("tokens");
    let n = b.symbol("outputs");
    let x = b.input("x", DType::F32, (t, 3));
    let rows = b.input("rows", DType::U32, (n,));
    let y = b.gather("last", x, rows).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    assert!(g.dump().contains("last: f32[outputs, 3] = gather(%0, %1)"));
    let session = Session::new(g, []).unwrap();
    let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let syms = [("tokens", 4), ("outputs", 2)];
    let good = [
        (x, Tensor::F32(data.clone())),
        (rows, Tensor::U32(vec![3, 0])),
    ];
    let want = Tensor::F32(vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0]);
    assert_eq!(session.run_eager(&syms, &good).unwrap(), vec![want.clone()]);
    assert_eq!(session.run_graph(&syms, &good).unwrap(), vec![want.clone()]);
    let bad = [(x, Tensor::F32(data)), (rows, Tensor::U32(vec![4, 0]))];
    for err in [
        session.run_eager(&syms, &bad).unwrap_err(),
        session.run_graph(&syms, &bad).unwrap_err(),
    ] {
        assert!(err.to_string().contains("row 4 of 4 rows"), "{err}");
    }
    // The session stays usable.
    assert_eq!(session.run_graph(&syms, &good).unwrap(), vec![want]);
}
