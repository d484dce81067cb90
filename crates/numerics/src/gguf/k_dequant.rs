//! Scalar dequantizers of the 256-element K formats Q2_K .. Q8_K.
//!
//! The arithmetic order matches ggml's `dequantize_row_*` and the `gguf`
//! package's numpy code: a per-group f32 factor (`d * scale`, `dmin * min`)
//! is formed first, then each element is `factor * q - min_factor` (two
//! roundings, never fused). Each function takes one super-block: `b` is the
//! block's bytes and `y` its 256 elements; `mod.rs` guarantees the lengths.

use super::layout::{f16_at, off, scales_mins_k4, scales_q3k, QK_K};

/// Dequantizes one Q2_K block.
pub fn dequant_q2k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, off::Q2K_D);
    let dmin = f16_at(b, off::Q2K_DMIN);
    let scales = &b[..QK_K / 16];
    let qs = &b[off::Q2K_QS..off::Q2K_QS + QK_K / 4];
    for (g, out) in y.chunks_exact_mut(16).enumerate() {
        let sc = scales[g];
        let dl = d * (sc & 0x0F) as f32;
        let ml = dmin * (sc >> 4) as f32;
        // Element e = 128 * half + 32 * shift_step + l.
        let half = g / 8;
        let shift = 2 * ((g % 8) / 2);
        let base = 32 * half + 16 * (g % 2);
        for (l, o) in out.iter_mut().enumerate() {
            let q = (qs[base + l] >> shift) & 3;
            *o = dl * q as f32 - ml;
        }
    }
}

/// Dequantizes one Q3_K block.
pub fn dequant_q3k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, off::Q3K_D);
    let hmask = &b[..QK_K / 8];
    let qs = &b[off::Q3K_QS..off::Q3K_QS + QK_K / 4];
    let scales = scales_q3k(&b[off::Q3K_SCALES..off::Q3K_SCALES + 12]);
    for (g, out) in y.chunks_exact_mut(16).enumerate() {
        let dl = d * scales[g] as f32;
        let half = g / 8;
        let shift = 2 * ((g % 8) / 2);
        let hbit = g / 2; // 0..8: which bit of hmask
        let base = 16 * (g % 2);
        for (l, o) in out.iter_mut().enumerate() {
            let lo = ((qs[32 * half + base + l] >> shift) & 3) as i32;
            let h = (hmask[base + l] >> hbit) & 1;
            let q = lo - if h == 0 { 4 } else { 0 };
            *o = dl * q as f32;
        }
    }
}

/// Dequantizes one Q4_K block.
pub fn dequant_q4k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, off::Q4K_DMIN);
    let (sc, mn) = scales_mins_k4(&b[off::Q4K_SCALES..off::Q4K_SCALES + 12]);
    let qs = &b[off::Q4K_QS..off::Q4K_QS + QK_K / 2];
    for (j, out) in y.chunks_exact_mut(32).enumerate() {
        let dl = d * sc[j] as f32;
        let ml = dmin * mn[j] as f32;
        let shift = 4 * (j % 2);
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for (o, &q) in out.iter_mut().zip(q) {
            *o = dl * ((q >> shift) & 0x0F) as f32 - ml;
        }
    }
}

/// Dequantizes one Q5_K block.
pub fn dequant_q5k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, off::Q5K_DMIN);
    let (sc, mn) = scales_mins_k4(&b[off::Q5K_SCALES..off::Q5K_SCALES + 12]);
    let qh = &b[off::Q5K_QH..off::Q5K_QH + QK_K / 8];
    let qs = &b[off::Q5K_QS..off::Q5K_QS + QK_K / 2];
    for (j, out) in y.chunks_exact_mut(32).enumerate() {
        let dl = d * sc[j] as f32;
        let ml = dmin * mn[j] as f32;
        let shift = 4 * (j % 2);
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for ((o, &q), &h) in out.iter_mut().zip(q).zip(qh) {
            let v = ((q >> shift) & 0x0F) | (((h >> j) & 1) << 4);
            *o = dl * v as f32 - ml;
        }
    }
}

/// Dequantizes one Q6_K block.
pub fn dequant_q6k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, off::Q6K_D);
    let scales = &b[off::Q6K_SCALES..off::Q6K_SCALES + QK_K / 16];
    for (half, out) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[off::Q6K_QH + 32 * half..off::Q6K_QH + 32 * half + 32];
        let sc = &scales[8 * half..8 * half + 8];
        // Quarter k of the 128 elements: low nibble of ql[l] / ql[l + 32]
        // for k = 0 / 1, high nibble for k = 2 / 3; high bits 2k..2k+2 of qh[l].
        for (k, part) in out.chunks_exact_mut(32).enumerate() {
            let lq = &ql[32 * (k % 2)..32 * (k % 2) + 32];
            let lshift = 4 * (k / 2);
            let hshift = 2 * k;
            let d0 = d * sc[2 * k] as i8 as f32;
            let d1 = d * sc[2 * k + 1] as i8 as f32;
            for (l, o) in part.iter_mut().enumerate() {
                let q = ((lq[l] >> lshift) & 0x0F) | (((qh[l] >> hshift) & 3) << 4);
                let dl = if l < 16 { d0 } else { d1 };
                *o = dl * (q as i32 - 32) as f32;
            }
        }
    }
}

/// Dequantizes one Q8_K block: `d * q`.
pub fn dequant_q8k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[off::Q8K_QS..off::Q8K_QS + QK_K]) {
        *o = d * q as i8 as f32;
    }
}
