//! Paged decode-attention cases: one sequence, one query token, at
//! context 512 and 2048, with a bf16 and an FP8 (E4M3) KV cache in blocks
//! of 16 tokens, on the benchmark's pool; the FP8 cache also centered (its
//! key offsets added back to every row read, see `KvCentering`).
//!
//! Cost model: `4·n_heads·ctx·head_dim` FLOPs (q·k and p·v, a multiply
//! and an add each); bytes are the K and V rows of every KV head once in
//! the cache format (`2·n_kv_heads·ctx·row_bytes`) plus q in and out in
//! f32 (`8·n_heads·head_dim`).

use std::sync::Arc;

use exodus_numerics::sample;

use super::models::ModelShape;
use super::{Case, Options, Runner};
use crate::attention::{
    paged_attention_centered, rope_table, AttentionParams, KvCentering, KvFormat, KvLayout,
    PagedKvCache, SeqSpan,
};
use crate::ops::RopeStyle;

/// Tokens per cache block.
const BLOCK: usize = 16;

/// Every attention case of `model`.
pub(super) fn cases(model: &ModelShape, opts: &Options) -> Vec<Case> {
    let (nh, nkv, d) = (model.n_heads, model.n_kv_heads, model.head_dim);
    let mut out = Vec::new();
    for (format, centered) in [
        (KvFormat::Bf16, false),
        (KvFormat::Fp8E4M3, false),
        (KvFormat::Fp8E4M3, true),
    ] {
        let row_bytes = format.row_bytes(d).unwrap_or(4 * d);
        let suffix = if centered { "-centered" } else { "" };
        for ctx in [512usize, 2048] {
            let pool = Arc::clone(&opts.pool);
            let level = opts.level;
            out.push(Case {
                name: format!(
                    "{}.attention.{}{suffix}.ctx{ctx}",
                    model.prefix,
                    format.name()
                ),
                model: model.id,
                shape: format!("{nh}/{nkv} heads x {d}, ctx {ctx}"),
                flops: 4.0 * (nh * ctx * d) as f64,
                bytes: (2 * nkv * ctx * row_bytes + 8 * nh * d) as f64,
                setup: Box::new(move || {
                    let layout = KvLayout::new(BLOCK, nkv, d, format)?;
                    let blocks = ctx.div_ceil(BLOCK);
                    let mut cache = PagedKvCache::zeroed(layout, blocks)?;
                    let table: Vec<u32> = (0..blocks as u32).collect();
                    let kv = sample::normal(ctx * nkv * d, 11);
                    let k_mean = sample::normal(nkv * d, 13);
                    let style = RopeStyle::Interleaved;
                    let rope = rope_table(10000.0, d, ctx, style);
                    let c = KvCentering::new(&layout, &k_mean, &k_mean, &rope, style)?;
                    cache.write_centered(&table, 0, &kv, &kv, ctx, centered.then_some(&c))?;
                    let q = sample::normal(nh * d, 12);
                    let mut y = vec![0f32; nh * d];
                    let params = AttentionParams {
                        n_heads: nh,
                        scale: None,
                    };
                    let run: Runner = Box::new(move || {
                        let span = SeqSpan {
                            block_table: &table,
                            start_pos: ctx - 1,
                            n_q: 1,
                        };
                        let c = KvCentering::new(&layout, &k_mean, &k_mean, &rope, style)?;
                        let c = centered.then_some(&c);
                        paged_attention_centered(
                            level,
                            &pool,
                            &cache,
                            c,
                            &[span],
                            &q,
                            &mut y,
                            &params,
                        )
                    });
                    Ok(run)
                }),
            });
        }
    }
    out
}
