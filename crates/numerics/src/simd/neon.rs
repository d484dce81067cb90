//! Advanced SIMD (NEON) kernels (aarch64, where NEON is always present).
//!
//! Compiled and dispatched on aarch64 only; the same arithmetic as the
//! AVX2 decoder in `x86.rs`, four lanes at a time. Tails go through the
//! scalar code.

use std::arch::aarch64::*;

use crate::minifloat::{MiniFloat, Specials};

/// Decode one-code-per-byte minifloats to f32 (see `x86::decode_minifloat`).
pub(crate) fn decode_minifloat(m: &MiniFloat, src: &[u8], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let main = n - n % 4;
    let mag_bits = (m.exp_bits + m.man_bits) as i32;
    for (s, d) in src[..main]
        .chunks_exact(4)
        .zip(dst[..main].chunks_exact_mut(4))
    {
        let lanes = [s[0] as u32, s[1] as u32, s[2] as u32, s[3] as u32];
        // SAFETY: NEON is part of the aarch64 baseline; `lanes` holds 4
        // u32 and `d` 4 floats.
        unsafe {
            let v = vandq_u32(vld1q_u32(lanes.as_ptr()), vdupq_n_u32(m.code_mask() as u32));
            let mag_mask = vdupq_n_u32((1u32 << mag_bits) - 1);
            let mag = vandq_u32(v, mag_mask);
            let sign = vshlq_u32(
                vandq_u32(v, vdupq_n_u32(1u32 << mag_bits)),
                vdupq_n_s32(31 - mag_bits),
            );
            let placed = vshlq_u32(mag, vdupq_n_s32(23 - m.man_bits as i32));
            let scale = vdupq_n_f32(crate::minifloat::pow2(127 - m.bias) as f32);
            let value = vmulq_f32(vreinterpretq_f32_u32(placed), scale);
            let mut bits = vorrq_u32(vreinterpretq_u32_f32(value), sign);
            let qnan = vorrq_u32(vdupq_n_u32(0x7fc0_0000), sign);
            match m.specials {
                Specials::None => {}
                Specials::NanOnly => {
                    bits = vbslq_u32(vceqq_u32(mag, mag_mask), qnan, bits);
                }
                Specials::Ieee => {
                    let exp_mask = vdupq_n_u32(((1u32 << m.exp_bits) - 1) << m.man_bits);
                    let man_mask = vdupq_n_u32((1u32 << m.man_bits) - 1);
                    let top = vceqq_u32(vandq_u32(mag, exp_mask), exp_mask);
                    let man_zero = vceqq_u32(vandq_u32(mag, man_mask), vdupq_n_u32(0));
                    let inf = vorrq_u32(vdupq_n_u32(0x7f80_0000), sign);
                    bits = vbslq_u32(top, vbslq_u32(man_zero, inf, qnan), bits);
                }
            }
            vst1q_f32(d.as_mut_ptr(), vreinterpretq_f32_u32(bits));
        }
    }
    for (o, &c) in dst[main..n].iter_mut().zip(&src[main..n]) {
        *o = m.decode(c);
    }
}

/// bf16 (little-endian bytes) to f32: a widening shift.
pub(crate) fn decode_bf16(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let main = n - n % 4;
    for (s, d) in src[..main * 2]
        .chunks_exact(8)
        .zip(dst[..main].chunks_exact_mut(4))
    {
        // SAFETY: NEON is part of the aarch64 baseline; `s` holds 8 bytes
        // (4 halves) and `d` 4 floats.
        unsafe {
            let h = vld1_u16(s.as_ptr().cast());
            let v = vshlq_n_u32::<16>(vmovl_u16(h));
            vst1q_f32(d.as_mut_ptr(), vreinterpretq_f32_u32(v));
        }
    }
    for (o, c) in dst[main..n]
        .iter_mut()
        .zip(src[main * 2..n * 2].chunks_exact(2))
    {
        *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}
