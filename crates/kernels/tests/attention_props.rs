//! Paged attention against a naive f64 attention (full score matrix from
//! the dequantized cache) for every cache format and SIMD level, over
//! random shapes: block sizes 1, 3, 16; GQA groups 1 and 3; shuffled block
//! tables; prefixes and chunks that end mid-block. Also the quantization
//! error against the unquantized K/V, per format.

mod attention_util;
mod ops_util;

use attention_util::{build, dequantized, head_dims, naive, rms_rel};
use exodus_kernels::attention::{
    paged_attention_with, AttentionParams, KvFormat, KvLayout, SeqSpan,
};
use exodus_kernels::pool::ThreadPool;
use exodus_numerics::sample::SplitMix64;
use ops_util::{assert_close, levels, normal, range};

#[test]
fn matches_naive_attention_on_the_dequantized_cache() {
    let mut rng = SplitMix64::new(41);
    let pool = ThreadPool::new(2);
    for format in KvFormat::ALL {
        for case in 0..12 {
            let d = head_dims(format)[case % head_dims(format).len()];
            let bs = [1, 3, 16][case % 3];
            let n_kv = range(&mut rng, 1, 4);
            let n_heads = n_kv * [1, 3][case % 2];
            let layout = KvLayout::new(bs, n_kv, d, format).unwrap();
            let prefix = range(&mut rng, 0, 40);
            let n_q = range(&mut rng, 1, 12);
            let (cache, seqs) = build(&mut rng, layout, &[prefix + n_q]);
            let seq = &seqs[0];
            let q = normal(&mut rng, n_q * n_heads * d, 1.0);
            let (k, v) = dequantized(&cache, seq);
            let scale = 1.0 / (d as f64).sqrt();
            let want = naive(&q, &k, &v, prefix, (n_heads, n_kv, d), scale);
            let params = AttentionParams {
                n_heads,
                scale: None,
            };
            let span = SeqSpan {
                block_table: &seq.table,
                start_pos: prefix,
                n_q,
            };
            for level in levels() {
                let mut out = vec![0f32; q.len()];
                paged_attention_with(level, &pool, &cache, &[span], &q, &mut out, &params).unwrap();
                let what = format!("{format} {level:?} d {d} bs {bs} kv {n_kv} heads {n_heads} prefix {prefix} n_q {n_q}");
                assert_close(&out, &want, 1e-4, 2e-5, &what);
            }
        }
    }
}

#[test]
fn quantization_error_is_within_the_format_tolerance() {
    // RMS relative error of the attention output against attention on the
    // unquantized K/V (seeded data, so the numbers are fixed); the bounds
    // are ~2x what each format measured.
    let bounds = [
        (KvFormat::Bf16, 0.008),    // measured 0.0036
        (KvFormat::F16, 0.001),     // 0.0005
        (KvFormat::Fp8E4M3, 0.1),   // 0.056
        (KvFormat::Fp8E5M2, 0.2),   // 0.108
        (KvFormat::MxFp8E4M3, 0.1), // 0.056
        (KvFormat::MxFp4, 0.45),    // 0.238
    ];
    let mut rng = SplitMix64::new(42);
    let pool = ThreadPool::new(1);
    for (format, bound) in bounds {
        let (n_kv, n_heads, d) = (3, 9, 64);
        let layout = KvLayout::new(16, n_kv, d, format).unwrap();
        let (cache, seqs) = build(&mut rng, layout, &[200]);
        let seq = &seqs[0];
        let n_q = 8;
        let q = normal(&mut rng, n_q * n_heads * d, 2.0);
        let exact = naive(&q, &seq.k, &seq.v, 192, (n_heads, n_kv, d), 1.0 / 8.0);
        let mut out = vec![0f32; q.len()];
        let span = SeqSpan {
            block_table: &seq.table,
            start_pos: 192,
            n_q,
        };
        let params = AttentionParams {
            n_heads,
            scale: None,
        };
        let level = exodus_numerics::cpu::active();
        paged_attention_with(level, &pool, &cache, &[span], &q, &mut out, &params).unwrap();
        let err = rms_rel(&out, &exact);
        println!("{format}: rms relative error {err:.4}");
        assert!(err < bound, "{format}: rms relative error {err} >= {bound}");
        assert!(
            err > 0.0,
            "{format}: no error at all: was the cache quantized?"
        );
    }
}
