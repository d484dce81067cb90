//! Float row dots: W decoded to f32 in registers (f32, f16, bf16, E4M3,
//! MXFP8-E4M3) and multiplied into f32 accumulators with FMA.
//!
//! E4M3 is decoded through F16C: the 7 magnitude bits shifted left by 7
//! form an f16 whose exponent and mantissa fields equal the E4M3 ones, so
//! the f16 value is the E4M3 value times `2^-8` exactly (subnormals
//! included); the `2^8` goes into the final scale. The NaN codes
//! (`0x7F`, `0xFF`) are patched to an f16 NaN.

use std::arch::x86_64::*;

use super::Avx2;
use crate::matmul::dot_scalar::{self, e8m0_f32};
pub(crate) use crate::ops::x86::vmath::hsum;

/// 8 f32 from the 32 bytes of `b` (little-endian).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32(b: &[u8]) -> __m256 {
    debug_assert!(b.len() >= 32);
    // SAFETY: the callers pass chunks of at least 32 bytes; unaligned load.
    unsafe { _mm256_loadu_ps(b.as_ptr().cast()) }
}

/// 8 f32 from `x[..8]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_x(x: &[f32]) -> __m256 {
    debug_assert!(x.len() >= 8);
    // SAFETY: the callers pass chunks of at least 8 floats.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// 16 bytes of `b[..16]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load16(b: &[u8]) -> __m128i {
    debug_assert!(b.len() >= 16);
    // SAFETY: the callers pass chunks of at least 16 bytes.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// Starts loading the byte `row_len` past `at`: the same place of the next
/// W row, since the decode walks W row by row and rows are stored one after
/// another. The hardware prefetchers stop at every 4 KiB page, which a 7B
/// row crosses every 1-4 KiB; asking for the next row a row ahead keeps
/// DRAM busy (FP8 rows from DRAM: 12 -> 16-19 GB/s, docs/benchmarks.md). A
/// prefetch never faults, so the address may lie past the last row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn prefetch_next_row(row_len: usize, at: &[u8]) {
    _mm_prefetch::<_MM_HINT_T0>(at.as_ptr().wrapping_add(row_len).cast());
}

/// Sum of `w[i] * x[i]` over two f32 slices of equal length.
pub(crate) fn dot_f32(t: Avx2, w: &[f32], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { dot_f32_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32_avx2(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut wc = w.chunks_exact(32);
    let mut xc = x.chunks_exact(32);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for (u, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(load_x(&wb[8 * u..]), load_x(&xb[8 * u..]), *a);
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s) + dot_scalar::dot_f32(wc.remainder(), xc.remainder())
}

/// Row of f32 weights (little-endian bytes, `4 * x.len()`) · x.
pub(crate) fn f32_row(t: Avx2, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { f32_row_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f32_row_avx2(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut wc = w.chunks_exact(128);
    let mut xc = x.chunks_exact(32);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        prefetch_next_row(w.len(), wb);
        for (u, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(load_f32(&wb[32 * u..]), load_x(&xb[8 * u..]), *a);
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s) + dot_scalar::f32_row(wc.remainder(), xc.remainder())
}

/// Row of f16 weights · x.
pub(crate) fn f16_row(t: Avx2, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { f16_row_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_row_avx2(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut wc = w.chunks_exact(64);
    let mut xc = x.chunks_exact(32);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        prefetch_next_row(w.len(), wb);
        for (u, a) in acc.iter_mut().enumerate() {
            let v = _mm256_cvtph_ps(load16(&wb[16 * u..]));
            *a = _mm256_fmadd_ps(v, load_x(&xb[8 * u..]), *a);
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s) + dot_scalar::f16_row(wc.remainder(), xc.remainder())
}

/// Row of bf16 weights · x.
pub(crate) fn bf16_row(t: Avx2, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { bf16_row_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn bf16_row_avx2(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut wc = w.chunks_exact(64);
    let mut xc = x.chunks_exact(32);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        prefetch_next_row(w.len(), wb);
        for (u, a) in acc.iter_mut().enumerate() {
            let bits = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load16(&wb[16 * u..])));
            *a = _mm256_fmadd_ps(_mm256_castsi256_ps(bits), load_x(&xb[8 * u..]), *a);
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s) + dot_scalar::bf16_row(wc.remainder(), xc.remainder())
}

/// 16 E4M3 codes to two vectors of 8 f32, each the value times `2^-8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn e4m3x16(codes: __m128i) -> (__m256, __m256) {
    let v = _mm256_cvtepu8_epi16(codes);
    let sign = _mm256_slli_epi16::<8>(_mm256_and_si256(v, _mm256_set1_epi16(0x80)));
    let mag = _mm256_and_si256(v, _mm256_set1_epi16(0x7F));
    let nan = _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x7F));
    let half = _mm256_blendv_epi8(_mm256_slli_epi16::<7>(mag), _mm256_set1_epi16(0x7E00), nan);
    let half = _mm256_or_si256(half, sign);
    (
        _mm256_cvtph_ps(_mm256_castsi256_si128(half)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(half)),
    )
}

/// 32 bytes of `b[..32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load32(b: &[u8]) -> __m256i {
    debug_assert!(b.len() >= 32);
    // SAFETY: the callers pass chunks of at least 32 bytes.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// 32 E4M3 codes to four vectors of 8 f32 (codes `0..8`, `8..16`,
/// `16..24`, `24..32`), each the value times `2^-8`. Each code goes to the
/// high byte of a 16-bit lane; an arithmetic shift right by one puts the
/// magnitude at bits 7..14 and copies the sign into bit 14, which is then
/// cleared. Blocks with a NaN code take [`e4m3x16`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn e4m3x32(codes: __m256i) -> [__m256; 4] {
    let nan = _mm256_cmpeq_epi8(
        _mm256_or_si256(codes, _mm256_set1_epi8(-128)),
        _mm256_set1_epi8(-1),
    );
    if _mm256_testz_si256(nan, nan) == 0 {
        let (w0, w1) = e4m3x16(_mm256_castsi256_si128(codes));
        let (w2, w3) = e4m3x16(_mm256_extracti128_si256::<1>(codes));
        return [w0, w1, w2, w3];
    }
    let keep = _mm256_set1_epi16(!0x4000);
    let z = _mm256_setzero_si256();
    // Lanes: unpacklo = codes 0..8 | 16..24, unpackhi = 8..16 | 24..32.
    let lo = _mm256_and_si256(_mm256_srai_epi16::<1>(_mm256_unpacklo_epi8(z, codes)), keep);
    let hi = _mm256_and_si256(_mm256_srai_epi16::<1>(_mm256_unpackhi_epi8(z, codes)), keep);
    [
        _mm256_cvtph_ps(_mm256_castsi256_si128(lo)),
        _mm256_cvtph_ps(_mm256_castsi256_si128(hi)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(lo)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(hi)),
    ]
}

/// E4M3 codes · x (no scale applied).
pub(crate) fn e4m3_row(t: Avx2, codes: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { e4m3_row_avx2(codes, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn e4m3_row_avx2(codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut wc = codes.chunks_exact(32);
    let mut xc = x.chunks_exact(32);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        prefetch_next_row(codes.len(), wb);
        let (w0, w1) = e4m3x16(load16(wb));
        let (w2, w3) = e4m3x16(load16(&wb[16..]));
        acc[0] = _mm256_fmadd_ps(w0, load_x(xb), acc[0]);
        acc[1] = _mm256_fmadd_ps(w1, load_x(&xb[8..]), acc[1]);
        acc[2] = _mm256_fmadd_ps(w2, load_x(&xb[16..]), acc[2]);
        acc[3] = _mm256_fmadd_ps(w3, load_x(&xb[24..]), acc[3]);
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s) * 256.0 + dot_scalar::e4m3_row(wc.remainder(), xc.remainder())
}

/// MXFP8-E4M3 blocks (E8M0 scale byte + 32 codes) · x.
pub(crate) fn mxfp8_row(t: Avx2, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { mxfp8_row_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp8_row_avx2(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in w.chunks_exact(33).zip(x.chunks_exact(32)) {
        prefetch_next_row(w.len(), b);
        let (w0, w1) = e4m3x16(load16(&b[1..]));
        let (w2, w3) = e4m3x16(load16(&b[17..]));
        let mut blk = _mm256_mul_ps(w0, load_x(xb));
        blk = _mm256_fmadd_ps(w1, load_x(&xb[8..]), blk);
        blk = _mm256_fmadd_ps(w2, load_x(&xb[16..]), blk);
        blk = _mm256_fmadd_ps(w3, load_x(&xb[24..]), blk);
        acc = _mm256_fmadd_ps(blk, _mm256_set1_ps(e8m0_f32(b[0])), acc);
    }
    // The 2^-8 of the F16C decode, undone once.
    hsum(acc) * 256.0
}

/// E4M3 codes · x with one scale per `tile` columns (`scales[t]` for
/// columns `t * tile ..`); `tile` must be a multiple of 32 and `codes`,
/// `x` whole tiles but for a last partial one (a multiple of 32 too, or
/// handled by the scalar tail).
pub(crate) fn e4m3_tiled_row(t: Avx2, codes: &[u8], x: &[f32], tile: usize, scales: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2, FMA and F16C.
    unsafe { e4m3_tiled_row_avx2(codes, x, tile, scales) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn e4m3_tiled_row_avx2(codes: &[u8], x: &[f32], tile: usize, scales: &[f32]) -> f32 {
    debug_assert!(tile > 0 && tile.is_multiple_of(32));
    let mut total = _mm256_setzero_ps();
    let mut tail = 0f32;
    for ((wt, xt), &s) in codes.chunks(tile).zip(x.chunks(tile)).zip(scales) {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut wc = wt.chunks_exact(32);
        let mut xc = xt.chunks_exact(32);
        for (wb, xb) in (&mut wc).zip(&mut xc) {
            prefetch_next_row(codes.len(), wb);
            let w = e4m3x32(load32(wb));
            for (u, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(w[u], load_x(&xb[8 * u..]), *a);
            }
        }
        let a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        total = _mm256_fmadd_ps(a, _mm256_set1_ps(s), total);
        if !wc.remainder().is_empty() {
            tail += dot_scalar::e4m3_row(wc.remainder(), xc.remainder()) * s;
        }
    }
    hsum(total) * 256.0 + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use exodus_numerics::cpu::SimdLevel;
    use exodus_numerics::{bulk, ElementFormat};

    #[test]
    fn e4m3x32_decodes_every_code() {
        if Avx2::new(SimdLevel::Avx2).is_none() {
            return;
        }
        let table = bulk::decode_table(ElementFormat::Fp8E4M3).expect("E4M3 table");
        for chunk in 0..8u8 {
            let codes: Vec<u8> = (0..32).map(|i| chunk * 32 + i).collect();
            let mut got = [0f32; 32];
            // SAFETY: the token above proves AVX2, FMA and F16C; `got`
            // holds the 32 floats stored.
            unsafe {
                let v = e4m3x32(load32(&codes));
                for (u, w) in v.iter().enumerate() {
                    _mm256_storeu_ps(got[8 * u..].as_mut_ptr(), *w);
                }
            }
            for (&c, g) in codes.iter().zip(got) {
                let want = table[c as usize];
                assert!(
                    (want.is_nan() && g.is_nan()) || g * 256.0 == want,
                    "code {c:#04x}: {} vs {want}",
                    g * 256.0
                );
            }
        }
    }
}
