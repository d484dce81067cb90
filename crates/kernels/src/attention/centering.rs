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

use exodus_numerics::cpu::SimdLevel;

use crate::error::Result;
use crate::ops::check;
use crate::ops::dispatch::path;
#[cfg(target_arch = "x86_64")]
use crate::ops::dispatch::Path;
use crate::ops::RopeStyle;

use super::cache::KvLayout;

/// The offsets a cache's rows are stored relative to (see the module
/// docs), borrowed for the duration of a write or an attention call.
///
/// The key offset of lane `i` at a position is
/// `k_mean[i] * cos + partner[i] * sin`, where `cos`/`sin` are the
/// position's RoPE angle of `i`'s pair (one table row, laid out per lane)
/// and `partner[i]` is the other element of the pair with the rotation's
/// sign (`-m[i1]` at `i0`, `m[i0]` at `i1`): element-wise multiply-adds
/// over the whole row, which the compiler vectorizes.
#[derive(Debug, Clone)]
pub struct KvCentering<'a> {
    /// Key offsets before RoPE, `[n_kv_heads, head_dim]`.
    k_mean: &'a [f32],
    /// Each key offset's pair partner, signed, `[n_kv_heads, head_dim]`.
    k_partner: Vec<f32>,
    /// Value offsets, `[n_kv_heads, head_dim]`.
    v_mean: &'a [f32],
    /// RoPE's cosines then sines per lane, `[positions, 2, head_dim]` (see
    /// [`rope_table`]).
    rope: &'a [f32],
    head_dim: usize,
}

const K: &str = "kv_centering";

/// Largest head a centering takes (the key offsets of a row are kept on
/// the stack).
pub const MAX_HEAD_DIM: usize = 512;

/// Key offsets are read from the RoPE table at positions that are
/// multiples of this (a cache block's 16 rows share one read) and stepped
/// by one position's rotation in between.
const TABLE_EVERY: usize = 16;

impl<'a> KvCentering<'a> {
    /// Offsets for caches of `layout`'s heads, with RoPE `style` and its
    /// `rope` table (made by [`rope_table`] for the same style); every
    /// length is checked against the layout.
    pub fn new(
        layout: &KvLayout,
        k_mean: &'a [f32],
        v_mean: &'a [f32],
        rope: &'a [f32],
        style: RopeStyle,
    ) -> Result<Self> {
        let d = layout.head_dim();
        if !d.is_multiple_of(2) || d > MAX_HEAD_DIM {
            return Err(check::bad_shape(
                K,
                format!("head_dim {d} must be even and at most {MAX_HEAD_DIM}"),
            ));
        }
        let width = layout.n_kv_heads() * d;
        check::len(K, "k_mean", k_mean.len(), width)?;
        check::len(K, "v_mean", v_mean.len(), width)?;
        if !rope.len().is_multiple_of(2 * d) {
            return Err(check::bad_shape(
                K,
                format!(
                    "the RoPE table's {} values are not whole positions of 2 x {d}",
                    rope.len()
                ),
            ));
        }
        let mut k_partner = vec![0f32; width];
        for (mean, partner) in k_mean.chunks_exact(d).zip(k_partner.chunks_exact_mut(d)) {
            for p in 0..d / 2 {
                let (i0, i1) = style.pair(d, p);
                partner[i0] = -mean[i1];
                partner[i1] = mean[i0];
            }
        }
        Ok(Self {
            k_mean,
            k_partner,
            v_mean,
            rope,
            head_dim: d,
        })
    }

    /// Positions the RoPE table covers (rows at or past it cannot be
    /// centered).
    pub fn positions(&self) -> usize {
        self.rope.len() / (2 * self.head_dim)
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
    ///
    /// Reading the table for every row would move 8 bytes per lane per
    /// row (more than the FP8 rows themselves), so the offset is read from
    /// the table at every position that is a multiple of
    /// [`TABLE_EVERY`] (and at the first row) and turned by one position's
    /// angle for the rows in between: with `o` the offset's lanes and `po`
    /// its pair partners' (`i * o` as complex numbers), one step is `o' =
    /// o*cos1 + po*sin1`, `po' = po*cos1 - o*sin1`, element-wise. The
    /// restart points depend on the position only, so a row gets the same
    /// offset bits when it is written and every time it is read.
    pub(crate) fn shift_keys(
        &self,
        level: SimdLevel,
        head: usize,
        first_pos: usize,
        keys: &mut [f32],
        sign: f32,
    ) {
        let d = self.head_dim;
        let offsets = KeyOffsets {
            mean: &self.k_mean[head * d..(head + 1) * d],
            partner: &self.k_partner[head * d..(head + 1) * d],
            rope: self.rope,
            d,
        };
        match path(level) {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => {
                // SAFETY: `path` returns Avx2 only after the run-time check
                // that this CPU has AVX2 and FMA.
                unsafe { shift_keys_avx2(&offsets, first_pos, keys, sign) }
            }
            _ => shift_keys_rows(&offsets, first_pos, keys, sign),
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

/// One head's key offsets, as [`shift_keys_rows`] reads them.
struct KeyOffsets<'a> {
    mean: &'a [f32],
    partner: &'a [f32],
    rope: &'a [f32],
    d: usize,
}

/// [`KvCentering::shift_keys`]' loop, compiled with AVX2 and FMA enabled
/// (the same code, vectorized 8 lanes wide; Rust does not fuse a multiply
/// and an add by itself, so the results are the scalar path's bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn shift_keys_avx2(o: &KeyOffsets<'_>, first_pos: usize, keys: &mut [f32], sign: f32) {
    shift_keys_rows(o, first_pos, keys, sign)
}

/// The rows' key offsets (see [`KvCentering::shift_keys`]): read from the
/// table at restart points, stepped by one position's rotation between.
#[inline(always)]
fn shift_keys_rows(o: &KeyOffsets<'_>, first_pos: usize, keys: &mut [f32], sign: f32) {
    let d = o.d;
    let (mean, partner) = (&o.mean[..d], &o.partner[..d]);
    let mut lanes = [0f32; MAX_HEAD_DIM];
    let mut partners = [0f32; MAX_HEAD_DIM];
    let (off, poff) = (&mut lanes[..d], &mut partners[..d]);
    // One position's angle (row 1 of the table); a table of one position
    // has no row 1 and never steps.
    let step = o.rope.get(2 * d..4 * d).unwrap_or(&[]);
    let (cos1, sin1) = step.split_at(step.len() / 2);
    for (r, row) in keys.chunks_exact_mut(d).enumerate() {
        let pos = first_pos + r;
        if r == 0 || pos.is_multiple_of(TABLE_EVERY) {
            let (cos, sin) = o.rope[pos * 2 * d..(pos + 1) * 2 * d].split_at(d);
            let (cos, sin) = (&cos[..d], &sin[..d]);
            for i in 0..d {
                off[i] = mean[i] * cos[i] + partner[i] * sin[i];
                poff[i] = partner[i] * cos[i] - mean[i] * sin[i];
            }
        } else {
            let (cos1, sin1) = (&cos1[..d], &sin1[..d]);
            for i in 0..d {
                let (a, b) = (off[i], poff[i]);
                off[i] = a * cos1[i] + b * sin1[i];
                poff[i] = b * cos1[i] - a * sin1[i];
            }
        }
        let row = &mut row[..d];
        for i in 0..d {
            row[i] += sign * off[i];
        }
    }
}

/// RoPE's cosines and sines for positions `0 .. positions`, per lane of a
/// head: `[positions, 2, head_dim]`, the cosines of the row's lanes then
/// their sines, both lanes of a pair holding its angle. Pair `i` (in
/// `style`'s layout) at position `p` turns by `p * theta^(-2i /
/// head_dim)`, computed in f64 as the [`rope`](crate::ops::rope) kernel
/// does, so a centered key is rotated exactly as the model's keys are.
pub fn rope_table(theta: f32, head_dim: usize, positions: usize, style: RopeStyle) -> Vec<f32> {
    let d = head_dim;
    let mut table = vec![0f32; positions * 2 * d];
    for (pos, row) in table.chunks_exact_mut(2 * d).enumerate() {
        let (cos, sin) = row.split_at_mut(d);
        for p in 0..d / 2 {
            let freq = (theta as f64).powf(-2.0 * p as f64 / d as f64);
            let (s, c) = (pos as f64 * freq).sin_cos();
            let (i0, i1) = style.pair(d, p);
            (cos[i0], cos[i1]) = (c as f32, c as f32);
            (sin[i0], sin[i1]) = (s as f32, s as f32);
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
        for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
            let rope = rope_table(10000.0, 8, 40, style);
            let c = KvCentering::new(&l, &k_mean, &v_mean, &rope, style).unwrap();
            for head in 0..2 {
                let mut got = vec![0f32; 3 * 8];
                c.shift_keys(SimdLevel::Scalar, head, 37, &mut got, 1.0);
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

    /// Long runs step the offset between table reads: still the rotated
    /// mean, and a row gets the same bits whether its run started at its
    /// block or earlier (a write of a long chunk, a read of one block).
    #[test]
    fn stepped_offsets_match_rope_and_do_not_depend_on_the_run() {
        let l = KvLayout::new(16, 1, 64, KvFormat::Fp8E4M3).unwrap();
        let k_mean: Vec<f32> = (0..64).map(|i| ((i * 7) % 23) as f32 - 11.0).collect();
        let v_mean = vec![0.0; 64];
        for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
            let rope = rope_table(100000.0, 64, 200, style);
            let c = KvCentering::new(&l, &k_mean, &v_mean, &rope, style).unwrap();
            let mut long = vec![0f32; 150 * 64];
            c.shift_keys(SimdLevel::Scalar, 0, 5, &mut long, 1.0);
            let mut want = k_mean.repeat(150);
            let positions: Vec<u32> = (5..155).collect();
            let params = RopeParams {
                style,
                theta: 100000.0,
                rotary_dim: None,
            };
            rope_with(SimdLevel::Scalar, &mut want, &positions, 1, 64, &params).unwrap();
            for (g, w) in long.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{style:?}: {g} vs {w}");
            }
            // Every SIMD level gives the scalar path's bits.
            for level in SimdLevel::supported() {
                let mut again = vec![0f32; 150 * 64];
                c.shift_keys(level, 0, 5, &mut again, 1.0);
                assert_eq!(again, long, "{style:?} {level:?}");
            }
            for block_start in [16usize, 48, 144] {
                let mut block = vec![0f32; 16 * 64];
                c.shift_keys(SimdLevel::Scalar, 0, block_start, &mut block, 1.0);
                let at = (block_start - 5) * 64;
                let from_long = &long[at..at + block.len().min(long.len() - at)];
                assert_eq!(
                    &block[..from_long.len()],
                    from_long,
                    "{style:?} block {block_start}"
                );
            }
        }
    }

    #[test]
    fn shifting_back_and_forth_is_the_identity() {
        let l = layout();
        let k_mean: Vec<f32> = (0..16).map(|i| (i as f32).sin() * 9.0).collect();
        let v_mean: Vec<f32> = (0..16).map(|i| i as f32 - 8.0).collect();
        let rope = rope_table(100000.0, 8, 64, RopeStyle::Interleaved);
        let c = KvCentering::new(&l, &k_mean, &v_mean, &rope, RopeStyle::Interleaved).unwrap();
        let rows: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).cos()).collect();
        let (mut k, mut v) = (rows.clone(), rows.clone());
        c.shift_keys(SimdLevel::Scalar, 1, 20, &mut k, -1.0);
        c.shift_values(1, &mut v, -1.0);
        assert_ne!(k, rows);
        assert_ne!(v, rows);
        c.shift_keys(SimdLevel::Scalar, 1, 20, &mut k, 1.0);
        c.shift_values(1, &mut v, 1.0);
        for (a, b) in k.iter().chain(&v).zip(rows.iter().chain(&rows)) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn lengths_are_checked() {
        let l = layout();
        let ok = vec![0f32; 16];
        let rope = rope_table(10000.0, 8, 4, RopeStyle::NeoX);
        assert!(KvCentering::new(&l, &ok[..15], &ok, &rope, RopeStyle::NeoX).is_err());
        assert!(KvCentering::new(&l, &ok, &ok[..1], &rope, RopeStyle::NeoX).is_err());
        assert!(KvCentering::new(&l, &ok, &ok, &rope[..8], RopeStyle::NeoX).is_err());
        let c = KvCentering::new(&l, &ok, &ok, &rope, RopeStyle::NeoX).unwrap();
        assert_eq!(c.positions(), 4);
        assert!(c.check_end("t", 4).is_ok());
        assert!(c.check_end("t", 5).is_err());
    }
}
