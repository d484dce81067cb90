//! Attention over a paged KV cache as a graph op: the cache is session
//! state that persists across runs; a prefill chunk then a decode step give
//! exactly what the kernels give when called by hand, in eager and in
//! graph mode, and the passes never drop or merge the node.

use exodus_graph::{
    rope_table, run_passes, AttentionCentering, CommonSubexpressions, DType, DeadCodeElimination,
    Graph, GraphBuilder, KvCentered, Session, Tensor, ValueId,
};
use exodus_kernels::attention::{
    paged_attention_centered, AttentionParams, KvCentering, KvFormat, KvLayout, PagedKvCache,
    SeqSpan,
};
use exodus_kernels::ops::RopeStyle;
use exodus_kernels::pool;
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

/// Offsets of a centered cache (values that make the rows' offsets
/// visible): key means, value means and a RoPE table of BLOCKS * BLOCK
/// positions.
fn offsets() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let k_mean = normal(KV * HD, 91).iter().map(|x| x * 5.0).collect();
    let v_mean = normal(KV * HD, 92);
    (
        k_mean,
        v_mean,
        rope_table(10000.0, HD, BLOCKS * BLOCK, RopeStyle::Interleaved),
    )
}

/// The attention graph, centered or not, and the centered one's weights.
fn graph(centered: bool) -> (Graph, Ids, Vec<(ValueId, Tensor)>) {
    let mut b = GraphBuilder::new("attn");
    let t = b.symbol("tokens");
    let q = b.input("q", DType::F32, (t, HEADS * HD));
    let k = b.input("k", DType::F32, (t, KV * HD));
    let v = b.input("v", DType::F32, (t, KV * HD));
    let cache = b.state("kv", DType::KvCache(layout()), (BLOCKS,));
    let table = b.input("table", DType::U32, (BLOCKS,));
    let start = b.input("start", DType::U32, (1,));
    let mut weights = Vec::new();
    let centering = centered.then(|| {
        let (k_mean, v_mean, rope) = offsets();
        let c = AttentionCentering {
            k_mean: b.weight("k_mean", DType::F32, (KV * HD,)),
            v_mean: b.weight("v_mean", DType::F32, (KV * HD,)),
            rope: b.weight("rope", DType::F32, (BLOCKS * BLOCK, 2 * HD)),
            how: KvCentered { neox: false },
        };
        weights = vec![
            (c.k_mean, Tensor::F32(k_mean)),
            (c.v_mean, Tensor::F32(v_mean)),
            (c.rope, Tensor::F32(rope)),
        ];
        c
    });
    let o = b
        .attention("attn", q, k, v, cache, table, start, HEADS, centering)
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
        weights,
    )
}

#[test]
fn prefill_then_decode_match_the_kernels_in_both_modes() {
    prefill_then_decode(false);
}

#[test]
fn a_centered_cache_matches_the_centered_kernels_in_both_modes() {
    prefill_then_decode(true);
}

fn prefill_then_decode(centered: bool) {
    let (g, ids, weights) = graph(centered);
    let text = g.dump();
    assert!(
        text.contains("kv: kv_cache<fp8-e4m3, block 4, 2x32>[4] = state"),
        "{text}"
    );
    let attrs = if centered {
        "heads=4 centered=interleaved"
    } else {
        "heads=4"
    };
    assert!(
        text.contains("= attention(") && text.contains(attrs),
        "{text}"
    );
    let mut opt = g.clone();
    run_passes(&mut opt, &[&CommonSubexpressions, &DeadCodeElimination]).unwrap();
    assert_eq!(opt.nodes().len(), g.nodes().len());
    let eager = Session::new(g.clone(), weights.clone()).unwrap();
    let graph_mode = Session::new(opt, weights).unwrap();
    // The kernels by hand, on their own cache.
    let mut cache = PagedKvCache::zeroed(layout(), BLOCKS).unwrap();
    let table: Vec<u32> = vec![2, 0, 3, 1];
    let params = AttentionParams {
        n_heads: HEADS,
        scale: None,
    };
    let (k_mean, v_mean, rope) = offsets();
    let centering =
        KvCentering::new(&layout(), &k_mean, &v_mean, &rope, RopeStyle::Interleaved).unwrap();
    let centering = centered.then_some(&centering);
    let mut start = 0usize;
    for (step, tokens) in [5usize, 1, 1, 3].into_iter().enumerate() {
        let q = normal(tokens * HEADS * HD, 10 + step as u64);
        let k = normal(tokens * KV * HD, 20 + step as u64);
        let v = normal(tokens * KV * HD, 30 + step as u64);
        cache
            .write_centered(&table, start, &k, &v, tokens, centering)
            .unwrap();
        let mut want = vec![0f32; tokens * HEADS * HD];
        let seq = SeqSpan {
            block_table: &table,
            start_pos: start,
            n_q: tokens,
        };
        let (level, pool) = (exodus_numerics::cpu::active(), pool::global());
        paged_attention_centered(
            level,
            pool,
            &cache,
            centering,
            &[seq],
            &q,
            &mut want,
            &params,
        )
        .unwrap();
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
        .attention("a", q, k, k, cache, table, start, 3, None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("3 query heads are not a multiple of the cache's 2 KV heads"),
        "{msg}"
    );
    let msg = b
        .attention("b", q, k, k, cache, table, start, 2, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("input 0 must be f32[tokens, 64]"), "{msg}");
    let msg = b
        .attention("c", k, k, k, q, table, start, 2, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("input 3 must be a KV cache"), "{msg}");
    // A centering whose offsets do not fit the cache's heads.
    let short = b.weight("short", DType::F32, (KV * HD - 1,));
    let rope = b.weight("rope", DType::F32, (BLOCKS * BLOCK, 2 * HD));
    let cache = b.state("kv2", DType::KvCache(layout()), (BLOCKS,));
    let centering = AttentionCentering {
        k_mean: short,
        v_mean: short,
        rope,
        how: KvCentered { neox: false },
    };
    let v = b.input("v2", DType::F32, (t, KV * HD));
    let msg = b
        .attention("d", q, v, v, cache, table, start, HEADS, Some(centering))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("k_mean must be f32[64]"), "{msg}");
    // An out-of-range block id fails in the kernel: a typed error, and the
    // session can run again.
    let (g, ids, _) = graph(false);
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

/// Three sequences of one step (a decode token and two prefill chunks at
/// different positions) through `attention_batch`, against each run alone
/// through `attention` over its own blocks: the same bits, eager and
/// replayed; lengths that do not add up are a typed error.
#[test]
fn a_batch_of_sequences_attends_like_each_sequence_alone() {
    const SEQ_BLOCKS: usize = 8;
    let pool_blocks = 3 * SEQ_BLOCKS;
    let layout = KvLayout::new(BLOCK, KV, HD, KvFormat::F16).unwrap();
    let mut b = GraphBuilder::new("batch");
    let t = b.symbol("tokens");
    let s = b.symbol("seqs");
    let q = b.input("q", DType::F32, (t, HEADS * HD));
    let k = b.input("k", DType::F32, (t, KV * HD));
    let v = b.input("v", DType::F32, (t, KV * HD));
    let cache = b.state("kv", DType::KvCache(layout), (pool_blocks,));
    let tables = b.input("tables", DType::U32, (s, SEQ_BLOCKS));
    let starts = b.input("starts", DType::U32, (s,));
    let lens = b.input("lens", DType::U32, (s,));
    let out = b
        .attention_batch("attn", q, k, v, cache, tables, starts, lens, HEADS, None)
        .unwrap();
    b.output(out).unwrap();
    let batch = b.finish().unwrap();
    assert!(batch.dump().contains("attention_batch("));

    let mut b = GraphBuilder::new("one");
    let t1 = b.symbol("tokens");
    let q1 = b.input("q", DType::F32, (t1, HEADS * HD));
    let k1 = b.input("k", DType::F32, (t1, KV * HD));
    let v1 = b.input("v", DType::F32, (t1, KV * HD));
    let cache1 = b.state("kv", DType::KvCache(layout), (pool_blocks,));
    let table1 = b.input("table", DType::U32, (SEQ_BLOCKS,));
    let start1 = b.input("start", DType::U32, (1,));
    let out1 = b
        .attention("attn", q1, k1, v1, cache1, table1, start1, HEADS, None)
        .unwrap();
    b.output(out1).unwrap();
    let single = b.finish().unwrap();

    // (start, len) per sequence; sequence i owns blocks i*8 .. i*8+8.
    let seqs = [(5usize, 1usize), (0, 6), (9, 4)];
    let total: usize = seqs.iter().map(|s| s.1).sum();
    let (qd, kd, vd) = (
        normal(total * HEADS * HD, 1),
        normal(total * KV * HD, 2),
        normal(total * KV * HD, 3),
    );
    let table_of = |i: usize| (i * SEQ_BLOCKS..(i + 1) * SEQ_BLOCKS).map(|b| b as u32);
    let mut want = Vec::new();
    let alone = Session::new(single, []).unwrap();
    let mut row = 0;
    for (i, &(start, len)) in seqs.iter().enumerate() {
        let cut = |d: &[f32], w: usize| Tensor::F32(d[row * w..(row + len) * w].to_vec());
        let inputs = [
            (q1, cut(&qd, HEADS * HD)),
            (k1, cut(&kd, KV * HD)),
            (v1, cut(&vd, KV * HD)),
            (table1, Tensor::U32(table_of(i).collect())),
            (start1, Tensor::U32(vec![start as u32])),
        ];
        match &alone.run_eager(&[("tokens", len)], &inputs).unwrap()[0] {
            Tensor::F32(o) => want.extend_from_slice(o),
            other => panic!("{other:?}"),
        }
        row += len;
    }
    let inputs = |lens_data: Vec<u32>| {
        vec![
            (q, Tensor::F32(qd.clone())),
            (k, Tensor::F32(kd.clone())),
            (v, Tensor::F32(vd.clone())),
            (tables, Tensor::U32((0..3).flat_map(table_of).collect())),
            (
                starts,
                Tensor::U32(seqs.iter().map(|s| s.0 as u32).collect()),
            ),
            (lens, Tensor::U32(lens_data)),
        ]
    };
    let syms = [("tokens", total), ("seqs", 3)];
    let good = inputs(seqs.iter().map(|s| s.1 as u32).collect());
    let session = Session::new(batch.clone(), []).unwrap();
    assert_eq!(
        session.run_eager(&syms, &good).unwrap(),
        vec![Tensor::F32(want.clone())]
    );
    let replayed = Session::new(batch, []).unwrap();
    replayed.run_graph(&syms, &good).unwrap();
    replayed.poison_graph_buffers(f32::NAN).unwrap();
    assert_eq!(
        replayed.run_graph(&syms, &good).unwrap(),
        vec![Tensor::F32(want)]
    );
    let err = session
        .run_eager(&syms, &inputs(vec![1, 6, 3]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("sum to 10, the step has 11 tokens"),
        "{err}"
    );
}

#[test]
fn batched_attention_misuse_is_refused_by_name() {
    let layout = KvLayout::new(BLOCK, KV, HD, KvFormat::F16).unwrap();
    let mut b = GraphBuilder::new("bad");
    let t = b.symbol("tokens");
    let s = b.symbol("seqs");
    let q = b.input("q", DType::F32, (t, HEADS * HD));
    let k = b.input("k", DType::F32, (t, KV * HD));
    let v = b.input("v", DType::F32, (t, KV * HD));
    let cache = b.state("kv", DType::KvCache(layout), (8,));
    let tables = b.input("tables", DType::U32, (s, 4));
    let starts = b.input("starts", DType::U32, (s,));
    let flat = b.input("flat", DType::U32, (4,));
    let other = b.input("other", DType::U32, (t,));
    for (tables, lens, want) in [
        (flat, starts, "block tables must be u32[seqs, blocks]"),
        (tables, other, "lens must be u32[seqs]"),
    ] {
        let err = b
            .attention_batch(
                "blk.3.attention",
                q,
                k,
                v,
                cache,
                tables,
                starts,
                lens,
                HEADS,
                None,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blk.3.attention") && err.contains(want),
            "{err}"
        );
    }
}
