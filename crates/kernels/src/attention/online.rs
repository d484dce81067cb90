//! The work of one (sequence, KV head) pair: walk the sequence's blocks
//! once, decode each block's K and V rows of that head into f32 scratch,
//! and fold them into the running (max, sum, weighted-V) state of every
//! query token and every query head of the group (flash-style online
//! softmax), honouring causality: query `i` at position `start_pos + i`
//! sees keys `0 ..= start_pos + i`.
//!
//! The per-block fold has a scalar reference here, an AVX2 twin in
//! `attention::x86` and a NEON twin in `attention::neon`.

use exodus_numerics::cpu::SimdLevel;

use super::cache::{KvPart, KvView};
use super::centering::KvCentering;
use crate::error::Result;
use crate::ops::dispatch::{path, Path};

/// Running softmax state of one (query token, query head).
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    /// Largest score so far (`-inf` before the first key).
    pub(crate) m: f32,
    /// Sum of `exp(score - m)` so far.
    pub(crate) l: f32,
}

impl State {
    const EMPTY: State = State {
        m: f32::NEG_INFINITY,
        l: 0.0,
    };
}

/// Fold `n` keys into `st` / `acc` (scalar reference).
///
/// Shapes: `q`, `acc`: `[d]` (q already multiplied by the softmax scale);
/// `k`, `v`: at least `[n, d]`; `scores`: at least `[n]`.
pub(crate) fn fold_scalar(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    st: &mut State,
    acc: &mut [f32],
    scores: &mut [f32],
) {
    let d = q.len();
    let mut block_max = f32::NEG_INFINITY;
    for (s, kj) in scores[..n].iter_mut().zip(k.chunks_exact(d)) {
        *s = q.iter().zip(kj).map(|(a, b)| a * b).sum();
        block_max = block_max.max(*s);
    }
    let m = st.m.max(block_max);
    if m == f32::NEG_INFINITY {
        return;
    }
    let c = (st.m - m).exp();
    if c != 1.0 {
        st.l *= c;
        acc.iter_mut().for_each(|a| *a *= c);
    }
    for (&s, vj) in scores[..n].iter().zip(v.chunks_exact(d)) {
        let p = (s - m).exp();
        st.l += p;
        for (a, &x) in acc.iter_mut().zip(vj) {
            *a += p * x;
        }
    }
    st.m = m;
}

/// Cache blocks folded at once.
const FOLD_BLOCKS: usize = 4;

/// One unit of attention work: the query heads of one KV head, for every
/// query token of one sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task<'a> {
    pub(crate) view: KvView<'a>,
    /// The offsets the rows were stored relative to, if any.
    pub(crate) centering: Option<&'a KvCentering<'a>>,
    pub(crate) level: SimdLevel,
    pub(crate) block_table: &'a [u32],
    pub(crate) start_pos: usize,
    pub(crate) n_q: usize,
    /// This sequence's queries, `[n_q, n_heads, head_dim]`.
    pub(crate) q: &'a [f32],
    pub(crate) n_heads: usize,
    pub(crate) kv_head: usize,
    pub(crate) scale: f32,
}

impl Task<'_> {
    /// Run the task; `out[i]` is query token `i`'s `[group, head_dim]`
    /// slice of the output (the group's heads are adjacent).
    pub(crate) fn run(&self, out: &mut [&mut [f32]]) -> Result<()> {
        let l = &self.view.layout;
        let (d, bs) = (l.head_dim(), l.block_size());
        let group = self.n_heads / l.n_kv_heads();
        let first_head = self.kv_head * group;
        let n_states = self.n_q * group;
        // Scaled queries, [n_q, group, d].
        let mut qs = vec![0f32; n_states * d];
        for i in 0..self.n_q {
            let src = &self.q[(i * self.n_heads + first_head) * d..][..group * d];
            for (o, &x) in qs[i * group * d..][..group * d].iter_mut().zip(src) {
                *o = x * self.scale;
            }
        }
        let mut states = vec![State::EMPTY; n_states];
        let mut acc = vec![0f32; n_states * d];
        // Keys are folded FOLD_BLOCKS blocks at a time (the softmax
        // bookkeeping of a fold is paid once per 64 keys, not per 16); the
        // grouping is by absolute block index, so a query's folds are the
        // same whatever chunk or tile it runs in.
        let span = FOLD_BLOCKS * bs;
        let mut kbuf = vec![0f32; span * d];
        let mut vbuf = vec![0f32; span * d];
        // Padded to whole vectors for the SIMD fold.
        let mut scores = vec![0f32; span.next_multiple_of(8)];
        let fold = match path(self.level) {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::fold,
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::fold,
            Path::Scalar => fold_scalar,
        };

        let end = self.start_pos + self.n_q;
        let blocks = end.div_ceil(bs);
        for first_block in (0..blocks).step_by(FOLD_BLOCKS) {
            let first = first_block * bs;
            let mut n = 0;
            for logical in first_block..blocks.min(first_block + FOLD_BLOCKS) {
                let rows = bs.min(end - logical * bs);
                let block = self.block_table[logical] as usize;
                for (part, buf) in [(KvPart::Key, &mut kbuf), (KvPart::Value, &mut vbuf)] {
                    self.view.decode_rows(
                        self.level,
                        block,
                        part,
                        self.kv_head,
                        rows,
                        &mut buf[n * d..(n + rows) * d],
                    )?;
                }
                if let Some(c) = self.centering {
                    let keys = &mut kbuf[n * d..(n + rows) * d];
                    c.shift_keys(self.level, self.kv_head, logical * bs, keys, 1.0);
                }
                n += rows;
            }
            // Queries before `first` see nothing of these blocks.
            for i in first.saturating_sub(self.start_pos)..self.n_q {
                let visible = n.min(self.start_pos + i + 1 - first);
                for s in i * group..(i + 1) * group {
                    fold(
                        &qs[s * d..(s + 1) * d],
                        &kbuf,
                        &vbuf,
                        visible,
                        &mut states[s],
                        &mut acc[s * d..(s + 1) * d],
                        &mut scores,
                    );
                }
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            for g in 0..group {
                let s = i * group + g;
                let inv = 1.0 / states[s].l;
                let y = &mut o[g * d..(g + 1) * d];
                for (y, &a) in y.iter_mut().zip(&acc[s * d..(s + 1) * d]) {
                    *y = a * inv;
                }
                if let Some(c) = self.centering {
                    c.shift_values(self.kv_head, y, 1.0);
                }
            }
        }
        Ok(())
    }
}
