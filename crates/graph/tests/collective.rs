//! `Op::AllReduce` calls the session's collective once per run, in eager
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
