//! What attention over the paged cache must mean, checked exactly: GQA
//! head mapping, block tables in any order, decode as the last row of a
//! prefill, chunked prefill as one prefill, a batch as its sequences, and
//! typed errors for every malformed call.

mod attention_util;
mod ops_util;

use attention_util::{build, shuffled};
use exodus_kernels::attention::{
    attention_decode, attention_prefill, paged_attention_with, AttentionParams, KvFormat, KvLayout,
    KvPart, PagedKvCache, SeqSpan,
};
use exodus_kernels::pool::ThreadPool;
use exodus_kernels::KernelError;
use exodus_numerics::sample::SplitMix64;
use ops_util::{levels, normal};

fn params(n_heads: usize) -> AttentionParams {
    AttentionParams {
        n_heads,
        scale: None,
    }
}

#[test]
fn query_heads_read_their_group_kv_head() {
    // V of KV head h is the constant h + 1: every output of query head q
    // must be q / group + 1, whatever the scores.
    let mut rng = SplitMix64::new(51);
    for (n_heads, n_kv) in [(6, 1), (6, 2), (6, 3), (6, 6), (9, 3)] {
        let d = 32;
        let layout = KvLayout::new(4, n_kv, d, KvFormat::Bf16).unwrap();
        let len = 11;
        let mut cache = PagedKvCache::zeroed(layout, 3).unwrap();
        let table = [2, 0, 1];
        let k = normal(&mut rng, len * n_kv * d, 1.0);
        let v: Vec<f32> = (0..len * n_kv * d)
            .map(|i| ((i / d) % n_kv + 1) as f32)
            .collect();
        cache.write(&table, 0, &k, &v, len).unwrap();
        let q = normal(&mut rng, 2 * n_heads * d, 1.0);
        for level in levels() {
            let mut out = vec![0f32; q.len()];
            let span = SeqSpan {
                block_table: &table,
                start_pos: len - 2,
                n_q: 2,
            };
            paged_attention_with(
                level,
                &ThreadPool::new(2),
                &cache,
                &[span],
                &q,
                &mut out,
                &params(n_heads),
            )
            .unwrap();
            for (c, &y) in out.iter().enumerate() {
                let head = (c / d) % n_heads;
                let want = (head / (n_heads / n_kv) + 1) as f32;
                assert!(
                    (y - want).abs() < 1e-5,
                    "{level:?} heads {n_heads}/{n_kv} head {head}: {y}"
                );
            }
        }
    }
}

#[test]
fn block_order_in_the_pool_does_not_matter() {
    let mut rng = SplitMix64::new(52);
    for format in KvFormat::ALL {
        let (n_kv, d, bs, len) = (2, 64, 5, 23);
        let layout = KvLayout::new(bs, n_kv, d, format).unwrap();
        let k = normal(&mut rng, len * n_kv * d, 1.0);
        let v = normal(&mut rng, len * n_kv * d, 1.0);
        let q = normal(&mut rng, 3 * 4 * d, 1.0);
        let mut outs = Vec::new();
        for table in [
            vec![0u32, 1, 2, 3, 4],
            shuffled(&mut rng, 5),
            vec![4, 3, 2, 1, 0],
        ] {
            let mut cache = PagedKvCache::zeroed(layout, 5).unwrap();
            cache.write(&table, 0, &k, &v, len).unwrap();
            let mut out = vec![0f32; q.len()];
            attention_prefill(&cache, &table, len - 3, 3, &q, &mut out, &params(4)).unwrap();
            outs.push(out);
        }
        assert_eq!(outs[0], outs[1], "{format}");
        assert_eq!(outs[0], outs[2], "{format}");
    }
}

#[test]
fn decode_is_the_last_row_of_prefill_and_chunks_compose() {
    let mut rng = SplitMix64::new(53);
    for format in KvFormat::ALL {
        let (n_kv, n_heads, d) = (3, 9, 64);
        let layout = KvLayout::new(16, n_kv, d, format).unwrap();
        let (cache, seqs) = build(&mut rng, layout, &[37]);
        let t = &seqs[0].table;
        let row = n_heads * d;
        let q = normal(&mut rng, 37 * row, 1.0);
        let p = params(n_heads);
        for level in levels() {
            let pool = ThreadPool::new(3);
            let run = |start: usize, n: usize| {
                let mut out = vec![0f32; n * row];
                let span = SeqSpan {
                    block_table: t,
                    start_pos: start,
                    n_q: n,
                };
                paged_attention_with(
                    level,
                    &pool,
                    &cache,
                    &[span],
                    &q[start * row..(start + n) * row],
                    &mut out,
                    &p,
                )
                .unwrap();
                out
            };
            let whole = run(0, 37);
            let decode = run(36, 1);
            assert_eq!(decode[..], whole[36 * row..], "{format} {level:?} decode");
            let parts = [run(0, 5), run(5, 16), run(21, 16)].concat();
            assert_eq!(parts, whole, "{format} {level:?} chunks");
            // The first token sees only itself: its output is its own V.
            let mut v0 = vec![0f32; d];
            for h in 0..n_heads {
                cache.read_row(t, 0, KvPart::Value, h / 3, &mut v0).unwrap();
                assert_eq!(whole[h * d..(h + 1) * d], v0[..], "{format} head {h}");
            }
        }
        // The convenience entry point agrees.
        let mut out = vec![0f32; row];
        attention_decode(&cache, t, 20, &q[20 * row..21 * row], &mut out, &p).unwrap();
        let mut want = vec![0f32; row];
        let span = SeqSpan {
            block_table: t,
            start_pos: 20,
            n_q: 1,
        };
        let level = exodus_numerics::cpu::active();
        paged_attention_with(
            level,
            &ThreadPool::new(1),
            &cache,
            &[span],
            &q[20 * row..21 * row],
            &mut want,
            &p,
        )
        .unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn a_batch_equals_its_sequences_one_by_one() {
    let mut rng = SplitMix64::new(54);
    let (n_kv, n_heads, d) = (2, 4, 32);
    let layout = KvLayout::new(8, n_kv, d, KvFormat::MxFp4).unwrap();
    let lens = [30, 1, 17, 9];
    let (cache, seqs) = build(&mut rng, layout, &lens);
    // Decode for two, prefill chunks for the others, one empty span.
    let spans: Vec<SeqSpan> = seqs
        .iter()
        .zip([(29, 1), (0, 1), (10, 7), (9, 0)])
        .map(|(s, (start, n))| SeqSpan {
            block_table: &s.table,
            start_pos: start,
            n_q: n,
        })
        .collect();
    let tokens: usize = spans.iter().map(|s| s.n_q).sum();
    let row = n_heads * d;
    let q = normal(&mut rng, tokens * row, 1.0);
    let p = params(n_heads);
    for level in levels() {
        let pool = ThreadPool::new(4);
        let mut batched = vec![0f32; q.len()];
        paged_attention_with(level, &pool, &cache, &spans, &q, &mut batched, &p).unwrap();
        let mut t0 = 0;
        for s in &spans {
            let mut one = vec![0f32; s.n_q * row];
            let qs = &q[t0 * row..(t0 + s.n_q) * row];
            paged_attention_with(level, &ThreadPool::new(1), &cache, &[*s], qs, &mut one, &p)
                .unwrap();
            assert_eq!(batched[t0 * row..(t0 + s.n_q) * row], one[..], "{level:?}");
            t0 += s.n_q;
        }
    }
}

#[test]
fn malformed_calls_are_typed_errors() {
    let layout = KvLayout::new(4, 2, 32, KvFormat::Fp8E4M3).unwrap();
    let mut cache = PagedKvCache::zeroed(layout, 3).unwrap();
    let kv = vec![0.5f32; 6 * 2 * 32];
    cache.write(&[0, 1], 0, &kv, &kv, 6).unwrap();
    let q = vec![0f32; 4 * 32];
    let mut out = vec![0f32; 4 * 32];
    let p = params(4);
    let shape = |r| matches!(r, Err(KernelError::BadShape { .. }));
    let range = |r, what: &str| matches!(r, Err(KernelError::OutOfRange { what: w, .. }) if w.starts_with(what));
    // Query heads not a multiple of KV heads, or zero.
    assert!(shape(attention_decode(
        &cache,
        &[0, 1],
        5,
        &q[..96],
        &mut out[..96],
        &params(3)
    )));
    assert!(shape(attention_decode(
        &cache,
        &[0, 1],
        5,
        &q,
        &mut out,
        &params(0)
    )));
    // Lengths.
    assert!(matches!(
        attention_decode(&cache, &[0, 1], 5, &q[..100], &mut out, &p),
        Err(KernelError::LengthMismatch { what: "q", .. })
    ));
    assert!(matches!(
        attention_prefill(&cache, &[0, 1], 4, 2, &q, &mut out, &p),
        Err(KernelError::LengthMismatch { .. })
    ));
    // Block id beyond the pool; block table too short for the position.
    assert!(range(
        attention_decode(&cache, &[0, 3], 5, &q, &mut out, &p),
        "block id"
    ));
    assert!(range(
        attention_decode(&cache, &[0, 1], 8, &q, &mut out, &p),
        "logical block"
    ));
    assert!(range(
        attention_decode(&cache, &[], 0, &q, &mut out, &p),
        "logical block"
    ));
    let nan_scale = AttentionParams {
        n_heads: 4,
        scale: Some(f32::NAN),
    };
    assert!(shape(attention_decode(
        &cache,
        &[0, 1],
        5,
        &q,
        &mut out,
        &nan_scale
    )));
    // Positions that overflow.
    assert!(shape(attention_decode(
        &cache,
        &[0, 1],
        usize::MAX,
        &q,
        &mut out,
        &p
    )));

    // Writes: a bad id anywhere leaves the cache untouched.
    let before = cache.pool().to_vec();
    let new = vec![9.0f32; 3 * 2 * 32];
    assert!(range(cache.write(&[0, 1, 7], 6, &new, &new, 3), "block id"));
    assert!(range(cache.write(&[0], 3, &new, &new, 3), "logical block"));
    assert!(matches!(
        cache.write(&[0, 1], 0, &new[..10], &new, 3),
        Err(KernelError::LengthMismatch { what: "k", .. })
    ));
    assert_eq!(cache.pool(), &before[..]);
    // Reads.
    let mut row = vec![0f32; 32];
    assert!(range(
        cache.read_row(&[0, 1], 1, KvPart::Key, 2, &mut row),
        "kv head"
    ));
    assert!(range(
        cache.read_row(&[0, 1], 8, KvPart::Key, 0, &mut row),
        "logical block"
    ));

    // Layouts: MX needs head_dim % 32 == 0; sizes positive; whole blocks.
    assert!(shape(KvLayout::new(16, 2, 48, KvFormat::MxFp4).map(|_| ())));
    assert!(shape(KvLayout::new(0, 2, 64, KvFormat::Bf16).map(|_| ())));
    assert!(shape(KvLayout::new(16, 0, 64, KvFormat::Bf16).map(|_| ())));
    assert!(shape(
        PagedKvCache::new(layout, vec![0u8; layout.block_bytes() + 1]).map(|_| ())
    ));
    assert!(PagedKvCache::new(layout, &mut [0u8; 0][..]).is_ok());
    assert!(matches!(
        "q4_0".parse::<KvFormat>(),
        Err(KernelError::UnsupportedFormat { .. })
    ));
    assert_eq!(
        "mxfp8-e4m3".parse::<KvFormat>().unwrap(),
        KvFormat::MxFp8E4M3
    );
}

#[test]
fn written_rows_read_back_as_the_format_quantizes_them() {
    let mut rng = SplitMix64::new(55);
    for format in KvFormat::ALL {
        let layout = KvLayout::new(3, 2, 64, format).unwrap();
        let (cache, seqs) = build(&mut rng, layout, &[10]);
        let s = &seqs[0];
        let mut got = vec![0f32; 64];
        for pos in [0, 2, 3, 9] {
            for h in 0..2 {
                let at = (pos * 2 + h) * 64;
                for (part, src) in [(KvPart::Key, &s.k), (KvPart::Value, &s.v)] {
                    let want = format
                        .format()
                        .dequantize(
                            &format
                                .format()
                                .quantize(&src[at..at + 64], &Default::default())
                                .unwrap(),
                            64,
                        )
                        .unwrap();
                    cache.read_row(&s.table, pos, part, h, &mut got).unwrap();
                    assert_eq!(got, want, "{format} pos {pos} head {h} {part:?}");
                }
            }
        }
    }
}
