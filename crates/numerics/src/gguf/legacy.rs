//! Scalar codecs of the legacy 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! Dequantizing follows ggml's block layouts. Quantizing reproduces the PyPI
//! `gguf` package (`gguf.quants`, 0.19.0) bit for bit, which in turn matches
//! ggml's `quantize_row_*_ref`: every intermediate is an f32, products and
//! sums are separate roundings (never fused), the scale is stored as f16 with
//! round-to-nearest-even but the quants are computed with the f32 scale.
//!
//! All functions take one block: `b` is exactly the block's bytes and `y`
//! its 32 elements; the callers in `mod.rs` guarantee the lengths.

use super::layout::{f16_at, off, put_f16, QK};

/// Dequantizes one Q4_0 block: `d * (q - 8)`.
pub fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[off::Q4_0_QS..off::Q4_0_QS + QK / 2];
    let (lo, hi) = y.split_at_mut(QK / 2);
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = d * ((q & 0x0F) as i32 - 8) as f32;
        *h = d * ((q >> 4) as i32 - 8) as f32;
    }
}

/// Dequantizes one Q4_1 block: `d * q + m`.
pub fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, off::Q4_1_M);
    let qs = &b[off::Q4_1_QS..off::Q4_1_QS + QK / 2];
    let (lo, hi) = y.split_at_mut(QK / 2);
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = d * (q & 0x0F) as f32 + m;
        *h = d * (q >> 4) as f32 + m;
    }
}

/// The 32 5-bit quants of a Q5_0 / Q5_1 block.
#[inline(always)]
fn q5_values(qh: u32, qs: &[u8]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 0x0F) | (h0 << 4);
        q[j + 16] = (qs[j] >> 4) | (h1 << 4);
    }
    q
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Dequantizes one Q5_0 block: `d * (q - 16)`.
pub fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let q = q5_values(
        read_u32(b, off::Q5_0_QH),
        &b[off::Q5_0_QS..off::Q5_0_QS + QK / 2],
    );
    for (o, &q) in y.iter_mut().zip(&q) {
        *o = d * (q as i32 - 16) as f32;
    }
}

/// Dequantizes one Q5_1 block: `d * q + m`.
pub fn dequant_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, off::Q5_1_M);
    let q = q5_values(
        read_u32(b, off::Q5_1_QH),
        &b[off::Q5_1_QS..off::Q5_1_QS + QK / 2],
    );
    for (o, &q) in y.iter_mut().zip(&q) {
        *o = d * q as f32 + m;
    }
}

/// Dequantizes one Q8_0 block: `q * d`.
pub fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[off::Q8_0_QS..off::Q8_0_QS + QK]) {
        *o = q as i8 as f32 * d;
    }
}

/// The element of largest magnitude, first one on ties (numpy `argmax(abs)`);
/// NaN never wins a comparison.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut best = x[0];
    for &v in &x[1..] {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((x[0], x[0]), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `1 / d`, or 0 when `d == 0` (as `np.where(d == 0, 0, 1 / d)`).
#[inline(always)]
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// `trunc(v)` as an integer clamped to `0..=max` (NaN gives 0).
#[inline(always)]
fn trunc_clamp(v: f32, max: u8) -> u8 {
    (v.trunc() as i32).clamp(0, max as i32) as u8
}

/// Quantizes 32 floats to one Q4_0 block.
pub fn quant_q4_0(x: &[f32], b: &mut [u8]) {
    let max = signed_absmax(x);
    let d = max / -8.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    let qs = &mut b[off::Q4_0_QS..off::Q4_0_QS + QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let lo = trunc_clamp(x[j] * id + 8.5, 15);
        let hi = trunc_clamp(x[j + 16] * id + 8.5, 15);
        *q = lo | (hi << 4);
    }
}

/// Quantizes 32 floats to one Q4_1 block.
pub fn quant_q4_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    put_f16(b, off::Q4_1_M, min);
    let qs = &mut b[off::Q4_1_QS..off::Q4_1_QS + QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let lo = trunc_clamp((x[j] - min) * id + 0.5, 15);
        let hi = trunc_clamp((x[j + 16] - min) * id + 0.5, 15);
        *q = lo | (hi << 4);
    }
}

/// Packs 32 5-bit quants into `qh` (little-endian u32) and `qs`.
fn pack_q5(q: &[u8; QK], qh: &mut [u8], qs: &mut [u8]) {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= ((v >> 4) as u32 & 1) << j;
    }
    qh.copy_from_slice(&h.to_le_bytes());
    for (j, o) in qs.iter_mut().enumerate() {
        *o = (q[j] & 0x0F) | (q[j + 16] << 4);
    }
}

/// Quantizes 32 floats to one Q5_0 block.
pub fn quant_q5_0(x: &[f32], b: &mut [u8]) {
    let max = signed_absmax(x);
    let d = max / -16.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    let mut q = [0u8; QK];
    for (o, &v) in q.iter_mut().zip(x) {
        *o = trunc_clamp(v * id + 16.5, 31);
    }
    let (qh, qs) = b[off::Q5_0_QH..].split_at_mut(4);
    pack_q5(&q, qh, qs);
}

/// Quantizes 32 floats to one Q5_1 block.
pub fn quant_q5_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    put_f16(b, off::Q5_1_M, min);
    let mut q = [0u8; QK];
    for (o, &v) in q.iter_mut().zip(x) {
        *o = trunc_clamp((v - min) * id + 0.5, 31);
    }
    let (qh, qs) = b[off::Q5_1_QH..].split_at_mut(4);
    pack_q5(&q, qh, qs);
}

/// Quantizes 32 floats to one Q8_0 block (round half away from zero).
pub fn quant_q8_0(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    put_f16(b, 0, d);
    for (o, &v) in b[off::Q8_0_QS..].iter_mut().zip(x) {
        *o = ((v * id).round() as i32).clamp(-128, 127) as i8 as u8;
    }
}
