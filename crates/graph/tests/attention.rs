//! Attention over a paged KV cache as a graph op: the cache is session
//! state that persists across runs; a prefill chunk then a decode step give
//! exactly what the kernels give when called by hand, in eager and in
//! graph mode, and the passes never drop or merge the node.

use exodus_graph::{
    run_passes, CommonSubexpressions, DType, DeadCodeElimination, Graph, GraphBuilder, Session,
    Tensor, ValueId,
};
use exodus_kernels::attention::{
    paged_attention, AttentionParams, KvFormat, KvLayout, PagedKvCache, SeqSpan,
};
use exodus_numerics::sample::normal;

const HEADS: usize = 4;
const KV: usize = 2;
const HD: usize = 32;
const BLOCKS: usize = 4;
const BLOCK: usize = 4;

struct Ids {
    q: ValueId,
    k: ValueId,
    v: ValueId,
    table: ValueId,
    start: ValueId,
}

fn layout() -> KvLayout {
    KvLayout::new(BLOCK, KV, HD, KvFormat::Fp8E4M3).unwrap()
}

fn graph() -> (Graph, Ids) {
    let mut b = GraphBuilder::new("attn");
    let t = b.symbol("tokens");
    let q = b.input("q", DType::F32, (t, HEADS * HD));
    let k = b.input("k", DType::F32, (t, KV * HD));
    let v = b.input("v", DType::F32, (t, KV * HD));
    let cache = b.state("kv", DType::KvCache(layout()), (BLOCKS,));
    let table = b.input("table", DType::U32, (BLOCKS,));
    let start = b.input("start", DType::U32, (1,));
    let o = b
        .attention("attn", q, k, v, cache, table, start, HEADS)
        .unwrap();
    // A second, identical attention node would write the same rows again:
    // side effects are neither merged nor dropped.
    let y = b.scale("y", o, 1.0).unwrap();
    b.output(y).unwrap();
    (
        b.finish().unwrap(),
        Ids {
            q,
            k,
            v,
            table,
            start,
        },
    )
}

#[test]
fn prefill_then_decode_match_the_kernels_in_both_modes() {
    let (g, ids) = graph();
    let text = g.dump();
    assert!(
        text.contains("kv: kv_cache<fp8-e4m3, block 4, 2x32>[4] = state"),
        "{text}"
    );
    assert!(
        text.contains("= attention(") && text.contains("heads=4"),
        "{text}"
    );
    let mut opt = g.clone();
    run_passes(&mut opt, &[&CommonSubexpressions, &DeadCodeElimination]).unwrap();
    assert_eq!(opt.nodes().len(), g.nodes().len());
    let eager = Session::new(g.clone(), []).unwrap();
    let graph_mode = Session::new(opt, []).unwrap();
    // The kernels by hand, on their own cache.
    let mut cache = PagedKvCache::zeroed(layout(), BLOCKS).unwrap();
    let table: Vec<u32> = vec![2, 0, 3, 1];
    let params = AttentionParams {
        n_heads: HEADS,
        scale: None,
    };
    let mut start = 0usize;
    for (step, tokens) in [5usize, 1, 1, 3].into_iter().enumerate() {
        let q = normal(tokens * HEADS * HD, 10 + step as u64);
        let k = normal(tokens * KV * HD, 20 + step as u64);
        let v = normal(tokens * KV * HD, 30 + step as u64);
        cache.write(&table, start, &k, &v, tokens).unwrap();
        let mut want = vec![0f32; tokens * HEADS * HD];
        let seq = SeqSpan {
            block_table: &table,
            start_pos: start,
            n_q: tokens,
        };
        paged_attention(&cache, &[seq], &q, &mut want, &params).unwrap();
        let inputs = [
            (ids.q, Tensor::F32(q)),
            (ids.k, Tensor::F32(k)),
            (ids.v, Tensor::F32(v)),
            (ids.table, Tensor::U32(table.clone())),
            (ids.start, Tensor::U32(vec![start as u32])),
        ];
        let syms = [("tokens", tokens)];
        let got_eager = eager.run_eager(&syms, &inputs).unwrap();
        let got_graph = graph_mode.run_graph(&syms, &inputs).unwrap();
        assert_eq!(
            got_eager,
            vec![Tensor::F32(want.clone())],
            "eager, step {step}"
        );
        assert_eq!(got_graph, vec![Tensor::F32(want)], "graph, step {step}");
        start += tokens;
    }
    // Steps of 5, 1, 1 and 3 tokens: three buckets (1 is reused).
    assert_eq!(graph_mode.compiles(), 3);
}

#[test]
fn attention_misuse_is_refused() {
    let mut b = GraphBuilder::new("bad");
    let t = b.symbol("tokens");
    let q = b.input("q", DType::F32, (t, 3 * HD));
    let k = b.input("k", DType::F32, (t, KV * HD));
    let cache = b.state("kv", DType::KvCache(layout()), (BLOCKS,));
    let table = b.input("table", DType::U32, (BLOCKS,));
    let start = b.input("start", DType::U32, (1,));
    let msg = b
        .attention("a", q, k, k, cache, table, start, 3)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("3 query heads are not a multiple of the cache's 2 KV heads"),
        "{msg}"
    );
    let msg = b
        .attention("b", q, k, k, cache, table, start, 2)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("input 0 must be f32[tokens, 64]"), "{msg}");
    let msg = b
        .attention("c", k, k, k, q, table, start, 2)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("input 3 must be a KV cache"), "{msg}");
    // An out-of-range block id fails in the kernel: a typed error, and the
    // session can run again.
    let (g, ids) = graph();
    let s = Session::new(g, []).unwrap();
    let run = |table: Vec<u32>| {
        let inputs = [
            (ids.q, Tensor::F32(vec![0.1; HEADS * HD])),
            (ids.k, Tensor::F32(vec![0.1; KV * HD])),
            (ids.v, Tensor::F32(vec![0.1; KV * HD])),
            (ids.table, Tensor::U32(table)),
            (ids.start, Tensor::U32(vec![0])),
        ];
        s.run_eager(&[("tokens", 1)], &inputs)
    };
    let err = run(vec![9, 0, 1, 2]).unwrap_err().to_string();
    assert!(err.contains("attn"), "{err}");
    assert!(run(vec![0, 1, 2, 3]).is_ok());
}
