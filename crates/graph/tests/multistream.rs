//! Sessions on several streams: independent branches run on their own
//! streams ordered by events, eager and captured (fork/join), with the
//! memory plan reusing bytes only where the streams' order allows. Results
//! are the single-stream eager bits, replay after replay, over poisoned
//! arenas too.

use exodus_graph::bench::{random_inputs, random_weights};
use exodus_graph::examples::{block, BlockDims};
use exodus_graph::{default_passes, run_passes, DType, Graph, GraphBuilder, Session, Tensor};
use exodus_kernels::attention::KvFormat;
use exodus_numerics::sample::{normal, SplitMix64};

fn check(g: &Graph, opt: &Graph, streams: usize, tokens: &[usize], runs: usize) {
    let weights = random_weights(g, 1).unwrap();
    let one = Session::new(g.clone(), weights.clone()).unwrap();
    let many = Session::new(opt.clone(), weights)
        .unwrap()
        .with_streams(streams)
        .unwrap();
    for &t in tokens {
        let syms = [("tokens", t)];
        let inputs = random_inputs(g, &syms);
        let want = one.run_eager(&syms, &inputs).unwrap();
        for run in 0..runs {
            let what = format!("{streams} streams, tokens {t}, run {run}");
            assert_eq!(
                many.run_eager(&syms, &inputs).unwrap(),
                want,
                "eager, {what}"
            );
            if run % 2 == 1 {
                many.poison_graph_buffers(f32::NAN).unwrap();
            }
            assert_eq!(
                many.run_graph(&syms, &inputs).unwrap(),
                want,
                "graph, {what}"
            );
        }
    }
}

#[test]
fn a_block_on_several_streams_gives_the_single_stream_bits() {
    let g = block(
        BlockDims::SMOLLM2_135M,
        "q8_0".parse().unwrap(),
        KvFormat::Bf16,
    )
    .unwrap();
    let mut opt = g.clone();
    run_passes(&mut opt, &default_passes()).unwrap();
    for streams in [2, 3] {
        // As written (q, k, v on their own streams) and after the passes
        // (rope q and rope k on two streams).
        for graph in [&g, &opt] {
            let s = Session::new(graph.clone(), random_weights(graph, 1).unwrap())
                .unwrap()
                .with_streams(streams)
                .unwrap();
            assert!(s.stream_plan().streams > 1, "{}", s.stream_plan().summary());
            // Attention writes the KV cache at positions 0.., so each check
            // starts from a fresh session (state is per session).
            check(&g, graph, streams, &[1, 9], 6);
        }
    }
}

/// Random elementwise DAGs over one input, wide enough to fork.
fn random_dag(rng: &mut SplitMix64) -> (Graph, exodus_graph::ValueId) {
    let mut b = GraphBuilder::new("dag");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 48));
    let mut pool = vec![x];
    for i in 0..(4 + rng.next_u64() % 14) {
        let pick = |rng: &mut SplitMix64| pool[(rng.next_u64() % pool.len() as u64) as usize];
        let (a, c) = (pick(rng), pick(rng));
        let v = match rng.next_u64() % 5 {
            0 => b.add(format!("n{i}"), a, c),
            1 => b.mul(format!("n{i}"), a, c),
            2 => b.silu(format!("n{i}"), a),
            3 => b.scale(format!("n{i}"), a, 0.5),
            _ => b.softmax(format!("n{i}"), a),
        }
        .unwrap();
        pool.push(v);
    }
    // Join everything still unread, so every branch matters.
    let mut out = pool[pool.len() - 1];
    for (i, &v) in pool.iter().enumerate().skip(1).step_by(3) {
        out = b.add(format!("join{i}"), out, v).unwrap();
    }
    b.output(out).unwrap();
    (b.finish().unwrap(), x)
}

#[test]
fn random_dags_on_several_streams_give_the_single_stream_bits() {
    let mut rng = SplitMix64::new(17);
    for round in 0..40 {
        let (g, x) = random_dag(&mut rng);
        let streams = 2 + round % 3;
        let one = Session::new(g.clone(), []).unwrap();
        let many = Session::new(g.clone(), [])
            .unwrap()
            .with_streams(streams)
            .unwrap();
        let inputs = [(x, Tensor::F32(normal(5 * 48, round as u64)))];
        let syms = [("tokens", 5)];
        let want = one.run_eager(&syms, &inputs).unwrap();
        for run in 0..4 {
            assert_eq!(
                many.run_eager(&syms, &inputs).unwrap(),
                want,
                "{}",
                g.dump()
            );
            many.poison_graph_buffers(f32::NAN).unwrap();
            let got = many.run_graph(&syms, &inputs).unwrap();
            assert_eq!(
                got,
                want,
                "run {run}, {}\n{}",
                many.stream_plan().summary(),
                g.dump()
            );
        }
    }
}

#[test]
fn a_multi_stream_plan_never_shares_bytes_between_unordered_nodes() {
    let mut rng = SplitMix64::new(23);
    for round in 0..200 {
        let (g, _) = random_dag(&mut rng);
        let streams = g.assign_streams(1 + round % 4);
        let order = streams.order();
        let plan = g
            .plan_memory_ordered(&[("tokens", 1 + round % 40)], &order)
            .unwrap();
        // Every node that touches a value: its producer and its readers.
        let touched = |v: exodus_graph::ValueId| -> Vec<usize> {
            let mut t: Vec<usize> = g
                .nodes()
                .iter()
                .enumerate()
                .filter(|(_, n)| n.inputs.contains(&v) || n.outputs.contains(&v))
                .map(|(i, _)| i)
                .collect();
            t.dedup();
            t
        };
        let slots: Vec<_> = plan.slots.iter().collect();
        for (i, (va, a)) in slots.iter().enumerate() {
            for (vb, b) in &slots[i + 1..] {
                let share = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
                if !share {
                    continue;
                }
                let (ta, tb) = (touched(**va), touched(**vb));
                // One value's every touch finishes before the other's first
                // (or the later one was computed in place over the other).
                let a_then_b = ta.iter().all(|&x| {
                    x == b.first && b.in_place_of == Some(**va) || order.happens_before(x, b.first)
                });
                let b_then_a = tb.iter().all(|&x| {
                    x == a.first && a.in_place_of == Some(**vb) || order.happens_before(x, a.first)
                });
                assert!(
                    a_then_b || b_then_a,
                    "{a:?} and {b:?} share bytes unordered ({})\n{}",
                    streams.summary(),
                    g.dump()
                );
            }
        }
    }
}
