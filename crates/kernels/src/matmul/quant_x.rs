//! Activations quantized to int8 blocks for the integer dot products of
//! the decode regime.
//!
//! `x[rows, k]` (f32, row-major) becomes, per block of `block` values
//! (32: Q8_0-style, for Q4_0 / Q4_1 / Q8_0 / MXFP4 weights; 256: Q8_K-style,
//! for Q4_K / Q5_K / Q6_K), a scale `d = amax / 127` and codes
//! `q = round_ties_even(x / d)` in `-127..=127`, plus the sum of the codes of
//! every `group` consecutive values (the Q4_1 min and the K formats' mins
//! and offsets multiply these sums). Each value is off by at most `d / 2`,
//! which is where the int8 paths' error budget comes from.

#[cfg(target_arch = "x86_64")]
use super::x86::quant;
use super::Simd;

/// Quantized activations `[rows, k]`.
#[derive(Debug, Clone)]
pub(crate) struct QuantX {
    /// Values per scale (32 or 256).
    pub block: usize,
    /// Values per code sum (32 or 16).
    pub group: usize,
    /// Values per row.
    pub k: usize,
    /// Codes `[rows, k]`.
    pub q: Vec<i8>,
    /// Scales `[rows, k / block]`.
    pub d: Vec<f32>,
    /// Code sums `[rows, k / group]`.
    pub sums: Vec<i32>,
}

/// One row of [`QuantX`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct XRow<'a> {
    /// Codes (`k`).
    pub q: &'a [i8],
    /// Scales (`k / block`).
    pub d: &'a [f32],
    /// Code sums (`k / group`).
    pub sums: &'a [i32],
}

impl QuantX {
    /// Quantizes `x[rows, k]`; `k` must be a multiple of `block`, and
    /// `block` of `group` (the weight validation guarantees it).
    pub fn new(x: &[f32], rows: usize, k: usize, block: usize, group: usize) -> QuantX {
        debug_assert!(k.is_multiple_of(block) && block.is_multiple_of(group));
        let mut q = vec![0i8; rows * k];
        let mut d = vec![0f32; rows * k / block];
        let mut sums = vec![0i32; rows * k / group];
        for ((xb, qb), db) in x
            .chunks_exact(block)
            .zip(q.chunks_exact_mut(block))
            .zip(d.iter_mut())
        {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (o, &v) in qb.iter_mut().zip(xb) {
                *o = round_small(v * inv).clamp(-127.0, 127.0) as i8;
            }
            // NaN or infinite inputs make the scale non-finite, so the
            // outputs that use this block are NaN, as with f32 math.
            *db = if amax.is_finite() { scale } else { f32::NAN };
        }
        for (s, qg) in sums.iter_mut().zip(q.chunks_exact(group)) {
            *s = qg.iter().map(|&v| v as i32).sum();
        }
        QuantX {
            block,
            group,
            k,
            q,
            d,
            sums,
        }
    }

    /// [`new`](Self::new) with the SIMD loop of `simd` where there is one
    /// (AVX2: `x86/quant.rs`): the same bits.
    pub fn new_at(
        simd: Simd,
        x: &[f32],
        rows: usize,
        k: usize,
        block: usize,
        group: usize,
    ) -> QuantX {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = simd.avx2() {
            if block.is_multiple_of(32) && group.is_multiple_of(8) {
                let mut q = vec![0i8; rows * k];
                let mut d = vec![0f32; rows * k / block];
                let mut sums = vec![0i32; rows * k / group];
                quant::quantize_blocks(t, &x[..rows * k], block, group, &mut q, &mut d, &mut sums);
                return QuantX {
                    block,
                    group,
                    k,
                    q,
                    d,
                    sums,
                };
            }
        }
        let _ = simd;
        QuantX::new(x, rows, k, block, group)
    }

    /// The same codes with each block of 32 reordered to the MXFP4 nibble
    /// order: the even elements (the low nibbles of the 16 packed bytes)
    /// first, then the odd ones (the high nibbles), so the AVX2 MXFP4 dot
    /// needs no byte interleave. Scales and sums are unchanged (a block's
    /// codes are only permuted).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the AVX2 path uses it
    pub fn nibble_order(mut self) -> QuantX {
        debug_assert_eq!(self.block, 32);
        for qb in self.q.chunks_exact_mut(32) {
            let mut b = [0i8; 32];
            for j in 0..16 {
                b[j] = qb[2 * j];
                b[16 + j] = qb[2 * j + 1];
            }
            qb.copy_from_slice(&b);
        }
        self
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> XRow<'_> {
        let (nb, ng) = (self.k / self.block, self.k / self.group);
        XRow {
            q: &self.q[r * self.k..(r + 1) * self.k],
            d: &self.d[r * nb..(r + 1) * nb],
            sums: &self.sums[r * ng..(r + 1) * ng],
        }
    }
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2^22`
/// (here at most 127 and a rounding error): adding and subtracting
/// `1.5 * 2^23` leaves no fraction bits, and the f32 addition rounds to
/// nearest even. Unlike `f32::round_ties_even`, this needs no SSE4.1 and
/// compiles to two additions instead of a libm call. NaN stays NaN.
#[inline]
fn round_small(v: f32) -> f32 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// `1.5 * 2^23`, the constant of [`round_small`].
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_within_half_a_step() {
        let x: Vec<f32> = (0..512).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        for (block, group) in [(32, 32), (256, 16)] {
            let qx = QuantX::new(&x, 2, 256, block, group);
            for r in 0..2 {
                let row = qx.row(r);
                for (i, &v) in x[r * 256..(r + 1) * 256].iter().enumerate() {
                    let d = row.d[i / block];
                    assert!((row.q[i] as f32 * d - v).abs() <= d * 0.5001);
                }
                let total: i32 = row.q.iter().map(|&v| v as i32).sum();
                assert_eq!(row.sums.iter().sum::<i32>(), total);
            }
        }
        let zeros = QuantX::new(&[0.0; 32], 1, 32, 32, 32);
        assert_eq!(zeros.d[0], 0.0);
        assert!(zeros.q.iter().all(|&v| v == 0));
    }

    #[test]
    fn the_simd_loops_give_the_scalar_bits() {
        let mut x: Vec<f32> = (0..2048)
            .map(|i| match i % 331 {
                3 => 650.0,
                9 => -0.0,
                _ => ((i * 7919) % 2003) as f32 * 1e-3 - 1.0,
            })
            .collect();
        // A zero block, a NaN, an infinity, values on rounding ties.
        x[64..96].fill(0.0);
        x[300] = f32::NAN;
        x[700] = f32::INFINITY;
        for (i, v) in x[1024..1056].iter_mut().enumerate() {
            *v = i as f32 * 0.5 - 7.5;
        }
        for level in exodus_numerics::cpu::SimdLevel::supported() {
            for (block, group) in [(32, 32), (256, 16)] {
                let want = QuantX::new(&x, 4, 512, block, group);
                let got = QuantX::new_at(Simd::new(level), &x, 4, 512, block, group);
                assert_eq!(got.q, want.q, "{level:?} {block}");
                assert_eq!(got.sums, want.sums, "{level:?} {block}");
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.d), bits(&want.d), "{level:?} {block}");
            }
        }
    }

    #[test]
    fn round_small_is_round_ties_even() {
        let mut v = -140.0f32;
        while v <= 140.0 {
            for x in [v, v + 1e-3, v - 1e-3, v + 0.499_99] {
                assert_eq!(round_small(x), x.round_ties_even(), "{x}");
            }
            v += 0.25;
        }
        assert!(round_small(f32::NAN).is_nan());
    }
}
