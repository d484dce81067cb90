//! A cache written with a [`KvCentering`] and read with the same one gives
//! the attention of the uncentered K/V: exactly what the format's rounding
//! of the centered rows allows, and for keys with large per-channel offsets
//! (as Llama-family keys have) far closer than the uncentered cache.

mod attention_util;
mod ops_util;

use attention_util::{naive, rms_rel, shuffled};
use exodus_kernels::attention::{
    paged_attention_centered, rope_table, AttentionParams, KvCentering, KvFormat, KvLayout,
    PagedKvCache, SeqSpan,
};
use exodus_kernels::ops::{rope_with, RopeParams, RopeStyle};
use exodus_kernels::pool::ThreadPool;
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::sample::SplitMix64;
use ops_util::{levels, normal};

const THETA: f32 = 100000.0;

/// Keys as a model makes them: a per-channel offset plus noise, turned by
/// RoPE at each position; values: an offset plus noise. Returns (k, v,
/// k_mean, v_mean), rows `[len, n_kv, d]`.
fn offset_rows(
    rng: &mut SplitMix64,
    len: usize,
    n_kv: usize,
    d: usize,
    style: RopeStyle,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = n_kv * d;
    let k_mean = normal(rng, width, 6.0);
    let v_mean = normal(rng, width, 2.0);
    let mut k: Vec<f32> = normal(rng, len * width, 1.0);
    let mut v: Vec<f32> = normal(rng, len * width, 1.0);
    for t in 0..len {
        for c in 0..width {
            k[t * width + c] += k_mean[c];
            v[t * width + c] += v_mean[c];
        }
    }
    let params = RopeParams {
        style,
        theta: THETA,
        rotary_dim: None,
    };
    let positions: Vec<u32> = (0..len as u32).collect();
    rope_with(SimdLevel::Scalar, &mut k, &positions, n_kv, d, &params).unwrap();
    (k, v, k_mean, v_mean)
}

/// Writes `k`/`v` in chunks through a shuffled block table, centered or
/// not, and runs attention of `q` (the last `n_q` positions) on `level`.
#[allow(clippy::too_many_arguments)]
fn attend(
    layout: KvLayout,
    centering: Option<&KvCentering<'_>>,
    k: &[f32],
    v: &[f32],
    q: &[f32],
    n_q: usize,
    n_heads: usize,
    level: SimdLevel,
) -> Vec<f32> {
    let width = layout.n_kv_heads() * layout.head_dim();
    let len = k.len() / width;
    let n_blocks = len.div_ceil(layout.block_size()) + 2;
    let table = shuffled(&mut SplitMix64::new(5), n_blocks);
    let mut cache = PagedKvCache::zeroed(layout, n_blocks).unwrap();
    for start in (0..len).step_by(7) {
        let n = 7.min(len - start);
        let rows = start * width..(start + n) * width;
        cache
            .write_centered(&table, start, &k[rows.clone()], &v[rows], n, centering)
            .unwrap();
    }
    let span = SeqSpan {
        block_table: &table,
        start_pos: len - n_q,
        n_q,
    };
    let params = AttentionParams {
        n_heads,
        scale: None,
    };
    let pool = ThreadPool::new(2);
    let mut out = vec![0f32; q.len()];
    paged_attention_centered(
        level,
        &pool,
        &cache,
        centering,
        &[span],
        q,
        &mut out,
        &params,
    )
    .unwrap();
    out
}

#[test]
fn centered_cache_gives_the_uncentered_attention_and_rounds_less() {
    let mut rng = SplitMix64::new(77);
    let (n_kv, n_heads, d, len, n_q) = (2, 6, 64, 90, 5);
    // (format, the centered error must be below, and at most this share
    // of the plain cache's error); bounds ~2x what each measured (f16
    // 0.00002, E4M3 0.0024 vs 0.0066 plain, MXFP8 0.0026 vs 0.0078,
    // MXFP4 0.0100 vs 0.0315)
    let cases = [
        (KvFormat::F16, 1e-4, 1.0),
        (KvFormat::Fp8E4M3, 0.005, 0.5),
        (KvFormat::MxFp8E4M3, 0.005, 0.5),
        (KvFormat::MxFp4, 0.02, 0.5),
    ];
    for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
        let (k, v, k_mean, v_mean) = offset_rows(&mut rng, len, n_kv, d, style);
        let q = normal(&mut rng, n_q * n_heads * d, 0.3);
        let exact = naive(&q, &k, &v, len - n_q, (n_heads, n_kv, d), 1.0 / 8.0);
        let rope = rope_table(THETA, d, len, style);
        for (format, bound, share) in cases {
            let layout = KvLayout::new(16, n_kv, d, format).unwrap();
            let centering = KvCentering::new(&layout, &k_mean, &v_mean, &rope, style).unwrap();
            for level in levels() {
                let plain = attend(layout, None, &k, &v, &q, n_q, n_heads, level);
                let centered = attend(layout, Some(&centering), &k, &v, &q, n_q, n_heads, level);
                let (e_plain, e_centered) = (rms_rel(&plain, &exact), rms_rel(&centered, &exact));
                let what = format!("{format} {style:?} {level:?}");
                println!("{what}: rms relative error plain {e_plain:.5}, centered {e_centered:.5}");
                assert!(e_centered < bound, "{what}: {e_centered} >= {bound}");
                if share < 1.0 {
                    assert!(
                        e_centered < share * e_plain,
                        "{what}: centered {e_centered} vs plain {e_plain}"
                    );
                }
            }
        }
    }
}

#[test]
fn positions_past_the_rope_table_are_typed_errors() {
    let layout = KvLayout::new(16, 1, 32, KvFormat::Fp8E4M3).unwrap();
    let zeros = vec![0f32; 32];
    let rope = rope_table(THETA, 32, 20, RopeStyle::NeoX);
    let c = KvCentering::new(&layout, &zeros, &zeros, &rope, RopeStyle::NeoX).unwrap();
    let mut cache = PagedKvCache::zeroed(layout, 2).unwrap();
    let row = vec![1f32; 32];
    let table = [0u32, 1];
    cache
        .write_centered(&table, 19, &row, &row, 1, Some(&c))
        .unwrap();
    let err = cache
        .write_centered(&table, 20, &row, &row, 1, Some(&c))
        .unwrap_err();
    assert!(err.to_string().contains("RoPE table"), "{err}");
    let span = SeqSpan {
        block_table: &table,
        start_pos: 20,
        n_q: 1,
    };
    let params = AttentionParams {
        n_heads: 1,
        scale: None,
    };
    let mut out = vec![0f32; 32];
    let pool = ThreadPool::new(1);
    let err = paged_attention_centered(
        SimdLevel::Scalar,
        &pool,
        &cache,
        Some(&c),
        &[span],
        &row,
        &mut out,
        &params,
    )
    .unwrap_err();
    assert!(err.to_string().contains("RoPE table"), "{err}");
}
