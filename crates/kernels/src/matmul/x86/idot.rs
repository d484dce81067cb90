//! Int8 row dots: one row of GGUF / MXFP4 blocks against activations
//! quantized to int8 ([`XRow`]), with `vpmaddubsw` (u8 x i8 -> pairs of
//! i16) and `vpmaddwd` (pairs of i16 -> i32).
//!
//! Signed weights (Q4_0 after `- 8`, Q8_0, MXFP4) use the sign trick:
//! `maddubs(|w|, sign(x, w))` equals `sum w * x` because `|w|` is unsigned.
//! No i16 intermediate can saturate: `|w| <= 128` and `|x| <= 127` give
//! pairs of at most 32512; unsigned 4/5/6-bit quants give at most
//! `2 * 63 * 127`. The K formats multiply by their sub-block scales in
//! `vpmaddwd` and keep one i32 vector per super-block (at most
//! `256 * 63 * 127 * 128 < 2^31`), converted to f32 once.

use std::arch::x86_64::*;

use super::fdot::{hsum, load16};
use super::Avx2;
use crate::matmul::dot_scalar::{e8m0_f32, scales_mins_k4, FP4_X2};
use crate::matmul::quant_x::XRow;

/// f16 at `b[at..at + 2]` to f32 with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_at(b: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 32 bytes of `b[..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(b: &[u8]) -> __m256i {
    debug_assert!(b.len() >= 32);
    // SAFETY: the callers pass slices of at least 32 bytes.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// 32 int8 activations `q[..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_q(q: &[i8]) -> __m256i {
    debug_assert!(q.len() >= 32);
    // SAFETY: the callers pass slices of at least 32 codes.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// `sum w * x` of signed bytes, as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(w: __m256i, x: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// `sum w * x` of unsigned `w` (< 128) and signed `x`, as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

/// The 32 nibbles of a legacy 4-bit block (`qs[..16]`) in element order:
/// low nibbles are elements 0..16, high nibbles 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles32(qs: &[u8]) -> __m256i {
    let b = load16(qs);
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(b, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
    _mm256_set_m128i(hi, lo)
}

/// Q8_0 row · int8 x.
pub(crate) fn q8_0_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { q8_0_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_avx2(w: &[u8], x: XRow) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for ((b, xq), &xd) in w.chunks_exact(34).zip(x.q.chunks_exact(32)).zip(x.d) {
        let s = dot_i8(load32(&b[2..]), load_q(xq));
        let d = _mm256_set1_ps(f16_at(b, 0) * xd);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    hsum(acc)
}

/// Q4_0 row · int8 x.
pub(crate) fn q4_0_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { q4_0_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_avx2(w: &[u8], x: XRow) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let eight = _mm256_set1_epi8(8);
    for ((b, xq), &xd) in w.chunks_exact(18).zip(x.q.chunks_exact(32)).zip(x.d) {
        let q = _mm256_sub_epi8(nibbles32(&b[2..]), eight);
        let s = dot_i8(q, load_q(xq));
        let d = _mm256_set1_ps(f16_at(b, 0) * xd);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    hsum(acc)
}

/// Q4_1 row · int8 x.
pub(crate) fn q4_1_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { q4_1_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_1_avx2(w: &[u8], x: XRow) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (((b, xq), &xd), &xs) in w
        .chunks_exact(20)
        .zip(x.q.chunks_exact(32))
        .zip(x.d)
        .zip(x.sums)
    {
        // d and m in one F16C conversion.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            b[0], b[1], b[2], b[3],
        ])));
        let (d, m) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
        let s = dot_u8(nibbles32(&b[4..]), load_q(xq));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xd), acc);
        mins += m * xd * xs as f32;
    }
    hsum(acc) + mins
}

/// MXFP4 row · int8 x.
pub(crate) fn mxfp4_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { mxfp4_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_avx2(w: &[u8], x: XRow) -> f32 {
    let lut16 = load16(&FP4_X2.map(|v| v as u8));
    let lut = _mm256_set_m128i(lut16, lut16);
    let m = _mm_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    for ((b, xq), &xd) in w.chunks_exact(17).zip(x.q.chunks_exact(32)).zip(x.d) {
        let c = load16(&b[1..]);
        // Element 2j is the low nibble of byte j: interleave back to order.
        let lo = _mm_and_si128(c, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(c), m);
        let codes = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
        let s = dot_i8(_mm256_shuffle_epi8(lut, codes), load_q(xq));
        let d = _mm256_set1_ps(e8m0_f32(b[0]) * 0.5 * xd);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    hsum(acc)
}

/// Q4_K row · int8 x (256-blocks with 16-value sums).
pub(crate) fn q4k_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { q4k_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4k_avx2(w: &[u8], x: XRow) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    let m = _mm256_set1_epi8(0x0F);
    for (((b, xq), &xd), bs) in w
        .chunks_exact(144)
        .zip(x.q.chunks_exact(256))
        .zip(x.d)
        .zip(x.sums.chunks_exact(16))
    {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let mut sumi = _mm256_setzero_si256();
        for i in 0..4 {
            let q = load32(&b[16 + 32 * i..]);
            let lo = _mm256_and_si256(q, m);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m);
            let p0 = _mm256_maddubs_epi16(lo, load_q(&xq[64 * i..]));
            let p1 = _mm256_maddubs_epi16(hi, load_q(&xq[64 * i + 32..]));
            let s0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * i] as i16));
            let s1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * i + 1] as i16));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(s0, s1));
        }
        let summ: i32 = (0..8)
            .map(|j| mn[j] as i32 * (bs[2 * j] + bs[2 * j + 1]))
            .sum();
        let d = f16_at(b, 0) * xd;
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc);
        mins += f16_at(b, 2) * xd * summ as f32;
    }
    hsum(acc) - mins
}

/// Q5_K row · int8 x.
pub(crate) fn q5k_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { q5k_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5k_avx2(w: &[u8], x: XRow) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    let m = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    for (((b, xq), &xd), bs) in w
        .chunks_exact(176)
        .zip(x.q.chunks_exact(256))
        .zip(x.d)
        .zip(x.sums.chunks_exact(16))
    {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let qh = load32(&b[16..]);
        let mut sumi = _mm256_setzero_si256();
        for i in 0..4 {
            let q = load32(&b[48 + 32 * i..]);
            // Bit j of qh[l] is the 5th bit of element l of sub-block j.
            let h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i as i32)), one);
            let h1 = _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i as i32 + 1)),
                one,
            );
            let lo = _mm256_or_si256(_mm256_and_si256(q, m), _mm256_slli_epi16::<4>(h0));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m),
                _mm256_slli_epi16::<4>(h1),
            );
            let p0 = _mm256_maddubs_epi16(lo, load_q(&xq[64 * i..]));
            let p1 = _mm256_maddubs_epi16(hi, load_q(&xq[64 * i + 32..]));
            let s0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * i] as i16));
            let s1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * i + 1] as i16));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(s0, s1));
        }
        let summ: i32 = (0..8)
            .map(|j| mn[j] as i32 * (bs[2 * j] + bs[2 * j + 1]))
            .sum();
        let d = f16_at(b, 0) * xd;
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc);
        mins += f16_at(b, 2) * xd * summ as f32;
    }
    hsum(acc) - mins
}

/// Q6_K row · int8 x.
pub(crate) fn q6k_row(t: Avx2, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { q6k_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6k_avx2(w: &[u8], x: XRow) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    for (((b, xq), &xd), bs) in w
        .chunks_exact(210)
        .zip(x.q.chunks_exact(256))
        .zip(x.d)
        .zip(x.sums.chunks_exact(16))
    {
        let sc = &b[192..208];
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            let qh = load32(&b[128 + 32 * half..]);
            for k in 0..4 {
                let lq = load32(&b[64 * half + 32 * (k % 2)..]);
                let low = if k < 2 {
                    _mm256_and_si256(lq, m4)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(lq), m4)
                };
                let h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k as i32)), m2);
                let q = _mm256_or_si256(low, _mm256_slli_epi16::<4>(h));
                let p = _mm256_maddubs_epi16(q, load_q(&xq[128 * half + 32 * k..]));
                let g = 8 * half + 2 * k;
                let scv = _mm256_set_m128i(
                    _mm_set1_epi16(sc[g + 1] as i8 as i16),
                    _mm_set1_epi16(sc[g] as i8 as i16),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
            }
        }
        let offset: i32 = (0..16).map(|g| sc[g] as i8 as i32 * bs[g]).sum();
        let offset = _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, -32 * offset);
        sumi = _mm256_add_epi32(sumi, offset);
        let d = f16_at(b, 208) * xd;
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), acc);
    }
    hsum(acc)
}
