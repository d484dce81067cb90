//! Stream assignment: chains stay on one stream, independent branches fork
//! and join with one wait each, one stream means no waits, the example
//! block fans its q/k/v projections out, users of a KV cache stay ordered,
//! and on random DAGs every dependency is ordered (same stream, or through
//! waits, transitively) by a set of waits none of which can go.

use exodus_graph::examples::{block, BlockDims};
use exodus_graph::{DType, Def, Graph, GraphBuilder, StreamPlan, ValueId};
use exodus_kernels::attention::{KvFormat, KvLayout};
use exodus_numerics::sample::SplitMix64;

/// Every dependency edge `(p, n)` of a graph, computed here on its own:
/// producers of n's inputs, and consecutive users of one state value.
fn edges(g: &Graph) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut last_user = vec![None; g.values().len()];
    for (n, node) in g.nodes().iter().enumerate() {
        for &v in &node.inputs {
            match g.values()[v.0 as usize].def {
                Def::Node { node: p, .. } => out.push((p.0 as usize, n)),
                Def::State => {
                    if let Some(p) = last_user[v.0 as usize].replace(n) {
                        out.push((p, n));
                    }
                }
                _ => {}
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `before[n][p]`: p is complete when n starts, by the plan's order alone
/// (stream order and waits, transitively).
fn happens_before(stream_of: &[usize], waits: &[Vec<usize>]) -> Vec<Vec<bool>> {
    let n = stream_of.len();
    let mut before = vec![vec![false; n]; n];
    let mut last_on: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        let prev = last_on[stream_of[i]].replace(i);
        for p in prev.into_iter().chain(waits[i].iter().copied()) {
            assert!(p < i, "node {i} is ordered after a later node {p}");
            let row = before[p].clone();
            before[i][p] = true;
            for (q, &b) in row.iter().enumerate() {
                before[i][q] |= b;
            }
        }
    }
    before
}

fn all_ordered(edges: &[(usize, usize)], before: &[Vec<bool>]) -> bool {
    edges.iter().all(|&(p, n)| before[n][p])
}

/// Everything a plan must satisfy for `g` at `max_streams`.
fn check(g: &Graph, plan: &StreamPlan, max_streams: usize) {
    let n = g.nodes().len();
    let ctx = || format!("{}\n{plan:?}", g.dump());
    assert_eq!(plan.stream_of.len(), n, "{}", ctx());
    assert_eq!(plan.waits.len(), n, "{}", ctx());
    if n > 0 {
        assert!(plan.streams >= 1, "{}", ctx());
    }
    assert!(plan.streams <= max_streams.max(1), "{}", ctx());
    for s in 0..plan.streams {
        assert!(plan.stream_of.contains(&s), "stream {s} unused\n{}", ctx());
    }
    for (i, w) in plan.waits.iter().enumerate() {
        assert!(plan.stream_of[i] < plan.streams, "{}", ctx());
        assert!(w.windows(2).all(|p| p[0] < p[1]), "{}", ctx());
        for &p in w {
            assert!(p < i, "node {i} waits on later node {p}\n{}", ctx());
            assert_ne!(plan.stream_of[p], plan.stream_of[i], "{}", ctx());
        }
    }
    let edges = edges(g);
    let before = happens_before(&plan.stream_of, &plan.waits);
    for &(p, m) in &edges {
        assert!(p < m);
        assert!(before[m][p], "edge {p} -> {m} is not ordered\n{}", ctx());
    }
    // Minimal: without any one wait, some dependency is left unordered.
    for i in 0..n {
        for k in 0..plan.waits[i].len() {
            let mut waits = plan.waits.clone();
            let dropped = waits[i].remove(k);
            assert!(
                !all_ordered(&edges, &happens_before(&plan.stream_of, &waits)),
                "wait of node {i} on {dropped} is redundant\n{}",
                ctx()
            );
        }
    }
    assert!(plan.critical_path <= plan.span, "{}", ctx());
    assert!(plan.span <= n, "{}", ctx());
    if plan.streams <= 1 {
        assert_eq!(plan.span, n, "{}", ctx());
    }
    assert_eq!(plan.tails().len(), plan.streams);
}

#[test]
fn a_chain_stays_on_one_stream() {
    let mut b = GraphBuilder::new("chain");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 8));
    let a = b.silu("a", x).unwrap();
    let c = b.scale("c", a, 0.5).unwrap();
    let d = b.add("d", c, x).unwrap();
    let e = b.softmax("e", d).unwrap();
    b.output(e).unwrap();
    let g = b.finish().unwrap();
    let plan = g.assign_streams(4);
    check(&g, &plan, 4);
    assert_eq!(plan.streams, 1);
    assert_eq!(plan.stream_of, vec![0; 4]);
    assert_eq!(plan.wait_count(), 0);
    assert_eq!((plan.critical_path, plan.span), (4, 4));
    assert_eq!(
        plan.summary(),
        "1 stream, 0 cross-stream waits, critical path 4 of 4 nodes, span 4 steps"
    );
}

/// Two independent chains of two nodes over `x`, joined by an add.
fn two_branches() -> Graph {
    let mut b = GraphBuilder::new("branches");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 8));
    let a1 = b.silu("a1", x).unwrap();
    let a2 = b.scale("a2", a1, 2.0).unwrap();
    let b1 = b.gelu("b1", x, true).unwrap();
    let b2 = b.scale("b2", b1, 0.5).unwrap();
    let y = b.add("join", a2, b2).unwrap();
    b.output(y).unwrap();
    b.finish().unwrap()
}

#[test]
fn independent_branches_run_on_two_streams_and_join_with_one_wait() {
    let g = two_branches();
    let plan = g.assign_streams(4);
    check(&g, &plan, 4);
    assert_eq!(plan.streams, 2);
    assert_eq!(plan.stream_of, vec![0, 0, 1, 1, 0]);
    assert_eq!(plan.wait_count(), 1);
    assert_eq!(plan.waits[4], vec![3]);
    assert_eq!((plan.critical_path, plan.span), (3, 3));
    assert_eq!(plan.tails(), vec![4, 3]);
    println!("two branches: {}", plan.summary());
}

#[test]
fn one_stream_means_no_waits() {
    let g = two_branches();
    for max in [0, 1] {
        let plan = g.assign_streams(max);
        check(&g, &plan, max);
        assert_eq!(plan.streams, 1);
        assert_eq!(plan.stream_of, vec![0; 5]);
        assert_eq!(plan.wait_count(), 0);
        assert_eq!(plan.span, 5);
    }
}

#[test]
fn an_empty_graph_uses_no_stream() {
    let g = Graph::from_parts("empty", vec![], vec![], vec![], vec![]);
    let plan = g.assign_streams(4);
    assert_eq!(plan, StreamPlan::default());
    assert_eq!(plan.streams, 0);
    assert!(plan.stream_of.is_empty() && plan.waits.is_empty());
    assert!(plan.tails().is_empty());
    println!("empty: {}", plan.summary());
}

#[test]
fn the_example_block_fans_out_q_k_v() {
    let g = block(
        BlockDims::SMOLLM2_135M,
        "q4_1".parse().unwrap(),
        KvFormat::Bf16,
    )
    .unwrap();
    let at = |name: &str| g.nodes().iter().position(|n| n.name == name).unwrap();
    for max in 1..=4 {
        let plan = g.assign_streams(max);
        check(&g, &plan, max);
        println!("block, max {max} streams: {}", plan.summary());
        if max >= 3 {
            let (q, k, v) = (at("attn_q"), at("attn_k"), at("attn_v"));
            let s = &plan.stream_of;
            assert!(s[q] != s[k] && s[k] != s[v] && s[q] != s[v], "{plan:?}");
            assert!(plan.span < g.nodes().len(), "{plan:?}");
        }
    }
}

#[test]
fn users_of_one_kv_cache_stay_ordered() {
    const HD: usize = 32;
    let layout = KvLayout::new(4, 2, HD, KvFormat::Bf16).unwrap();
    let mut b = GraphBuilder::new("two_attn");
    let t = b.symbol("tokens");
    let q = b.input("q", DType::F32, (t, 4 * HD));
    let k = b.input("k", DType::F32, (t, 2 * HD));
    let v = b.input("v", DType::F32, (t, 2 * HD));
    let cache = b.state("kv", DType::KvCache(layout), (4,));
    let table = b.input("table", DType::U32, (4,));
    let start = b.input("start", DType::U32, (1,));
    let o1 = b
        .attention("attn1", q, k, v, cache, table, start, 4, None)
        .unwrap();
    // An independent branch into a second attention over the same cache:
    // it must not run concurrently with the first.
    let q2 = b.scale("q2", q, 0.5).unwrap();
    let o2 = b
        .attention("attn2", q2, k, v, cache, table, start, 4, None)
        .unwrap();
    let y = b.add("y", o1, o2).unwrap();
    b.output(y).unwrap();
    let g = b.finish().unwrap();
    let plan = g.assign_streams(4);
    check(&g, &plan, 4);
    let before = happens_before(&plan.stream_of, &plan.waits);
    assert!(before[2][0], "{plan:?}");
    assert_eq!(plan.streams, 2, "{plan:?}");
    println!("two attentions: {}", plan.summary());
}

/// A random DAG of elementwise ops over two inputs and a pool of earlier
/// values, with dead branches and repeats.
fn random_graph(rng: &mut SplitMix64) -> Graph {
    let mut b = GraphBuilder::new("random");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, 16));
    let z = b.input("z", DType::F32, (t, 16));
    let mut pool: Vec<ValueId> = vec![x, z];
    let n = 1 + (rng.next_u64() % 30) as usize;
    for i in 0..n {
        // Lean towards recent values, so there are chains as well as forks.
        let pick = |rng: &mut SplitMix64, pool: &[ValueId]| {
            let back = (rng.next_u64() % pool.len() as u64) as usize;
            let back = if rng.next_u64().is_multiple_of(2) {
                back.min(2)
            } else {
                back
            };
            pool[pool.len() - 1 - back]
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
    b.output(pool[pool.len() - 1]).unwrap();
    b.finish().unwrap()
}

#[test]
fn random_dags_are_ordered_by_a_minimal_set_of_waits() {
    let mut rng = SplitMix64::new(11);
    let (mut forks, mut waits, mut nodes, mut span) = (0, 0, 0, 0);
    for _ in 0..400 {
        let g = random_graph(&mut rng);
        let max = 1 + (rng.next_u64() % 4) as usize;
        let plan = g.assign_streams(max);
        check(&g, &plan, max);
        // Deterministic.
        assert_eq!(plan, g.assign_streams(max));
        forks += usize::from(plan.streams > 1);
        waits += plan.wait_count();
        nodes += g.nodes().len();
        span += plan.span;
    }
    println!("random: {forks} of 400 plans fork, {waits} waits, span {span} of {nodes} nodes");
    assert!(forks > 100 && waits > 100 && span < nodes);
}
