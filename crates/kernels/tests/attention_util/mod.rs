//! Helpers of the attention tests: a cache filled with random K/V for one
//! or more sequences through shuffled block tables, and the naive f64
//! attention they are checked against.
#![allow(dead_code)]

use exodus_kernels::attention::{KvFormat, KvLayout, KvPart, PagedKvCache};
use exodus_numerics::sample::SplitMix64;

/// One sequence's data: its block table and its original (unquantized)
/// K/V, `[len, n_kv_heads, head_dim]`.
pub struct Seq {
    pub table: Vec<u32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub len: usize,
}

/// A shuffled permutation of `0..n`.
pub fn shuffled(rng: &mut SplitMix64, n: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        ids.swap(i, j);
    }
    ids
}

/// A cache holding sequences of the given lengths, each written in random
/// chunks through a block table of shuffled pool blocks (with spare blocks
/// in the pool that nothing uses).
pub fn build(rng: &mut SplitMix64, layout: KvLayout, lens: &[usize]) -> (PagedKvCache, Vec<Seq>) {
    let bs = layout.block_size();
    let row = layout.n_kv_heads() * layout.head_dim();
    let needed: usize = lens.iter().map(|l| l.div_ceil(bs)).sum();
    let n_blocks = needed + 3;
    let ids = shuffled(rng, n_blocks);
    let mut cache = PagedKvCache::zeroed(layout, n_blocks).unwrap();
    let mut seqs = Vec::new();
    let mut next = 0;
    for &len in lens {
        let nb = len.div_ceil(bs);
        let table = ids[next..next + nb].to_vec();
        next += nb;
        let k: Vec<f32> = (0..len * row).map(|_| rng.normal() as f32).collect();
        let v: Vec<f32> = (0..len * row).map(|_| rng.normal() as f32).collect();
        let mut pos = 0;
        while pos < len {
            let n = (1 + (rng.next_u64() % 7) as usize).min(len - pos);
            cache
                .write(
                    &table,
                    pos,
                    &k[pos * row..(pos + n) * row],
                    &v[pos * row..(pos + n) * row],
                    n,
                )
                .unwrap();
            pos += n;
        }
        seqs.push(Seq { table, k, v, len });
    }
    (cache, seqs)
}

/// K/V of a sequence as the cache holds them (dequantized), `[len, n_kv, d]`.
pub fn dequantized(cache: &PagedKvCache, seq: &Seq) -> (Vec<f32>, Vec<f32>) {
    let l = cache.layout();
    let (n_kv, d) = (l.n_kv_heads(), l.head_dim());
    let mut k = vec![0f32; seq.len * n_kv * d];
    let mut v = vec![0f32; seq.len * n_kv * d];
    for pos in 0..seq.len {
        for h in 0..n_kv {
            let at = (pos * n_kv + h) * d;
            cache
                .read_row(&seq.table, pos, KvPart::Key, h, &mut k[at..at + d])
                .unwrap();
            cache
                .read_row(&seq.table, pos, KvPart::Value, h, &mut v[at..at + d])
                .unwrap();
        }
    }
    (k, v)
}

/// Naive causal GQA attention in f64: the full score row of every query,
/// `q`/result `[n_q, n_heads, d]`, keys/values `[len, n_kv, d]`; the
/// shape argument is `(n_heads, n_kv, d)`.
pub fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    start_pos: usize,
    (n_heads, n_kv, d): (usize, usize, usize),
    scale: f64,
) -> Vec<f32> {
    let n_q = q.len() / (n_heads * d);
    let group = n_heads / n_kv;
    let mut out = vec![0f32; q.len()];
    for i in 0..n_q {
        let pos = start_pos + i;
        for h in 0..n_heads {
            let kvh = h / group;
            let qv = &q[(i * n_heads + h) * d..][..d];
            let scores: Vec<f64> = (0..=pos)
                .map(|j| {
                    let kj = &k[(j * n_kv + kvh) * d..][..d];
                    qv.iter()
                        .zip(kj)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = p.iter().sum();
            for (c, o) in out[(i * n_heads + h) * d..][..d].iter_mut().enumerate() {
                let y: f64 = (0..=pos)
                    .map(|j| p[j] * v[(j * n_kv + kvh) * d + c] as f64)
                    .sum();
                *o = (y / sum) as f32;
            }
        }
    }
    out
}

/// Root-mean-square of `a - b` over the root-mean-square of `b`.
pub fn rms_rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Head dims worth testing for a format (MX needs multiples of 32).
pub fn head_dims(format: KvFormat) -> &'static [usize] {
    match format {
        KvFormat::MxFp8E4M3 | KvFormat::MxFp4 => &[32, 64, 96],
        _ => &[4, 20, 32, 64],
    }
}
