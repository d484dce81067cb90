//! AVX2 + FMA + F16C kernels (x86_64).
//!
//! Each public function is safe to call only after
//! [`SimdLevel::Avx2`](crate::cpu::SimdLevel::Avx2) was found supported;
//! the callers in `bulk` and `mx` check that. Inside, every `unsafe` block
//! is either a `target_feature` call (sound because of that check) or an
//! unaligned load/store whose pointer range was bounds-checked by slicing.
//! Tails shorter than one vector go through the scalar code.

use std::arch::x86_64::*;

use crate::minifloat::{MiniFloat, Specials};
use crate::rounding::Overflow;

/// Decode one-code-per-byte minifloats to f32, 16 codes at a time. Every
/// OCP minifloat has at most 5 exponent and 10 mantissa bits, so its
/// magnitude bits, shifted to the top of an f16 mantissa, form an f16 whose
/// exponent field equals the minifloat's: the F16C conversion then yields
/// the value times `2^(bias - 15)` exactly (subnormals included), and one
/// multiply by `2^(15 - bias)` finishes. E5M2 is f16's top byte, so its
/// Inf/NaN come out of the conversion; E4M3's NaN code is patched to an
/// f16 NaN first.
pub(crate) fn decode_minifloat(m: &MiniFloat, src: &[u8], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let main = n - n % 16;
    // SAFETY: the caller checked AVX2/F16C support; the kernel touches only
    // `src[..main]` and `dst[..main]`.
    unsafe { decode_minifloat_avx2(m, &src[..main], &mut dst[..main]) };
    for (o, &c) in dst[main..n].iter_mut().zip(&src[main..n]) {
        *o = m.decode(c);
    }
}

/// Vector constants of the minifloat decoder, built once per call.
#[derive(Clone, Copy)]
struct MiniFloatDecoder {
    nan_only: bool,
    code_mask: __m256i,
    mag_mask: __m256i,
    sign_bit: __m256i,
    sign_shift: __m128i,
    place_shift: __m128i,
    scale: __m256,
}

impl MiniFloatDecoder {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(m: &MiniFloat) -> Self {
        debug_assert!(m.exp_bits <= 5 && m.man_bits <= 10);
        debug_assert!(m.specials != Specials::Ieee || (m.exp_bits == 5 && m.bias == 15));
        let mag_bits = m.exp_bits + m.man_bits;
        Self {
            nan_only: m.specials == Specials::NanOnly,
            code_mask: _mm256_set1_epi16(m.code_mask() as i16),
            mag_mask: _mm256_set1_epi16((1 << mag_bits) - 1),
            sign_bit: _mm256_set1_epi16(1 << mag_bits),
            sign_shift: _mm_cvtsi32_si128(15 - mag_bits as i32),
            place_shift: _mm_cvtsi32_si128(10 - m.man_bits as i32),
            scale: _mm256_set1_ps(crate::minifloat::pow2(15 - m.bias) as f32),
        }
    }

    /// Decode the 16 codes of `bytes` into two vectors of 8 floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn decode16(&self, bytes: __m128i) -> (__m256, __m256) {
        let v = _mm256_and_si256(_mm256_cvtepu8_epi16(bytes), self.code_mask);
        let mag = _mm256_and_si256(v, self.mag_mask);
        let sign = _mm256_sll_epi16(_mm256_and_si256(v, self.sign_bit), self.sign_shift);
        let mut half = _mm256_sll_epi16(mag, self.place_shift);
        if self.nan_only {
            let is_nan = _mm256_cmpeq_epi16(mag, self.mag_mask);
            half = _mm256_blendv_epi8(half, _mm256_set1_epi16(0x7e00), is_nan);
        }
        half = _mm256_or_si256(half, sign);
        let lo = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(half)), self.scale);
        let hi = _mm256_mul_ps(
            _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(half)),
            self.scale,
        );
        (lo, hi)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_minifloat_avx2(m: &MiniFloat, src: &[u8], dst: &mut [f32]) {
    let decoder = MiniFloatDecoder::new(m);
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: `s` holds 16 bytes and `d` 16 floats; unaligned access.
        unsafe {
            let (lo, hi) = decoder.decode16(_mm_loadu_si128(s.as_ptr().cast()));
            _mm256_storeu_ps(d.as_mut_ptr(), lo);
            _mm256_storeu_ps(d.as_mut_ptr().add(8), hi);
        }
    }
}

/// Decode minifloat codes and multiply each value by `scale` (a block or
/// tile scale), in one pass.
pub(crate) fn decode_minifloat_scaled(m: &MiniFloat, src: &[u8], scale: f32, dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let main = n - n % 16;
    // SAFETY: the caller checked AVX2/F16C support; the kernel touches only
    // `src[..main]` and `dst[..main]`.
    unsafe { decode_minifloat_scaled_avx2(m, &src[..main], scale, &mut dst[..main]) };
    for (o, &c) in dst[main..n].iter_mut().zip(&src[main..n]) {
        *o = m.decode(c) * scale;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_minifloat_scaled_avx2(m: &MiniFloat, src: &[u8], scale: f32, dst: &mut [f32]) {
    let decoder = MiniFloatDecoder::new(m);
    let scale = _mm256_set1_ps(scale);
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: `s` holds 16 bytes and `d` 16 floats; unaligned access.
        unsafe {
            let (lo, hi) = decoder.decode16(_mm_loadu_si128(s.as_ptr().cast()));
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_mul_ps(lo, scale));
            _mm256_storeu_ps(d.as_mut_ptr().add(8), _mm256_mul_ps(hi, scale));
        }
    }
}

/// Encode f32 to one-code-per-byte minifloats with round-to-nearest-even.
/// Normal results round on the f32 bit pattern; subnormal results come from
/// adding a power of two whose ulp is the subnormal spacing, so the FPU's
/// own round-to-nearest-even does the rounding.
pub(crate) fn encode_minifloat(m: &MiniFloat, overflow: Overflow, src: &[f32], dst: &mut [u8]) {
    let n = src.len().min(dst.len());
    let main = n - n % 8;
    // SAFETY: the caller checked AVX2 support; the kernel touches only the
    // first `main` elements.
    unsafe { encode_minifloat_avx2(m, overflow, &src[..main], &mut dst[..main]) };
    let opts = crate::rounding::EncodeOptions {
        rounding: crate::rounding::Rounding::NearestEven,
        overflow,
    };
    for (o, &x) in dst[main..n].iter_mut().zip(&src[main..n]) {
        *o = m.encode(x, opts);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn encode_minifloat_avx2(m: &MiniFloat, overflow: Overflow, src: &[f32], dst: &mut [u8]) {
    let man = m.man_bits as i32;
    let shift = 23 - man;
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let round_half = _mm256_set1_epi32((1 << (shift - 1)) - 1);
    let one = _mm256_set1_epi32(1);
    let rebias = _mm256_set1_epi32((127 - m.bias) << man);
    let min_normal = _mm256_set1_epi32((m.emin() + 127) << 23);
    let magic = _mm256_set1_ps(crate::minifloat::pow2(m.emin() - man + 23) as f32);
    let max_code = _mm256_set1_epi32(m.max_finite_code() as i32);
    let inf_bits = _mm256_set1_epi32(0x7f80_0000);
    // f32::NAN is positive, so this is the bare NaN code (0 for FP6/FP4).
    let nan_code =
        _mm256_set1_epi32(m.encode(f32::NAN, crate::rounding::EncodeOptions::SATURATE) as i32);
    let over_code = {
        let opts = crate::rounding::EncodeOptions {
            rounding: crate::rounding::Rounding::NearestEven,
            overflow,
        };
        _mm256_set1_epi32(m.encode(f32::INFINITY, opts) as i32)
    };
    let sign_shift = _mm_cvtsi32_si128(31 - (m.exp_bits + m.man_bits) as i32);
    let shift_v = _mm_cvtsi32_si128(shift);
    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: `s` holds 8 floats.
        let x = _mm256_castps_si256(unsafe { _mm256_loadu_ps(s.as_ptr()) });
        let a = _mm256_and_si256(x, abs_mask);
        let sign = _mm256_srl_epi32(_mm256_andnot_si256(abs_mask, x), sign_shift);
        // Normal range: round the f32 mantissa at bit `shift`, ties to even.
        let lsb = _mm256_and_si256(_mm256_srl_epi32(a, shift_v), one);
        let rounded = _mm256_add_epi32(_mm256_add_epi32(a, round_half), lsb);
        let normal = _mm256_sub_epi32(_mm256_srl_epi32(rounded, shift_v), rebias);
        // Subnormal range: let the FPU round.
        let sum = _mm256_add_ps(_mm256_castsi256_ps(a), magic);
        let sub = _mm256_sub_epi32(_mm256_castps_si256(sum), _mm256_castps_si256(magic));
        let is_sub = _mm256_cmpgt_epi32(min_normal, a);
        let mut code = _mm256_blendv_epi8(normal, sub, is_sub);
        let over = _mm256_cmpgt_epi32(code, max_code);
        code = _mm256_blendv_epi8(code, over_code, over);
        let is_nan = _mm256_cmpgt_epi32(a, inf_bits);
        code = _mm256_blendv_epi8(code, nan_code, is_nan);
        code = _mm256_or_si256(code, sign);
        let packed16 = _mm256_packus_epi32(code, code);
        let packed8 = _mm256_packus_epi16(packed16, packed16);
        let lo = _mm256_castsi256_si128(packed8);
        let hi = _mm256_extracti128_si256::<1>(packed8);
        let word =
            (_mm_cvtsi128_si32(lo) as u32 as u64) | ((_mm_cvtsi128_si32(hi) as u32 as u64) << 32);
        d.copy_from_slice(&word.to_le_bytes());
    }
}

/// E8M0 codes to f32: `code << 23`, with code 0 (`2^-127`, an f32
/// subnormal) and 0xFF (NaN) patched.
pub(crate) fn decode_e8m0(src: &[u8], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let main = n - n % 8;
    // SAFETY: the caller checked AVX2 support.
    unsafe { decode_e8m0_avx2(&src[..main], &mut dst[..main]) };
    for (o, &c) in dst[main..n].iter_mut().zip(&src[main..n]) {
        *o = crate::e8m0::decode(c);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_e8m0_avx2(src: &[u8], dst: &mut [f32]) {
    let zero = _mm256_setzero_si256();
    let all = _mm256_set1_epi32(0xff);
    let tiny = _mm256_set1_epi32(0x0040_0000);
    let qnan = _mm256_set1_epi32(0x7fc0_0000);
    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: 8 bytes in.
        let v = _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(s.as_ptr().cast()) });
        let mut bits = _mm256_slli_epi32::<23>(v);
        bits = _mm256_blendv_epi8(bits, tiny, _mm256_cmpeq_epi32(v, zero));
        bits = _mm256_blendv_epi8(bits, qnan, _mm256_cmpeq_epi32(v, all));
        // SAFETY: 8 floats out.
        unsafe { _mm256_storeu_ps(d.as_mut_ptr(), _mm256_castsi256_ps(bits)) };
    }
}

/// f16 (little-endian bytes) to f32 with F16C.
pub(crate) fn decode_f16(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let main = n - n % 8;
    // SAFETY: the caller checked AVX2/F16C support.
    unsafe { decode_f16_f16c(&src[..main * 2], &mut dst[..main]) };
    for (o, c) in dst[main..n]
        .iter_mut()
        .zip(src[main * 2..n * 2].chunks_exact(2))
    {
        *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_f16_f16c(src: &[u8], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: 16 bytes in, 8 floats out.
        unsafe {
            let h = _mm_loadu_si128(s.as_ptr().cast());
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
}

/// f32 to f16 (little-endian bytes) with F16C, round-to-nearest-even.
pub(crate) fn encode_f16(overflow: Overflow, src: &[f32], dst: &mut [u8]) {
    let n = src.len().min(dst.len() / 2);
    let main = n - n % 8;
    // SAFETY: the caller checked AVX2/F16C support.
    unsafe { encode_f16_f16c(overflow, &src[..main], &mut dst[..main * 2]) };
    for (o, &x) in dst[main * 2..n * 2].chunks_exact_mut(2).zip(&src[main..n]) {
        o.copy_from_slice(&crate::element::encode_f16(x, overflow).to_le_bytes());
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn encode_f16_f16c(overflow: Overflow, src: &[f32], dst: &mut [u8]) {
    let max = _mm256_set1_ps(65504.0);
    let min = _mm256_set1_ps(-65504.0);
    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: 8 floats in.
        let mut x = unsafe { _mm256_loadu_ps(s.as_ptr()) };
        if overflow == Overflow::Saturate {
            // minps/maxps return their second operand when either is NaN,
            // so a NaN input passes through unchanged. Clamping first is
            // the same as saturating after rounding: everything in
            // (65504, 65520) rounds to 65504 anyway.
            x = _mm256_max_ps(min, _mm256_min_ps(max, x));
        }
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
        // SAFETY: 16 bytes out.
        unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), h) };
    }
}

/// bf16 (little-endian bytes) to f32: a 16-bit shift.
pub(crate) fn decode_bf16(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let main = n - n % 8;
    // SAFETY: the caller checked AVX2 support.
    unsafe { decode_bf16_avx2(&src[..main * 2], &mut dst[..main]) };
    for (o, c) in dst[main..n]
        .iter_mut()
        .zip(src[main * 2..n * 2].chunks_exact(2))
    {
        *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_bf16_avx2(src: &[u8], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: 16 bytes in, 8 floats out.
        unsafe {
            let h = _mm_loadu_si128(s.as_ptr().cast());
            let v = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_castsi256_ps(v));
        }
    }
}

/// f32 to bf16 (little-endian bytes), round-to-nearest-even; NaN keeps its
/// sign and top payload bits and is made quiet, as the `half` crate does.
pub(crate) fn encode_bf16(overflow: Overflow, src: &[f32], dst: &mut [u8]) {
    let n = src.len().min(dst.len() / 2);
    let main = n - n % 8;
    // SAFETY: the caller checked AVX2 support.
    unsafe { encode_bf16_avx2(overflow, &src[..main], &mut dst[..main * 2]) };
    for (o, &x) in dst[main * 2..n * 2].chunks_exact_mut(2).zip(&src[main..n]) {
        o.copy_from_slice(&crate::element::encode_bf16(x, overflow).to_le_bytes());
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn encode_bf16_avx2(overflow: Overflow, src: &[f32], dst: &mut [u8]) {
    let abs_mask = _mm256_set1_epi32(0x7fff_ffff);
    let inf = _mm256_set1_epi32(0x7f80_0000);
    let round = _mm256_set1_epi32(0x7fff);
    let one = _mm256_set1_epi32(1);
    let quiet = _mm256_set1_epi32(0x0040);
    let max = _mm256_set1_epi32(0x7f7f);
    let saturate = overflow == Overflow::Saturate;
    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(16)) {
        // SAFETY: 8 floats in.
        let x = _mm256_castps_si256(unsafe { _mm256_loadu_ps(s.as_ptr()) });
        let a = _mm256_and_si256(x, abs_mask);
        let sign = _mm256_srli_epi32::<16>(_mm256_andnot_si256(abs_mask, x));
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(a), one);
        let mut mag = _mm256_srli_epi32::<16>(_mm256_add_epi32(_mm256_add_epi32(a, round), lsb));
        if saturate {
            // Finite overflow and Inf both become the largest finite bf16.
            mag = _mm256_min_epi32(mag, max);
        }
        let nan = _mm256_or_si256(_mm256_srli_epi32::<16>(a), quiet);
        mag = _mm256_blendv_epi8(mag, nan, _mm256_cmpgt_epi32(a, inf));
        let v = _mm256_or_si256(mag, sign);
        let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(v, v));
        // SAFETY: 16 bytes out.
        unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), _mm256_castsi256_si128(packed)) };
    }
}

/// MXFP4 blocks (scale byte + 16 bytes of nibbles) to f32. The eight E2M1
/// magnitudes, multiplied by the block scale, sit in one register; a
/// permute looks them up and the code's sign bit is ORed in.
pub(crate) fn mx_dequantize_fp4(src: &[u8], dst: &mut [f32]) {
    // SAFETY: the caller checked AVX2 support and the lengths (17 bytes per
    // 32 values).
    unsafe { mx_dequantize_fp4_avx2(src, dst) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mx_dequantize_fp4_avx2(src: &[u8], dst: &mut [f32]) {
    let magnitudes = _mm256_setr_ps(0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0);
    let low_nibbles = _mm_set1_epi8(0x0f);
    let sign_of_code = _mm256_set1_epi32(8);
    for (block, out) in src.chunks_exact(17).zip(dst.chunks_exact_mut(32)) {
        let scale = _mm256_set1_ps(crate::e8m0::decode(block[0]));
        let table = _mm256_mul_ps(magnitudes, scale);
        // SAFETY: `block[1..]` holds 16 bytes.
        let packed = unsafe { _mm_loadu_si128(block[1..].as_ptr().cast()) };
        // Interleave low and high nibbles back into element order.
        let lo = _mm_and_si128(packed, low_nibbles);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(packed), low_nibbles);
        let first = _mm_unpacklo_epi8(lo, hi); // elements 0..16
        let second = _mm_unpackhi_epi8(lo, hi); // elements 16..32
        for (i, codes16) in [first, second].into_iter().enumerate() {
            for (j, codes8) in [codes16, _mm_srli_si128::<8>(codes16)]
                .into_iter()
                .enumerate()
            {
                let codes = _mm256_cvtepu8_epi32(codes8);
                let value = _mm256_permutevar8x32_ps(table, codes); // uses the low 3 bits
                let sign = _mm256_slli_epi32::<28>(_mm256_and_si256(codes, sign_of_code));
                let v = _mm256_or_ps(value, _mm256_castsi256_ps(sign));
                let offset = i * 16 + j * 8;
                // SAFETY: `out` holds 32 floats; offset + 8 <= 32.
                unsafe { _mm256_storeu_ps(out[offset..offset + 8].as_mut_ptr(), v) };
            }
        }
    }
}

/// MXFP8 blocks (scale byte + 32 codes) to f32: the FP8 decoder and one
/// multiply by the block scale.
pub(crate) fn mx_dequantize_fp8(m: &MiniFloat, src: &[u8], dst: &mut [f32]) {
    // SAFETY: the caller checked AVX2 support and the lengths (33 bytes per
    // 32 values).
    unsafe { mx_dequantize_fp8_avx2(m, src, dst) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mx_dequantize_fp8_avx2(m: &MiniFloat, src: &[u8], dst: &mut [f32]) {
    let decoder = MiniFloatDecoder::new(m);
    for (block, out) in src.chunks_exact(33).zip(dst.chunks_exact_mut(32)) {
        let scale = _mm256_set1_ps(crate::e8m0::decode(block[0]));
        for (codes, o) in block[1..].chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            // SAFETY: 16 codes in, 16 floats out.
            unsafe {
                let (lo, hi) = decoder.decode16(_mm_loadu_si128(codes.as_ptr().cast()));
                _mm256_storeu_ps(o.as_mut_ptr(), _mm256_mul_ps(lo, scale));
                _mm256_storeu_ps(o.as_mut_ptr().add(8), _mm256_mul_ps(hi, scale));
            }
        }
    }
}
