//! AVX2 (+FMA, F16C) dequantizers for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
//! Q5_K, Q6_K and Q8_K (Q2_K and Q3_K run the scalar code).
//!
//! Each kernel gives the same bits as the scalar code in `legacy.rs` /
//! `k_dequant.rs`: it uses the same f32 operations in the same order
//! (separate multiply and add, never FMA), only eight lanes at a time.
//!
//! The quants are widened straight from memory: `vpmovzxbd` of 8 raw bytes
//! gives 8 u32 lanes holding whole bytes, from which one AND yields 8 low
//! nibbles and one shift yields the 8 high nibbles (the elements 16 or 32
//! positions further on). Scales are decoded once per (sub-)block with
//! scalar code; the inner loops have no branches.
//!
//! The `unsafe fn`s need AVX2, FMA and F16C; they are reached only through
//! [`dequantize`], which checks the CPU first.

use std::arch::x86_64::*;

use super::layout::{f16_at, off, QK, QK_K};
use super::GgufBlockType;
use crate::cpu::SimdLevel;

/// Dequantizes with AVX2 if there is a kernel for `t` and the CPU has the
/// features; returns `false` (having written nothing) otherwise.
///
/// The caller has checked that `src` is whole blocks and that `dst` has
/// exactly the matching number of elements.
pub fn dequantize(t: GgufBlockType, src: &[u8], dst: &mut [f32]) -> bool {
    if !SimdLevel::Avx2.is_supported() {
        return false;
    }
    debug_assert_eq!(
        src.len() / t.block_bytes() * t.block_elems(),
        dst.len(),
        "caller checks lengths"
    );
    let kernel: unsafe fn(&[u8], &mut [f32]) = match t {
        GgufBlockType::Q4_0 => q4_0,
        GgufBlockType::Q4_1 => q4_1,
        GgufBlockType::Q5_0 => q5_0,
        GgufBlockType::Q5_1 => q5_1,
        GgufBlockType::Q8_0 => q8_0,
        GgufBlockType::Q4K => q4k,
        GgufBlockType::Q5K => q5k,
        GgufBlockType::Q6K => q6k,
        GgufBlockType::Q8K => q8k,
        _ => return false,
    };
    // SAFETY: the CPU supports AVX2, FMA and F16C (checked above), the only
    // precondition of every kernel; they walk `src` and `dst` with
    // `chunks_exact` and stay inside each chunk.
    unsafe { kernel(src, dst) };
    true
}

/// Zero-extends the 8 bytes `b[at..at + 8]` to eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_u8(b: &[u8], at: usize) -> __m256i {
    let s = &b[at..at + 8];
    // SAFETY: `s` is 8 readable bytes; `_mm_loadl_epi64` reads exactly 8
    // bytes and has no alignment requirement.
    let v = unsafe { _mm_loadl_epi64(s.as_ptr().cast()) };
    _mm256_cvtepu8_epi32(v)
}

/// Sign-extends the 8 bytes `b[at..at + 8]` (as i8) to eight f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_i8_ps(b: &[u8], at: usize) -> __m256 {
    let s = &b[at..at + 8];
    // SAFETY: as in `widen_u8`.
    let v = unsafe { _mm_loadl_epi64(s.as_ptr().cast()) };
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

/// Stores eight lanes to `y[at..at + 8]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store(y: &mut [f32], at: usize, v: __m256) {
    let s = &mut y[at..at + 8];
    // SAFETY: `s` is 8 writable f32s; unaligned store.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
}

/// The 8 scale factors `d * sc[j]` and 8 min factors `dmin * m[j]` of a
/// Q4_K / Q5_K block (`b` starts at the block), computed eight at a time.
///
/// The 12 packed bytes are read as three little-endian u32 `a, b, c` (bytes
/// 0-3, 4-7, 8-11): scales 0-3 are the low 6 bits of the bytes of `a`, mins
/// 0-3 those of `b`; scales 4-7 are the low nibbles of `c` with the top two
/// bits of `a`'s bytes above them, mins 4-7 the high nibbles of `c` with the
/// top two bits of `b`'s bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_factors(blk: &[u8]) -> ([f32; 8], [f32; 8]) {
    let s = &blk[off::Q4K_SCALES..off::Q4K_SCALES + 12];
    let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    let sc_lo = a & 0x3F3F_3F3F;
    let mn_lo = b & 0x3F3F_3F3F;
    let sc_hi = (c & 0x0F0F_0F0F) | ((a >> 2) & 0x3030_3030);
    let mn_hi = ((c >> 4) & 0x0F0F_0F0F) | ((b >> 2) & 0x3030_3030);
    let widen = |lo: u32, hi: u32| {
        let v = _mm_cvtsi64_si128((lo as u64 | (hi as u64) << 32) as i64);
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    };
    let d = _mm256_set1_ps(f16_at(blk, 0));
    let dmin = _mm256_set1_ps(f16_at(blk, off::Q4K_DMIN));
    let mut dl = [0f32; 8];
    let mut ml = [0f32; 8];
    store(&mut dl, 0, _mm256_mul_ps(d, widen(sc_lo, sc_hi)));
    store(&mut ml, 0, _mm256_mul_ps(dmin, widen(mn_lo, mn_hi)));
    (dl, ml)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    let eight = _mm256_set1_ps(8.0);
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        for l in [0, 8] {
            let q = widen_u8(b, off::Q4_0_QS + l);
            let lo = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, m4)), eight);
            let hi = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), eight);
            store(y, l, _mm256_mul_ps(d, lo));
            store(y, l + 16, _mm256_mul_ps(d, hi));
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let m = _mm256_set1_ps(f16_at(b, off::Q4_1_M));
        for l in [0, 8] {
            let q = widen_u8(b, off::Q4_1_QS + l);
            let lo = _mm256_cvtepi32_ps(_mm256_and_si256(q, m4));
            let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4));
            store(y, l, _mm256_add_ps(_mm256_mul_ps(d, lo), m));
            store(y, l + 16, _mm256_add_ps(_mm256_mul_ps(d, hi), m));
        }
    }
}

/// The 5th bits of elements `l..l + 8` and `l + 16..l + 24` of a Q5_0 / Q5_1
/// block, as `0` or `16` in i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_high(qh: __m256i, l: i32) -> (__m256i, __m256i) {
    let lanes = _mm256_setr_epi32(l, l + 1, l + 2, l + 3, l + 4, l + 5, l + 6, l + 7);
    let one = _mm256_set1_epi32(1);
    let lo = _mm256_and_si256(_mm256_srlv_epi32(qh, lanes), one);
    let hi = _mm256_and_si256(
        _mm256_srlv_epi32(qh, _mm256_add_epi32(lanes, _mm256_set1_epi32(16))),
        one,
    );
    (_mm256_slli_epi32(lo, 4), _mm256_slli_epi32(hi, 4))
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    let bias = _mm256_set1_epi32(16);
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let qh = _mm256_set1_epi32(read_u32(b, off::Q5_0_QH) as i32);
        for l in [0, 8] {
            let q = widen_u8(b, off::Q5_0_QS + l);
            let (h0, h1) = q5_high(qh, l as i32);
            let lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            let hi = _mm256_or_si256(_mm256_srli_epi32(q, 4), h1);
            let lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, bias));
            let hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, bias));
            store(y, l, _mm256_mul_ps(d, lo));
            store(y, l + 16, _mm256_mul_ps(d, hi));
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    for (b, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let m = _mm256_set1_ps(f16_at(b, off::Q5_1_M));
        let qh = _mm256_set1_epi32(read_u32(b, off::Q5_1_QH) as i32);
        for l in [0, 8] {
            let q = widen_u8(b, off::Q5_1_QS + l);
            let (h0, h1) = q5_high(qh, l as i32);
            let lo = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_and_si256(q, m4), h0));
            let hi = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_srli_epi32(q, 4), h1));
            store(y, l, _mm256_add_ps(_mm256_mul_ps(d, lo), m));
            store(y, l + 16, _mm256_add_ps(_mm256_mul_ps(d, hi), m));
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        for l in [0, 8, 16, 24] {
            store(y, l, _mm256_mul_ps(widen_i8_ps(b, off::Q8_0_QS + l), d));
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(QK_K)) {
        let (dl, ml) = k4_factors(b);
        // Sub-blocks 2p (low nibbles) and 2p + 1 (high nibbles) share the 32
        // bytes qs[32p..32p + 32].
        for p in 0..4 {
            let d0 = _mm256_set1_ps(dl[2 * p]);
            let m0 = _mm256_set1_ps(ml[2 * p]);
            let d1 = _mm256_set1_ps(dl[2 * p + 1]);
            let m1 = _mm256_set1_ps(ml[2 * p + 1]);
            let out = &mut y[64 * p..64 * p + 64];
            for l in [0, 8, 16, 24] {
                let q = widen_u8(b, off::Q4K_QS + 32 * p + l);
                let lo = _mm256_cvtepi32_ps(_mm256_and_si256(q, m4));
                let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4));
                store(out, l, _mm256_sub_ps(_mm256_mul_ps(d0, lo), m0));
                store(out, 32 + l, _mm256_sub_ps(_mm256_mul_ps(d1, hi), m1));
            }
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    let m10 = _mm256_set1_epi32(0x10);
    for (b, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(QK_K)) {
        let (dl, ml) = k4_factors(b);
        for p in 0..4 {
            let d0 = _mm256_set1_ps(dl[2 * p]);
            let m0 = _mm256_set1_ps(ml[2 * p]);
            let d1 = _mm256_set1_ps(dl[2 * p + 1]);
            let m1 = _mm256_set1_ps(ml[2 * p + 1]);
            // Bit 2p of qh[l] (resp. 2p + 1) moved to bit 4.
            let s0 = _mm_cvtsi32_si128(2 * p as i32);
            let s1 = _mm_cvtsi32_si128(2 * p as i32 + 1);
            let out = &mut y[64 * p..64 * p + 64];
            for l in [0, 8, 16, 24] {
                let q = widen_u8(b, off::Q5K_QS + 32 * p + l);
                let h = _mm256_slli_epi32(widen_u8(b, off::Q5K_QH + l), 4);
                let h0 = _mm256_and_si256(_mm256_srl_epi32(h, s0), m10);
                let h1 = _mm256_and_si256(_mm256_srl_epi32(h, s1), m10);
                let lo = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_and_si256(q, m4), h0));
                let hi = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_srli_epi32(q, 4), h1));
                store(out, l, _mm256_sub_ps(_mm256_mul_ps(d0, lo), m0));
                store(out, 32 + l, _mm256_sub_ps(_mm256_mul_ps(d1, hi), m1));
            }
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k(src: &[u8], dst: &mut [f32]) {
    let m4 = _mm256_set1_epi32(0x0F);
    let m30 = _mm256_set1_epi32(0x30);
    let bias = _mm256_set1_epi32(32);
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(QK_K)) {
        let d = _mm256_set1_ps(f16_at(b, off::Q6K_D));
        let mut ds = [0f32; 16];
        store(
            &mut ds,
            0,
            _mm256_mul_ps(d, widen_i8_ps(b, off::Q6K_SCALES)),
        );
        store(
            &mut ds,
            8,
            _mm256_mul_ps(d, widen_i8_ps(b, off::Q6K_SCALES + 8)),
        );
        for half in 0..2 {
            let ql = 64 * half;
            let qh = off::Q6K_QH + 32 * half;
            let out = &mut y[128 * half..128 * half + 128];
            let sc = &ds[8 * half..8 * half + 8];
            for l in [0, 8, 16, 24] {
                let g = l / 16; // which of the two 16-element groups
                let a = widen_u8(b, ql + l);
                let c = widen_u8(b, ql + 32 + l);
                let h = widen_u8(b, qh + l);
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(a, m4),
                        _mm256_and_si256(_mm256_slli_epi32(h, 4), m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(c, m4),
                        _mm256_and_si256(_mm256_slli_epi32(h, 2), m30),
                    ),
                    _mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_and_si256(h, m30)),
                    _mm256_or_si256(
                        _mm256_srli_epi32(c, 4),
                        _mm256_and_si256(_mm256_srli_epi32(h, 2), m30),
                    ),
                ];
                for (k, q) in q.into_iter().enumerate() {
                    let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(q, bias));
                    let s = _mm256_set1_ps(sc[2 * k + g]);
                    store(out, 32 * k + l, _mm256_mul_ps(s, v));
                }
            }
        }
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(292).zip(dst.chunks_exact_mut(QK_K)) {
        let d = _mm256_set1_ps(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        for l in (0..QK_K).step_by(8) {
            store(y, l, _mm256_mul_ps(d, widen_i8_ps(b, off::Q8K_QS + l)));
        }
    }
}
