//! Int8 row dots: one row of GGUF / MXFP4 blocks against activations
//! quantized to int8 ([`XRow`]), with `vpmaddubsw` (u8 x i8 -> pairs of
//! i16) and `vpmaddwd` (pairs of i16 -> i32).
//!
//! Signed weights (Q4_0 after `- 8`, Q8_0) use the sign trick:
//! `maddubs(|w|, sign(x, w))` equals `sum w * x` because `|w|` is unsigned.
//! MXFP4 looks its doubled E2M1 values up biased by `+12` (unsigned) and
//! subtracts `12 * sum x` per block, with x in packed-nibble order.
//! No i16 intermediate can saturate: `|w| <= 128` and `|x| <= 127` give
//! pairs of at most 32512; unsigned 4/5/6-bit quants give at most
//! `2 * 63 * 127`. The K formats multiply by their sub-block scales in
//! `vpmaddwd` and keep one i32 vector per super-block (at most
//! `256 * 63 * 127 * 128 < 2^31`), converted to f32 once.

use std::arch::x86_64::*;

use super::fdot::{hsum, load16, load32, prefetch_next_row};
use super::Avx2;
use crate::matmul::dot_scalar::{scales_mins_k4, FP4_X2};
use crate::matmul::quant_x::XRow;

/// f16 at `b[at..at + 2]` to f32 with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_at(b: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
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
        prefetch_next_row(w.len(), b);
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
        prefetch_next_row(w.len(), b);
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
        prefetch_next_row(w.len(), b);
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

/// E8M0 code to f32 times one half (the FP4 values are doubled in
/// [`FP4_X2`]), by code: exact, `0xFF` is NaN.
static E8M0_HALF: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut e = 0;
    while e < 256 {
        t[e] = match e {
            // 2^-128 and 2^-127: subnormals.
            0 => f32::from_bits(0x0020_0000),
            1 => f32::from_bits(0x0040_0000),
            255 => f32::NAN,
            _ => f32::from_bits(((e - 1) as u32) << 23),
        };
        e += 1;
    }
    t
};

/// Integer dot of one MXFP4 block's 16 packed bytes `c` with its 32 int8
/// activations in nibble order (`xq`: even elements, then odd ones), as 8
/// i32 lanes, each weight biased by `+12` so it is unsigned for
/// `vpmaddubsw` (`0..=24`, pairs at most `2 * 24 * 127`): the lanes sum to
/// `sum w * x + 12 * sum x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_block_biased(lut: __m256i, c: __m128i, xq: &[i8]) -> __m256i {
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(c, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(c), m);
    let w = _mm256_shuffle_epi8(lut, _mm256_set_m128i(hi, lo));
    dot_u8(w, load_q(xq))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_avx2(w: &[u8], x: XRow) -> f32 {
    debug_assert!(x.d.len() == x.sums.len() && w.len() / 17 == x.d.len());
    let lut16 = load16(&FP4_X2.map(|v| (v + 12) as u8));
    let lut = _mm256_set_m128i(lut16, lut16);
    let twelve = _mm_set1_epi32(12);
    let mut acc = _mm256_setzero_ps();
    let mut wc = w.chunks_exact(68);
    let mut qc = x.q.chunks_exact(128);
    let mut dc = x.d.chunks_exact(4);
    let mut sc = x.sums.chunks_exact(4);
    for (((b, xq), xd), xs) in (&mut wc).zip(&mut qc).zip(&mut dc).zip(&mut sc) {
        prefetch_next_row(w.len(), b);
        // Four blocks: each one's 8 lanes of partial sums, then lanes
        // [s0 s1 s2 s3 | s0 s1 s2 s3] of their halves.
        let s0 = mxfp4_block_biased(lut, load16(&b[1..]), xq);
        let s1 = mxfp4_block_biased(lut, load16(&b[18..]), &xq[32..]);
        let s2 = mxfp4_block_biased(lut, load16(&b[35..]), &xq[64..]);
        let s3 = mxfp4_block_biased(lut, load16(&b[52..]), &xq[96..]);
        let s = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
        // Undo the bias once per block: 12 * sum x, in the low half only.
        let xs = load16(bytemuck_i32(xs));
        let bias = _mm256_zextsi128_si256(_mm_mullo_epi32(xs, twelve));
        let s = _mm256_cvtepi32_ps(_mm256_sub_epi32(s, bias));
        // Block scales (E8M0 / 2) times the x block scales, in f32.
        let ws = _mm_set_ps(
            E8M0_HALF[b[51] as usize],
            E8M0_HALF[b[34] as usize],
            E8M0_HALF[b[17] as usize],
            E8M0_HALF[b[0] as usize],
        );
        let d = _mm_mul_ps(ws, load4(xd));
        acc = _mm256_fmadd_ps(s, _mm256_set_m128(d, d), acc);
    }
    let mut tail = 0f32;
    for (((b, xq), &xd), &xs) in wc
        .remainder()
        .chunks_exact(17)
        .zip(qc.remainder().chunks_exact(32))
        .zip(dc.remainder())
        .zip(sc.remainder())
    {
        let s = hsum(_mm256_cvtepi32_ps(mxfp4_block_biased(
            lut,
            load16(&b[1..]),
            xq,
        )));
        tail += (s - 12.0 * xs as f32) * E8M0_HALF[b[0] as usize] * xd;
    }
    hsum(acc) + tail
}

/// The bytes of `v` (4 i32), for a 16-byte load.
#[inline]
fn bytemuck_i32(v: &[i32]) -> &[u8] {
    debug_assert!(v.len() >= 4);
    // SAFETY: i32 has no padding and every byte pattern is a valid u8; the
    // slice covers exactly the memory of `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// 4 f32 from `v[..4]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load4(v: &[f32]) -> __m128 {
    debug_assert!(v.len() >= 4);
    // SAFETY: the callers pass chunks of 4 floats.
    unsafe { _mm_loadu_ps(v.as_ptr()) }
}

/// Sub-blocks `2i` (quants `lo`) and `2i + 1` (quants `hi`) of a Q4_K /
/// Q5_K block dotted with x, each times its 6-bit scale, as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_pair(lo: __m256i, hi: __m256i, xq: &[i8], i: usize, sc: &[u8; 8]) -> __m256i {
    let p0 = _mm256_maddubs_epi16(lo, load_q(&xq[64 * i..]));
    let p1 = _mm256_maddubs_epi16(hi, load_q(&xq[64 * i + 32..]));
    let s0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * i] as i16));
    let s1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * i + 1] as i16));
    _mm256_add_epi32(s0, s1)
}

/// Adds a finished Q4_K / Q5_K block (`b`) to the row's sums: `d * xd *
/// sumi` into `acc`, and `dmin * xd * sum(mn[j] * x sums of sub-block j)`
/// into `mins` (subtracted at the end).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_finish(
    b: &[u8],
    sumi: __m256i,
    mn: &[u8; 8],
    bs: &[i32],
    xd: f32,
    acc: &mut __m256,
    mins: &mut f32,
) {
    let summ: i32 = (0..8)
        .map(|j| mn[j] as i32 * (bs[2 * j] + bs[2 * j + 1]))
        .sum();
    let d = f16_at(b, 0) * xd;
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d), *acc);
    *mins += f16_at(b, 2) * xd * summ as f32;
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
        prefetch_next_row(w.len(), b);
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let mut sumi = _mm256_setzero_si256();
        for i in 0..4 {
            let q = load32(&b[16 + 32 * i..]);
            let lo = _mm256_and_si256(q, m);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m);
            sumi = _mm256_add_epi32(sumi, k4_pair(lo, hi, xq, i, &sc));
        }
        k4_finish(b, sumi, &mn, bs, xd, &mut acc, &mut mins);
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
        prefetch_next_row(w.len(), b);
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
            sumi = _mm256_add_epi32(sumi, k4_pair(lo, hi, xq, i, &sc));
        }
        k4_finish(b, sumi, &mn, bs, xd, &mut acc, &mut mins);
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
        prefetch_next_row(w.len(), b);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::dot_scalar;
    use crate::matmul::quant_x::QuantX;
    use exodus_numerics::cpu::SimdLevel;

    #[test]
    fn mxfp4_matches_scalar() {
        let Some(t) = Avx2::new(SimdLevel::Avx2) else {
            return;
        };
        // 7 blocks: one group of four and a tail of three; scale bytes
        // include the subnormal and NaN codes.
        let k = 7 * 32;
        let x: Vec<f32> = (0..k).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        let q = QuantX::new(&x, 1, k, 32, 32);
        let qn = q.clone().nibble_order();
        for scales in [
            [127u8, 120, 130, 1, 0, 126, 128],
            [127, 127, 127, 127, 127, 255, 127],
        ] {
            let w: Vec<u8> = (0..7)
                .flat_map(|b| {
                    std::iter::once(scales[b]).chain((0..16).map(move |i| (b * 31 + i * 7) as u8))
                })
                .collect();
            let want = dot_scalar::mxfp4_row(&w, q.row(0));
            let got = mxfp4_row(t, &w, qn.row(0));
            if want.is_nan() {
                assert!(got.is_nan());
            } else {
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
            }
        }
    }
}
