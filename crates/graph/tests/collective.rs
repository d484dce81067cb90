//! `Op::AllReduce` (and `Op::AllGather`, this rank's columns among the
//! others') calls the session's collective once per run, in eager
//! and in graph mode (after the passes, which keep it and fuse nothing
//! across it), and is the identity without one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use exodus_graph::{
    default_passes, run_passes, Collective, DType, Graph, GraphBuilder, Session, Tensor,
};

/// A job of `ranks` ranks whose other ranks hold the same values.
struct Copies {
    ranks: f32,
    calls: AtomicUsize,
}

impl Collective for Copies {
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        values.iter_mut().for_each(|v| *v *= self.ranks);
        Ok(())
    }
}

fn graph() -> Graph {
    let mut b = GraphBuilder::new("sharded");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 4));
    let w = b.weight("w", DType::F32, (4, 4));
    let y = b.matmul("proj", x, w).unwrap();
    let r = b.all_reduce("proj.all_reduce", y).unwrap();
    let z = b.add("residual", x, r).unwrap();
    b.output(z).unwrap();
    b.finish().unwrap()
}

fn run(graph: Graph, collective: Option<Arc<Copies>>, eager: bool) -> Vec<f32> {
    let w: Vec<f32> = (0..16).map(|i| (i % 5) as f32 - 2.0).collect();
    let wid = graph.values().iter().position(|v| v.name == "w").unwrap();
    let xid = graph.values().iter().position(|v| v.name == "x").unwrap();
    let mut s = Session::new(graph, [(exodus_graph::ValueId(wid as u32), Tensor::F32(w))]).unwrap();
    if let Some(c) = collective {
        s.set_collective(c);
    }
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
    let inputs = [(exodus_graph::ValueId(xid as u32), Tensor::F32(x))];
    let out = if eager {
        s.run_eager(&[("tokens", 2)], &inputs).unwrap()
    } else {
        s.run_graph(&[("tokens", 2)], &inputs).unwrap()
    };
    match out.into_iter().next() {
        Some(Tensor::F32(v)) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn all_reduce_sums_through_the_collective_in_both_modes() {
    let alone = run(graph(), None, true);
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = alone.iter().zip(&x).map(|(z, x)| z - x).collect();
    assert!(y.iter().any(|&v| v != 0.0));
    let want: Vec<f32> = y.iter().zip(&x).map(|(y, x)| 3.0 * y + x).collect();
    for eager in [true, false] {
        let mut g = graph();
        if !eager {
            run_passes(&mut g, &default_passes()).unwrap();
            assert!(g.nodes().iter().any(|n| n.op.name() == "all_reduce"));
        }
        let copies = Arc::new(Copies {
            ranks: 3.0,
            calls: AtomicUsize::new(0),
        });
        let got = run(g, Some(copies.clone()), eager);
        assert_eq!(got, want, "eager: {eager}");
        assert_eq!(copies.calls.load(Ordering::SeqCst), 1, "eager: {eager}");
    }
}

/// A job whose other ranks hold the columns `2..5` of a 5-wide result, as
/// `10 * row + column`.
struct OtherColumns;

impl Collective for OtherColumns {
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), String> {
        for (r, row) in values.chunks_exact_mut(5).enumerate() {
            for (c, v) in row.iter_mut().enumerate().skip(2) {
                *v += (10 * r + c) as f32;
            }
        }
        Ok(())
    }
}

#[test]
fn all_gather_places_this_ranks_columns_among_the_others() {
    for eager in [true, false] {
        let mut b = GraphBuilder::new("gathered");
        let t = b.symbol("tokens");
        let x = b.input("x", DType::F32, (t, 2));
        let g = b.all_gather("x.all_gather", x, 0, 5).unwrap();
        b.output(g).unwrap();
        let mut graph = b.finish().unwrap();
        if !eager {
            run_passes(&mut graph, &default_passes()).unwrap();
        }
        let dump = graph.dump();
        assert!(dump.contains("all_gather(%0) from=0 of=5"), "{dump}");
        let xid = graph.values().iter().position(|v| v.name == "x").unwrap();
        let mut s = Session::new(graph, []).unwrap();
        s.set_collective(Arc::new(OtherColumns));
        let x = vec![-0.5f32, 1.5, 2.5, -3.5];
        let inputs = [(exodus_graph::ValueId(xid as u32), Tensor::F32(x))];
        let out = if eager {
            s.run_eager(&[("tokens", 2)], &inputs).unwrap()
        } else {
            s.run_graph(&[("tokens", 2)], &inputs).unwrap()
        };
        let want = vec![-0.5, 1.5, 2.0, 3.0, 4.0, 2.5, -3.5, 12.0, 13.0, 14.0];
        assert_eq!(out, vec![Tensor::F32(want)], "eager: {eager}");
    }
    // Columns that do not fit are refused when the graph is built.
    let mut b = GraphBuilder::new("misfit");
    let x = b.input("x", DType::F32, (1, 3));
    assert!(b.all_gather("x.all_gather", x, 3, 5).is_err());
}
