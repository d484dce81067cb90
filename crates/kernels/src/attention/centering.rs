//! KV centering: a cache stores each K and V row minus a fixed offset and
//! adds it back when it reads the row, so a coarse format (FP8, MX) spends
//! its few mantissa bits on how a row differs from the usual row, not on
//! the usual row itself.
//!
//! Why it matters: the keys of Llama-family models carry large per-channel
//! offsets (SmolLM2-135M: channels near ±15 with a spread of about 2), and
//! E4M3's 3-bit mantissa rounds a 15 to a multiple of 1. A key's offset is
//! fixed *before* RoPE, so after RoPE it turns with the position: row
//! `pos` of head `h` is stored as `k - R(pos) * k_mean[h]`, where `R(pos)`
//! is the rotation the model's RoPE applies at `pos` (from a table of
//! cosines and sines, [`rope_table`]). Values have no rotation: `v -
//! v_mean[h]`. Reads add the same offsets back, so the attention result
//! is the uncentered one up to the format's rounding of the (smaller)
//! difference. The offsets themselves are kept in f32 outside the cache
//! and cost no cache capacity.
//!
//! Where the means come from is the model's business (exodus-model
//! measures them on a calibration text); any offsets give the right
//! result, good ones give a smaller rounding error.

use crate::error::Result;
use crate::ops::check;
use crate::ops::RopeStyle;

use super::cache::KvLayout;

/// The offsets a cache's rows are stored relative to (see the module
/// docs), borrowed for the duration of a write or an attention call.
#[derive(Debug, Clone, Copy)]
pub struct KvCentering<'a> {
    /// Key offsets before RoPE, `[n_kv_heads, head_dim]`.
    k_mean: &'a [f32],
    /// Value offsets, `[n_kv_heads, head_dim]`.
    v_mean: &'a [f32],
    /// RoPE's cosines and sines, `[positions, head_dim / 2, 2]` (see
    /// [`rope_table`]).
    rope: &'a [f32],
    /// Which elements of a head form a rotated pair.
    style: RopeStyle,
    head_dim: usize,
}

const K: &str = "kv_centering";

impl<'a> KvCentering<'a> {
    /// Offsets for caches of `layout`'s heads, with RoPE `style` and its
    /// `rope` table; every length is checked against the layout.
    pub fn new(
        layout: &KvLayout,
        k_mean: &'a [f32],
        v_mean: &'a [f32],
        rope: &'a [f32],
        style: RopeStyle,
    ) -> Result<Self> {
        let d = layout.head_dim();
        if !d.is_multiple_of(2) {
            return Err(check::bad_shape(K, format!("head_dim {d} must be even")));
        }
        let width = layout.n_kv_heads() * d;
        check::len(K, "k_mean", k_mean.len(), width)?;
        check::len(K, "v_mean", v_mean.len(), width)?;
        if !rope.len().is_multiple_of(d) {
            return Err(check::bad_shape(
                K,
                format!(
                    "the RoPE table's {} values are not whole positions of {d}",
                    rope.len()
                ),
            ));
        }
        Ok(Self {
            k_mean,
            v_mean,
            rope,
            style,
            head_dim: d,
        })
    }

    /// Positions the RoPE table covers (rows at or past it cannot be
    /// centered).
    pub fn positions(&self) -> usize {
        self.rope.len() / self.head_dim
    }

    /// An error unless positions `..end` are in the table.
    pub(crate) fn check_end(&self, kernel: &'static str, end: usize) -> Result<()> {
        if end > self.positions() {
            return Err(check::bad_shape(
                kernel,
                format!(
                    "position {} is past the centering's RoPE table of {} positions",
                    end - 1,
                    self.positions()
                ),
            ));
        }
        Ok(())
    }

    /// Add `sign` times head `head`'s key offset at positions `first_pos
    /// ..` to the rows `keys` (`[n, head_dim]`): `-1` before storing, `+1`
    /// after reading. Positions must be inside the table.
    pub(crate) fn shift_keys(&self, head: usize, first_pos: usize, keys: &mut [f32], sign: f32) {
        let d = self.head_dim;
        let half = d / 2;
        let mean = &self.k_mean[head * d..(head + 1) * d];
        for (r, row) in keys.chunks_exact_mut(d).enumerate() {
            let cs = &self.rope[(first_pos + r) * d..][..d];
            for p in 0..half {
                let (i0, i1) = match self.style {
                    RopeStyle::Interleaved => (2 * p, 2 * p + 1),
                    RopeStyle::NeoX => (p, p + half),
                };
                let (c, s) = (cs[2 * p], cs[2 * p + 1]);
                let (m0, m1) = (mean[i0], mean[i1]);
                row[i0] += sign * (m0 * c - m1 * s);
                row[i1] += sign * (m0 * s + m1 * c);
            }
        }
    }

    /// Add `sign` times head `head`'s value offset to the rows `values`
    /// (`[n, head_dim]`).
    pub(crate) fn shift_values(&self, head: usize, values: &mut [f32], sign: f32) {
        let d = self.head_dim;
        let mean = &self.v_mean[head * d..(head + 1) * d];
        for row in values.chunks_exact_mut(d) {
            for (x, &m) in row.iter_mut().zip(mean) {
                *x += sign * m;
            }
        }
    }
}

/// RoPE's cosines and sines for positions `0 .. positions`, `[positions,
/// head_dim / 2, 2]`: pair `i` at position `p` turns by `p *
/// theta^(-2i / head_dim)`, computed in f64 as the [`rope`](crate::ops::rope)
/// kernel does, so a centered key is rotated exactly as the model's keys
/// are.
pub fn rope_table(theta: f32, head_dim: usize, positions: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let freqs: Vec<f64> = (0..half)
        .map(|i| (theta as f64).powf(-2.0 * i as f64 / head_dim as f64))
        .collect();
    let mut table = Vec::with_capacity(positions * half * 2);
    for p in 0..positions {
        for f in &freqs {
            let (s, c) = (p as f64 * f).sin_cos();
            table.push(c as f32);
            table.push(s as f32);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::KvFormat;
    use crate::ops::{rope_with, RopeParams};
    use exodus_numerics::cpu::SimdLevel;

    fn layout() -> KvLayout {
        KvLayout::new(16, 2, 8, KvFormat::F16).unwrap()
    }

    /// The key offset at a position is the mean rotated by the model's own
    /// RoPE kernel, in both pair styles.
    #[test]
    fn key_offsets_are_the_mean_rotated_by_rope() {
        let l = layout();
        let k_mean: Vec<f32> = (0..16).map(|i| i as f32 * 0.7 - 3.0).collect();
        let v_mean = vec![0.0; 16];
        let rope = rope_table(10000.0, 8, 40);
        for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
            let c = KvCentering::new(&l, &k_mean, &v_mean, &rope, style).unwrap();
            for head in 0..2 {
                let mut got = vec![0f32; 3 * 8];
                c.shift_keys(head, 37, &mut got, 1.0);
                let mut want: Vec<f32> = k_mean[head * 8..(head + 1) * 8].repeat(3);
                let params = RopeParams {
                    style,
                    theta: 10000.0,
                    rotary_dim: None,
                };
                rope_with(SimdLevel::Scalar, &mut want, &[37, 38, 39], 1, 8, &params).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-5,
                        "{style:?} head {head}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn shifting_back_and_forth_is_the_identity() {
        let l = layout();
        let k_mean: Vec<f32> = (0..16).map(|i| (i as f32).sin() * 9.0).collect();
        let v_mean: Vec<f32> = (0..16).map(|i| i as f32 - 8.0).collect();
        let rope = rope_table(100000.0, 8, 64);
        let c = KvCentering::new(&l, &k_mean, &v_mean, &rope, RopeStyle::Interleaved).unwrap();
        let rows: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).cos()).collect();
        let (mut k, mut v) = (rows.clone(), rows.clone());
        c.shift_keys(1, 20, &mut k, -1.0);
        c.shift_values(1, &mut v, -1.0);
        assert_ne!(k, rows);
        assert_ne!(v, rows);
        c.shift_keys(1, 20, &mut k, 1.0);
        c.shift_values(1, &mut v, 1.0);
        for (a, b) in k.iter().chain(&v).zip(rows.iter().chain(&rows)) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn lengths_are_checked() {
        let l = layout();
        let ok = vec![0f32; 16];
        let rope = rope_table(10000.0, 8, 4);
        assert!(KvCentering::new(&l, &ok[..15], &ok, &rope, RopeStyle::NeoX).is_err());
        assert!(KvCentering::new(&l, &ok, &ok[..1], &rope, RopeStyle::NeoX).is_err());
        assert!(KvCentering::new(&l, &ok, &ok, &rope[..5], RopeStyle::NeoX).is_err());
        let c = KvCentering::new(&l, &ok, &ok, &rope, RopeStyle::NeoX).unwrap();
        assert_eq!(c.positions(), 4);
        assert!(c.check_end("t", 4).is_ok());
        assert!(c.check_end("t", 5).is_err());
    }
}
