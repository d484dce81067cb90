//! The attention entry points: argument checks, the split into
//! (sequence, KV head) tasks, and their run on the thread pool.

use std::sync::Mutex;

use exodus_numerics::cpu::{self, SimdLevel};

use super::cache::PagedKvCache;
use super::centering::KvCentering;
use super::online::Task;
use crate::error::{FirstError, Result};
use crate::ops::check;
use crate::pool::{self, ThreadPool};

/// Options of the attention kernels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Query heads; a multiple of the cache's KV heads (query head `h`
    /// reads KV head `h / (n_heads / n_kv_heads)`).
    pub n_heads: usize,
    /// Softmax scale; `None` is `1 / sqrt(head_dim)`.
    pub scale: Option<f32>,
}

/// One sequence of a batched attention call: its block table and the
/// positions of its query tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqSpan<'a> {
    /// The sequence's blocks: logical block `i` (positions `i * block_size ..`)
    /// is pool block `block_table[i]`.
    pub block_table: &'a [u32],
    /// Absolute position of the first query token.
    pub start_pos: usize,
    /// Query tokens (1 for decode); token `i` is at `start_pos + i`.
    pub n_q: usize,
}

/// Query tokens per task at most: a long prompt's attention is split
/// into tiles of this many queries (per KV head) so that every thread gets
/// a share.
const QUERY_TILE: usize = 64;

/// Causal grouped-query attention of a batch of sequences over a paged KV
/// cache, on the active SIMD level and the [global](crate::pool::global)
/// pool.
///
/// Shapes: `q`, `out`: `[Σ n_q, n_heads, head_dim]`, the sequences' tokens
/// back to back in the order of `seqs`.
///
/// The K/V rows of every query token must already be in the cache
/// ([`PagedKvCache::write`] them first): query `i` of a span attends to
/// positions `0 ..= start_pos + i` of its sequence.
pub fn paged_attention<P: AsRef<[u8]>>(
    cache: &PagedKvCache<P>,
    seqs: &[SeqSpan<'_>],
    q: &[f32],
    out: &mut [f32],
    params: &AttentionParams,
) -> Result<()> {
    paged_attention_with(cpu::active(), pool::global(), cache, seqs, q, out, params)
}

/// Attention of one token of one sequence at position `pos` (decode), on
/// the active SIMD level and the global pool.
///
/// Shapes: `q`, `out`: `[n_heads, head_dim]`.
pub fn attention_decode<P: AsRef<[u8]>>(
    cache: &PagedKvCache<P>,
    block_table: &[u32],
    pos: usize,
    q: &[f32],
    out: &mut [f32],
    params: &AttentionParams,
) -> Result<()> {
    let seq = SeqSpan {
        block_table,
        start_pos: pos,
        n_q: 1,
    };
    paged_attention(cache, &[seq], q, out, params)
}

/// Attention of a chunk of `n_q` tokens of one sequence at positions
/// `start_pos ..` (prefill), causal within the chunk and over the cached
/// prefix, on the active SIMD level and the global pool.
///
/// Shapes: `q`, `out`: `[n_q, n_heads, head_dim]`.
pub fn attention_prefill<P: AsRef<[u8]>>(
    cache: &PagedKvCache<P>,
    block_table: &[u32],
    start_pos: usize,
    n_q: usize,
    q: &[f32],
    out: &mut [f32],
    params: &AttentionParams,
) -> Result<()> {
    let seq = SeqSpan {
        block_table,
        start_pos,
        n_q,
    };
    paged_attention(cache, &[seq], q, out, params)
}

/// [`paged_attention`] on a given SIMD level and pool. Work is split into
/// one task per (sequence, KV head); each task decodes a block's K/V rows
/// of its head once for all the query heads that share them.
pub fn paged_attention_with<P: AsRef<[u8]>>(
    level: SimdLevel,
    pool: &ThreadPool,
    cache: &PagedKvCache<P>,
    seqs: &[SeqSpan<'_>],
    q: &[f32],
    out: &mut [f32],
    params: &AttentionParams,
) -> Result<()> {
    paged_attention_centered(level, pool, cache, None, seqs, q, out, params)
}

/// [`paged_attention_with`] over a cache whose rows were written with
/// `centering` ([`PagedKvCache::write_centered`]): each K row read gets its
/// offset back before its scores, and each output its heads' V offset
/// (the softmax weights sum to 1).
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_centered<P: AsRef<[u8]>>(
    level: SimdLevel,
    pool: &ThreadPool,
    cache: &PagedKvCache<P>,
    centering: Option<&KvCentering<'_>>,
    seqs: &[SeqSpan<'_>],
    q: &[f32],
    out: &mut [f32],
    params: &AttentionParams,
) -> Result<()> {
    const K: &str = "attention";
    let view = cache.view();
    let layout = view.layout;
    let (n_kv, d) = (layout.n_kv_heads(), layout.head_dim());
    let n_heads = params.n_heads;
    if n_heads == 0 || !n_heads.is_multiple_of(n_kv) {
        return Err(check::bad_shape(
            K,
            format!("n_heads {n_heads} must be a positive multiple of n_kv_heads {n_kv}"),
        ));
    }
    let scale = params.scale.unwrap_or(1.0 / (d as f32).sqrt());
    if !scale.is_finite() {
        return Err(check::bad_shape(K, format!("scale {scale} is not finite")));
    }
    let mut tokens = 0usize;
    for s in seqs {
        tokens = tokens
            .checked_add(s.n_q)
            .ok_or_else(|| check::bad_shape(K, "total query tokens overflow"))?;
        if s.n_q == 0 {
            continue;
        }
        let end = s
            .start_pos
            .checked_add(s.n_q)
            .ok_or_else(|| check::bad_shape(K, "start_pos + n_q overflows"))?;
        for logical in 0..end.div_ceil(layout.block_size()) {
            view.block_id(K, s.block_table, logical)?;
        }
        if let Some(c) = centering {
            c.check_end(K, end)?;
        }
    }
    let row = n_heads * d;
    let n = check::product(K, &[tokens, row])?;
    check::len(K, "q", q.len(), n)?;
    check::len(K, "out", out.len(), n)?;

    // One task per (tile of at most QUERY_TILE query tokens of a sequence,
    // KV head), and the output slices it owns: token t's heads of KV head
    // h are out[t, h*group .. (h+1)*group, :]. A tile is the same
    // computation for its queries as the whole sequence would be (each
    // query folds the same key blocks in the same order), so tiling only
    // spreads a long prompt over the threads.
    let group = n_heads / n_kv;
    let mut tasks = Vec::with_capacity(seqs.len() * n_kv);
    // First token (in `q`) of each tile, in order.
    let mut tile_first = Vec::with_capacity(seqs.len());
    let mut t0 = 0;
    for s in seqs {
        for q0 in (0..s.n_q).step_by(QUERY_TILE) {
            let n_q = QUERY_TILE.min(s.n_q - q0);
            tile_first.push(t0 + q0);
            for kv_head in 0..n_kv {
                tasks.push(Task {
                    view,
                    centering,
                    level,
                    block_table: s.block_table,
                    start_pos: s.start_pos + q0,
                    n_q,
                    q: &q[(t0 + q0) * row..(t0 + q0 + n_q) * row],
                    n_heads,
                    kv_head,
                    scale,
                });
            }
        }
        t0 += s.n_q;
    }
    let mut slots: Vec<Vec<&mut [f32]>> = (0..tasks.len())
        .map(|i| Vec::with_capacity(tasks[i].n_q))
        .collect();
    let mut tile = 0;
    for (c, chunk) in out.chunks_exact_mut(group * d).enumerate() {
        let (token, kv_head) = (c / n_kv, c % n_kv);
        while tile + 1 < tile_first.len() && token >= tile_first[tile + 1] {
            tile += 1;
        }
        slots[tile * n_kv + kv_head].push(chunk);
    }
    let slots: Vec<Mutex<Vec<&mut [f32]>>> = slots.into_iter().map(Mutex::new).collect();
    let errors = FirstError::default();
    pool.parallel_for(tasks.len(), |i| {
        if tasks[i].n_q == 0 {
            return;
        }
        let mut out = slots[i].lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = tasks[i].run(&mut out) {
            errors.keep(Err(e));
        }
    });
    errors.into_result()
}
