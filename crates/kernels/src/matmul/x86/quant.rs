//! AVX2 quantization of activations to int8 blocks ([`QuantX`]'s blocks),
//! the same bits as the scalar loop of `quant_x.rs`: the absolute maximum
//! is exact in any order, the scale and its inverse are the same scalar
//! operations, and each code is the same f32 multiply, the same
//! add-and-subtract rounding and the same clamp (a NaN product gives 0, as
//! Rust's `as i8` does). A decode step quantizes x before every matmul,
//! on the calling thread while the pool waits, so this runs serially once
//! per matmul.
//!
//! [`QuantX`]: crate::matmul::quant_x::QuantX

use std::arch::x86_64::*;

use super::Avx2;
use crate::matmul::quant_x::ROUND_MAGIC;
use crate::ops::x86::vmath;

/// Quantizes `x` (a whole number of `block`s) into `q`, one scale per
/// block into `d` and one code sum per `group` into `sums`; `block` and
/// `group` are multiples of 8 and `group` divides `block`.
pub(crate) fn quantize_blocks(
    t: Avx2,
    x: &[f32],
    block: usize,
    group: usize,
    q: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
) {
    let _ = t;
    assert!(block.is_multiple_of(32) && group.is_multiple_of(8) && block.is_multiple_of(group));
    assert!(q.len() == x.len() && d.len() * block == x.len() && sums.len() * group == x.len());
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { quantize_blocks_avx2(x, block, group, q, d, sums) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_blocks_avx2(
    x: &[f32],
    block: usize,
    group: usize,
    q: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
) {
    let per_group = group / 8;
    let sign = _mm256_set1_ps(-0.0);
    let groups_per_block = block / group;
    for (((xb, qb), db), sb) in x
        .chunks_exact(block)
        .zip(q.chunks_exact_mut(block))
        .zip(d.iter_mut())
        .zip(sums.chunks_exact_mut(groups_per_block))
    {
        // `max(|v|, acc)` returns acc where |v| is NaN: NaN is skipped, as
        // by the scalar `f32::max`.
        let mut acc = _mm256_setzero_ps();
        for v in xb.chunks_exact(8) {
            acc = _mm256_max_ps(_mm256_andnot_ps(sign, vmath::load(v)), acc);
        }
        let amax = vmath::hmax(acc);
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        *db = if amax.is_finite() { scale } else { f32::NAN };
        let inv = _mm256_set1_ps(inv);
        let magic = _mm256_set1_ps(ROUND_MAGIC);
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let mut lanes = [_mm256_setzero_si256(); 4];
        let mut group_sum = _mm256_setzero_si256();
        for (i, v) in xb.chunks_exact(8).enumerate() {
            let r = _mm256_sub_ps(
                _mm256_add_ps(_mm256_mul_ps(vmath::load(v), inv), magic),
                magic,
            );
            let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
            let codes = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
            group_sum = _mm256_add_epi32(group_sum, codes);
            if (i + 1) % per_group == 0 {
                sb[i / per_group] = hsum_i32(group_sum);
                group_sum = _mm256_setzero_si256();
            }
            lanes[i % 4] = codes;
            if i % 4 == 3 {
                store32_i8(&mut qb[8 * (i - 3)..], lanes);
            }
        }
    }
}

/// The sum of 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// Four vectors of 8 codes in `-127..=127` to 32 bytes at `out[..32]`, in
/// order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store32_i8(out: &mut [i8], v: [__m256i; 4]) {
    let out = &mut out[..32];
    // Packs work within 128-bit lanes: the bytes come out as the 4-value
    // quarters 0 2 4 6 1 3 5 7 of the 32; the permute puts them back.
    let ab = _mm256_packs_epi32(v[0], v[1]);
    let cd = _mm256_packs_epi32(v[2], v[3]);
    let bytes = _mm256_packs_epi16(ab, cd);
    let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `out` holds 32 bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), ordered) }
}
