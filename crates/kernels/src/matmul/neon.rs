//! aarch64 kernels of the matmul in Advanced SIMD (NEON): the float row
//! dots, the int8 row dots and the 6x16 GEMM micro-kernel, the arithmetic
//! of the AVX2 kernels in `x86/` four f32 lanes at a time.
//!
//! - Float rows (f32, f16, bf16, E4M3, MXFP8-E4M3): W is decoded to f32 in
//!   registers and multiplied into four `float32x4_t` accumulators with
//!   `vfmaq_f32`. f16 converts with `FCVTL`; bf16 is a widening
//!   shift by 16. E4M3 goes through f16: the 7 magnitude bits shifted left
//!   by 7 form an f16 whose exponent and mantissa fields equal the E4M3
//!   ones, so the f16 value is the E4M3 value times `2^-8` exactly
//!   (subnormals included); the `2^8` is applied once at the end. The NaN
//!   codes (`0x7F`, `0xFF`) are patched to an f16 NaN.
//! - Int8 rows (Q8_0, Q4_0, Q4_1, MXFP4, Q4_K, Q5_K, Q6_K) against x
//!   quantized to int8 blocks ([`XRow`], in element order): 16 weights
//!   times 16 activations with `vmull_s8` + `vmlal_high_s8` (two products
//!   per i16 lane: `|w| <= 128`, `|x| <= 127` give at most 32512, so no
//!   lane overflows) and `vpadalq_s16` into four i32 lanes. The weights
//!   are signed bytes after unpacking (`q - 8` for Q4_0, the doubled E2M1
//!   values for MXFP4, 4/5/6-bit unsigned quants below 64); the K formats
//!   multiply each sub-block's i32 lanes by its scale (`vmlaq_n_s32`) and
//!   convert once per super-block. Baseline NEON only: the optional
//!   `dotprod` extension (SDOT) is not used, so every aarch64 CPU runs
//!   these.
//! - The micro-kernel keeps the 6x16 tile of C in 24 `float32x4_t`
//!   accumulators; each depth step loads 4 vectors of B and the 6 values
//!   of A (a `float32x4_t` and a `float32x2_t`) and broadcasts A from its
//!   lanes with `vfmaq_laneq_f32` / `vfmaq_lane_f32` (30 of the 32 vector
//!   registers).
//!
//! Every kernel is a safe function that takes a [`Neon`] token, which can
//! only be made when [`SimdLevel::Neon`] is selected and supported, so the
//! `target_feature(enable = "neon")` calls inside are sound. Memory is
//! reached only through slices: rows are walked with `chunks_exact`, and
//! every vector load or store goes through a helper that first slices
//! exactly the lanes it touches (`&s[..16]`), so a short slice panics
//! instead of reading out of bounds. Tails that do not fill a vector run
//! the scalar twin in `dot_scalar.rs`.

use std::arch::aarch64::*;

use exodus_numerics::cpu::SimdLevel;

use super::dot_scalar::{self, e8m0_f32, f16_at, scales_mins_k4, FP4_X2};
use super::quant_x::XRow;
use crate::tiling::{MR, NR};

/// Proof that NEON kernels may run: [`SimdLevel::Neon`] was selected and
/// the CPU supports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Neon(());

impl Neon {
    /// The token, if `level` is [`SimdLevel::Neon`] and supported.
    pub(crate) fn new(level: SimdLevel) -> Option<Neon> {
        (level == SimdLevel::Neon && level.is_supported()).then_some(Neon(()))
    }
}

/// 4 f32 from `s[..4]`.
#[inline]
#[target_feature(enable = "neon")]
fn ld_f32(s: &[f32]) -> float32x4_t {
    let s = &s[..4];
    // SAFETY: `s` holds the 4 floats read.
    unsafe { vld1q_f32(s.as_ptr()) }
}

/// 2 f32 from `s[..2]`.
#[inline]
#[target_feature(enable = "neon")]
fn ld_f32x2(s: &[f32]) -> float32x2_t {
    let s = &s[..2];
    // SAFETY: `s` holds the 2 floats read.
    unsafe { vld1_f32(s.as_ptr()) }
}

/// Stores 4 f32 to `d[..4]`.
#[inline]
#[target_feature(enable = "neon")]
fn st_f32(d: &mut [f32], v: float32x4_t) {
    let d = &mut d[..4];
    // SAFETY: `d` holds the 4 floats written.
    unsafe { vst1q_f32(d.as_mut_ptr(), v) }
}

/// 16 bytes of `s[..16]`.
#[inline]
#[target_feature(enable = "neon")]
fn ld_u8(s: &[u8]) -> uint8x16_t {
    let s = &s[..16];
    // SAFETY: `s` holds the 16 bytes read (byte loads need no alignment).
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// 16 int8 codes of `s[..16]`.
#[inline]
#[target_feature(enable = "neon")]
fn ld_i8(s: &[i8]) -> int8x16_t {
    let s = &s[..16];
    // SAFETY: `s` holds the 16 codes read.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// Sum of the lanes of four accumulators.
#[inline]
#[target_feature(enable = "neon")]
fn sum4(acc: [float32x4_t; 4]) -> f32 {
    vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ))
}

/// Sum of `w[i] * x[i]` over two f32 slices of equal length.
pub(crate) fn dot_f32(t: Neon, w: &[f32], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { dot_f32_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn dot_f32_neon(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut wc = w.chunks_exact(16);
    let mut xc = x.chunks_exact(16);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for (u, a) in acc.iter_mut().enumerate() {
            *a = vfmaq_f32(*a, ld_f32(&wb[4 * u..]), ld_f32(&xb[4 * u..]));
        }
    }
    sum4(acc) + dot_scalar::dot_f32(wc.remainder(), xc.remainder())
}

/// Row of f32 weights (little-endian bytes, `4 * x.len()`) · x.
pub(crate) fn f32_row(t: Neon, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { f32_row_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn f32_row_neon(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut wc = w.chunks_exact(64);
    let mut xc = x.chunks_exact(16);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for (u, a) in acc.iter_mut().enumerate() {
            // aarch64 is little-endian: the 16 bytes are 4 f32 as stored.
            let v = vreinterpretq_f32_u8(ld_u8(&wb[16 * u..]));
            *a = vfmaq_f32(*a, v, ld_f32(&xb[4 * u..]));
        }
    }
    sum4(acc) + dot_scalar::f32_row(wc.remainder(), xc.remainder())
}

/// 8 f16 bit patterns to 8 f32 (lanes `0..4`, `4..8`), exactly, with
/// `FCVTL` / `FCVTL2`. Written in `asm!` because the `vcvt_f32_f16`
/// intrinsic is newer than the workspace MSRV; the instructions are
/// baseline Advanced SIMD.
#[inline]
#[target_feature(enable = "neon")]
fn f16x8(h: uint16x8_t) -> [float32x4_t; 2] {
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: FCVTL/FCVTL2 (half to single precision) are in every
    // aarch64 CPU's Advanced SIMD; they read only the register `h` and
    // write only `lo` and `hi` (no memory, stack or flags). `lo` is a
    // non-late output, so it is not allocated over `h`, which the second
    // instruction still reads.
    unsafe {
        std::arch::asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = lateout(vreg) hi,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    [lo, hi]
}

/// Row of f16 weights · x.
pub(crate) fn f16_row(t: Neon, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { f16_row_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn f16_row_neon(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut wc = w.chunks_exact(32);
    let mut xc = x.chunks_exact(16);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for u in 0..2 {
            let [lo, hi] = f16x8(vreinterpretq_u16_u8(ld_u8(&wb[16 * u..])));
            acc[2 * u] = vfmaq_f32(acc[2 * u], lo, ld_f32(&xb[8 * u..]));
            acc[2 * u + 1] = vfmaq_f32(acc[2 * u + 1], hi, ld_f32(&xb[8 * u + 4..]));
        }
    }
    sum4(acc) + dot_scalar::f16_row(wc.remainder(), xc.remainder())
}

/// Row of bf16 weights · x.
pub(crate) fn bf16_row(t: Neon, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { bf16_row_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn bf16_row_neon(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut wc = w.chunks_exact(32);
    let mut xc = x.chunks_exact(16);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        for u in 0..2 {
            let h = vreinterpretq_u16_u8(ld_u8(&wb[16 * u..]));
            let lo = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h)));
            let hi = vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h));
            acc[2 * u] = vfmaq_f32(acc[2 * u], lo, ld_f32(&xb[8 * u..]));
            acc[2 * u + 1] = vfmaq_f32(acc[2 * u + 1], hi, ld_f32(&xb[8 * u + 4..]));
        }
    }
    sum4(acc) + dot_scalar::bf16_row(wc.remainder(), xc.remainder())
}

/// 8 E4M3 codes to the f16 bit patterns of their values times `2^-8`.
/// Each code goes to the high byte of a 16-bit lane; an arithmetic shift
/// right by one leaves the sign at bit 15, a copy of it at bit 14 (then
/// cleared) and the magnitude at bits 7..13, i.e. `sign << 8 | mag << 7`.
/// The NaN codes (magnitude `0x7F`) get the f16 exponent `0x1F` OR-ed in,
/// which makes them an f16 NaN (their mantissa is non-zero).
#[inline]
#[target_feature(enable = "neon")]
fn e4m3x8_f16(c: uint8x8_t) -> uint16x8_t {
    let v = vreinterpretq_s16_u16(vshll_n_u8::<8>(c));
    let h = vandq_u16(
        vreinterpretq_u16_s16(vshrq_n_s16::<1>(v)),
        vdupq_n_u16(!0x4000),
    );
    let nan = vceq_u8(vand_u8(c, vdup_n_u8(0x7F)), vdup_n_u8(0x7F));
    let nan = vreinterpretq_u16_s16(vmovl_s8(vreinterpret_s8_u8(nan)));
    vorrq_u16(h, vandq_u16(nan, vdupq_n_u16(0x7E00)))
}

/// 16 E4M3 codes to four vectors of 4 f32 (codes `0..4`, `4..8`, `8..12`,
/// `12..16`), each the value times `2^-8`.
#[inline]
#[target_feature(enable = "neon")]
fn e4m3x16(c: uint8x16_t) -> [float32x4_t; 4] {
    let [w0, w1] = f16x8(e4m3x8_f16(vget_low_u8(c)));
    let [w2, w3] = f16x8(e4m3x8_f16(vget_high_u8(c)));
    [w0, w1, w2, w3]
}

/// E4M3 codes · x (no scale applied).
pub(crate) fn e4m3_row(t: Neon, codes: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { e4m3_row_neon(codes, x) }
}

#[target_feature(enable = "neon")]
fn e4m3_row_neon(codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut wc = codes.chunks_exact(16);
    let mut xc = x.chunks_exact(16);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        let w = e4m3x16(ld_u8(wb));
        for (u, a) in acc.iter_mut().enumerate() {
            *a = vfmaq_f32(*a, w[u], ld_f32(&xb[4 * u..]));
        }
    }
    // The 2^-8 of the f16 decode, undone once.
    sum4(acc) * 256.0 + dot_scalar::e4m3_row(wc.remainder(), xc.remainder())
}

/// MXFP8-E4M3 blocks (E8M0 scale byte + 32 codes) · x.
pub(crate) fn mxfp8_row(t: Neon, w: &[u8], x: &[f32]) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { mxfp8_row_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn mxfp8_row_neon(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, xb) in w.chunks_exact(33).zip(x.chunks_exact(32)) {
        let w0 = e4m3x16(ld_u8(&b[1..]));
        let w1 = e4m3x16(ld_u8(&b[17..]));
        let mut blk = vmulq_f32(w0[0], ld_f32(xb));
        for (u, &v) in w0.iter().chain(&w1).enumerate().skip(1) {
            blk = vfmaq_f32(blk, v, ld_f32(&xb[4 * u..]));
        }
        acc = vfmaq_n_f32(acc, blk, e8m0_f32(b[0]));
    }
    // The 2^-8 of the f16 decode, undone once.
    vaddvq_f32(acc) * 256.0
}

/// `acc + sum w[i] * x[i]` over 16 signed byte pairs, in 4 i32 lanes.
/// Each i16 lane holds two products, so `|w| <= 128` and `|x| <= 127`
/// (at most 32512) cannot overflow.
#[inline]
#[target_feature(enable = "neon")]
fn dot16(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let p = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    vpadalq_s16(acc, vmlal_high_s8(p, w, x))
}

/// `sum w * x` of 32 weights (`w0`: elements 0..16, `w1`: 16..32) and the
/// 32 int8 activations `xq[..32]`, in 4 i32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn dot32(w0: int8x16_t, w1: int8x16_t, xq: &[i8]) -> int32x4_t {
    let s = dot16(vdupq_n_s32(0), w0, ld_i8(xq));
    dot16(s, w1, ld_i8(&xq[16..]))
}

/// 16 bytes as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// Low nibbles (elements 0..16) and high nibbles (16..32) of the 16 packed
/// bytes `qs[..16]` of a legacy 4-bit block, as bytes `0..16`.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles32(qs: &[u8]) -> (uint8x16_t, uint8x16_t) {
    let b = ld_u8(qs);
    (vandq_u8(b, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(b))
}

/// Q8_0 row · int8 x.
pub(crate) fn q8_0_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { q8_0_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn q8_0_neon(w: &[u8], x: XRow) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for ((b, xq), &xd) in w.chunks_exact(34).zip(x.q.chunks_exact(32)).zip(x.d) {
        let s = dot32(s8(ld_u8(&b[2..])), s8(ld_u8(&b[18..])), xq);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(b, 0) * xd);
    }
    vaddvq_f32(acc)
}

/// Q4_0 row · int8 x: `d * (q - 8)`.
pub(crate) fn q4_0_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { q4_0_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn q4_0_neon(w: &[u8], x: XRow) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let eight = vdupq_n_s8(8);
    for ((b, xq), &xd) in w.chunks_exact(18).zip(x.q.chunks_exact(32)).zip(x.d) {
        let (lo, hi) = nibbles32(&b[2..]);
        let s = dot32(vsubq_s8(s8(lo), eight), vsubq_s8(s8(hi), eight), xq);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(b, 0) * xd);
    }
    vaddvq_f32(acc)
}

/// Q4_1 row · int8 x: `d * q + m`.
pub(crate) fn q4_1_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { q4_1_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn q4_1_neon(w: &[u8], x: XRow) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut mins = 0f32;
    for (((b, xq), &xd), &xs) in w
        .chunks_exact(20)
        .zip(x.q.chunks_exact(32))
        .zip(x.d)
        .zip(x.sums)
    {
        let (lo, hi) = nibbles32(&b[4..]);
        let s = dot32(s8(lo), s8(hi), xq);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(b, 0) * xd);
        mins += f16_at(b, 2) * xd * xs as f32;
    }
    vaddvq_f32(acc) + mins
}

/// MXFP4 row · int8 x (element `2j` in the low nibble of byte `j`; x in
/// element order).
pub(crate) fn mxfp4_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { mxfp4_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn mxfp4_neon(w: &[u8], x: XRow) -> f32 {
    let lut = ld_i8(&FP4_X2);
    let mut acc = vdupq_n_f32(0.0);
    for ((b, xq), &xd) in w.chunks_exact(17).zip(x.q.chunks_exact(32)).zip(x.d) {
        // Doubled E2M1 values of the low (even elements) and high (odd
        // elements) nibbles, interleaved back into element order.
        let (lo, hi) = nibbles32(&b[1..]);
        let (lo, hi) = (vqtbl1q_s8(lut, lo), vqtbl1q_s8(lut, hi));
        let s = dot32(vzip1q_s8(lo, hi), vzip2q_s8(lo, hi), xq);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), e8m0_f32(b[0]) * 0.5 * xd);
    }
    vaddvq_f32(acc)
}

/// Sub-blocks `2i` (quants `lo`) and `2i + 1` (quants `hi`) of a Q4_K /
/// Q5_K block dotted with x, each times its 6-bit scale, added to `sumi`.
/// `lo` and `hi` are the 32 quants of each (two vectors of 16, below 32).
#[inline]
#[target_feature(enable = "neon")]
fn k4_pair(
    sumi: int32x4_t,
    lo: [uint8x16_t; 2],
    hi: [uint8x16_t; 2],
    xq: &[i8],
    i: usize,
    sc: &[u8; 8],
) -> int32x4_t {
    let s0 = dot32(s8(lo[0]), s8(lo[1]), &xq[64 * i..]);
    let s1 = dot32(s8(hi[0]), s8(hi[1]), &xq[64 * i + 32..]);
    let sumi = vmlaq_n_s32(sumi, s0, sc[2 * i] as i32);
    vmlaq_n_s32(sumi, s1, sc[2 * i + 1] as i32)
}

/// Adds a finished Q4_K / Q5_K block (`b`) to the row's sums: `d * xd *
/// sumi` into `acc`, and `dmin * xd * sum(mn[j] * x sums of sub-block j)`
/// into `mins` (subtracted at the end).
#[inline]
#[target_feature(enable = "neon")]
fn k4_finish(
    b: &[u8],
    sumi: int32x4_t,
    mn: &[u8; 8],
    bs: &[i32],
    xd: f32,
    acc: &mut float32x4_t,
    mins: &mut f32,
) {
    let summ: i32 = (0..8)
        .map(|j| mn[j] as i32 * (bs[2 * j] + bs[2 * j + 1]))
        .sum();
    *acc = vfmaq_n_f32(*acc, vcvtq_f32_s32(sumi), f16_at(b, 0) * xd);
    *mins += f16_at(b, 2) * xd * summ as f32;
}

/// Q4_K row · int8 x (256-blocks with 16-value sums).
pub(crate) fn q4k_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { q4k_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn q4k_neon(w: &[u8], x: XRow) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut mins = 0f32;
    let m = vdupq_n_u8(0x0F);
    for (((b, xq), &xd), bs) in w
        .chunks_exact(144)
        .zip(x.q.chunks_exact(256))
        .zip(x.d)
        .zip(x.sums.chunks_exact(16))
    {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let mut sumi = vdupq_n_s32(0);
        for i in 0..4 {
            let q = [ld_u8(&b[16 + 32 * i..]), ld_u8(&b[32 + 32 * i..])];
            let lo = q.map(|v| vandq_u8(v, m));
            let hi = q.map(|v| vshrq_n_u8::<4>(v));
            sumi = k4_pair(sumi, lo, hi, xq, i, &sc);
        }
        k4_finish(b, sumi, &mn, bs, xd, &mut acc, &mut mins);
    }
    vaddvq_f32(acc) - mins
}

/// Bit `bit` of each byte of `qh`, moved to bit 4 (the 5th bit of a Q5_K
/// quant).
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bit(qh: uint8x16_t, bit: usize) -> uint8x16_t {
    let shifted = vshlq_u8(qh, vdupq_n_s8(-(bit as i8)));
    vshlq_n_u8::<4>(vandq_u8(shifted, vdupq_n_u8(1)))
}

/// Q5_K row · int8 x.
pub(crate) fn q5k_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { q5k_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn q5k_neon(w: &[u8], x: XRow) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut mins = 0f32;
    let m = vdupq_n_u8(0x0F);
    for (((b, xq), &xd), bs) in w
        .chunks_exact(176)
        .zip(x.q.chunks_exact(256))
        .zip(x.d)
        .zip(x.sums.chunks_exact(16))
    {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        // Bit j of qh[l] is the 5th bit of element l of sub-block j.
        let qh = [ld_u8(&b[16..]), ld_u8(&b[32..])];
        let mut sumi = vdupq_n_s32(0);
        for i in 0..4 {
            let q = [ld_u8(&b[48 + 32 * i..]), ld_u8(&b[64 + 32 * i..])];
            let lo = [0, 1].map(|h| vorrq_u8(vandq_u8(q[h], m), fifth_bit(qh[h], 2 * i)));
            let hi = [0, 1].map(|h| vorrq_u8(vshrq_n_u8::<4>(q[h]), fifth_bit(qh[h], 2 * i + 1)));
            sumi = k4_pair(sumi, lo, hi, xq, i, &sc);
        }
        k4_finish(b, sumi, &mn, bs, xd, &mut acc, &mut mins);
    }
    vaddvq_f32(acc) - mins
}

/// Q6_K row · int8 x: `d * scale_g * (q - 32)` per 16-value group; the
/// `- 32` is applied once per block through the x code sums.
pub(crate) fn q6k_row(t: Neon, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves NEON.
    unsafe { q6k_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn q6k_neon(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    let m4 = vdupq_n_u8(0x0F);
    let m2 = vdupq_n_u8(3);
    for (((b, xq), &xd), bs) in w
        .chunks_exact(210)
        .zip(x.q.chunks_exact(256))
        .zip(x.d)
        .zip(x.sums.chunks_exact(16))
    {
        let sc = &b[192..208];
        let mut sumi = vdupq_n_s32(0);
        for half in 0..2 {
            let qh = [ld_u8(&b[128 + 32 * half..]), ld_u8(&b[144 + 32 * half..])];
            for k in 0..4 {
                let lq = &b[64 * half + 32 * (k % 2)..];
                let hs = vdupq_n_s8(-(2 * k as i8));
                for g in 0..2 {
                    let l = ld_u8(&lq[16 * g..]);
                    let low = if k < 2 {
                        vandq_u8(l, m4)
                    } else {
                        vshrq_n_u8::<4>(l)
                    };
                    let h = vandq_u8(vshlq_u8(qh[g], hs), m2);
                    let q = vorrq_u8(low, vshlq_n_u8::<4>(h));
                    let at = 128 * half + 32 * k + 16 * g;
                    let s = dot16(vdupq_n_s32(0), s8(q), ld_i8(&xq[at..]));
                    sumi = vmlaq_n_s32(sumi, s, sc[8 * half + 2 * k + g] as i8 as i32);
                }
            }
        }
        let offset: i32 = (0..16).map(|g| sc[g] as i8 as i32 * bs[g]).sum();
        acc += f16_at(b, 208) * xd * (vaddvq_s32(sumi) - 32 * offset) as f32;
    }
    acc
}

/// `C (+)= A · B` for one 6x16 tile; `accumulate == false` overwrites C.
///
/// Packed layouts (made by `prefill.rs`, as for `x86::gemm`): the A
/// sliver is `kc` groups of [`MR`] values (`a[p * 6 + i] = x[i, p]`), the
/// B sliver `kc` groups of [`NR`] values (`b[p * 16 + j] = W[j, p]`); C is
/// row-major with leading dimension `ldc`.
///
/// Panics if a slice is too short for `kc` and `ldc` (an internal bug).
pub(crate) fn kernel_6x16(
    t: Neon,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let _ = t;
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    assert!(ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
    // SAFETY: the token proves NEON.
    unsafe { kernel_6x16_neon(&a[..kc * MR], &b[..kc * NR], c, ldc, accumulate) }
}

#[target_feature(enable = "neon")]
fn kernel_6x16_neon(a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    let mut acc = [[vdupq_n_f32(0.0); 4]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        let bv = [
            ld_f32(bp),
            ld_f32(&bp[4..]),
            ld_f32(&bp[8..]),
            ld_f32(&bp[12..]),
        ];
        let a03 = ld_f32(ap);
        let a45 = ld_f32x2(&ap[4..]);
        for (h, &bh) in bv.iter().enumerate() {
            acc[0][h] = vfmaq_laneq_f32::<0>(acc[0][h], bh, a03);
            acc[1][h] = vfmaq_laneq_f32::<1>(acc[1][h], bh, a03);
            acc[2][h] = vfmaq_laneq_f32::<2>(acc[2][h], bh, a03);
            acc[3][h] = vfmaq_laneq_f32::<3>(acc[3][h], bh, a03);
            acc[4][h] = vfmaq_lane_f32::<0>(acc[4][h], bh, a45);
            acc[5][h] = vfmaq_lane_f32::<1>(acc[5][h], bh, a45);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let ci = &mut c[i * ldc..i * ldc + NR];
        for (h, &v) in row.iter().enumerate() {
            let v = if accumulate {
                vaddq_f32(v, ld_f32(&ci[4 * h..]))
            } else {
                v
            };
            st_f32(&mut ci[4 * h..], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::matmul::quant_x::QuantX;
    use exodus_numerics::sample::SplitMix64;
    use exodus_numerics::{bulk, ElementFormat};

    fn token() -> Neon {
        Neon::new(SimdLevel::Neon).expect("NEON is supported on every aarch64 CPU")
    }

    /// Values in `[-1, 1)`.
    fn values(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    /// `got` equals `want` up to f32 reordering of terms whose absolute
    /// values sum to `mag`; a NaN `want` needs a NaN `got`.
    fn assert_close(got: f32, want: f32, mag: f32, what: &str) {
        if want.is_nan() {
            assert!(got.is_nan(), "{what}: {got} vs NaN");
        } else {
            assert!(
                (got - want).abs() <= 1e-5 * mag + 1e-30,
                "{what}: {got} vs {want} (terms {mag})"
            );
        }
    }

    /// Sum of `|term(i)|` for `i in 0..n`.
    fn mag(n: usize, term: impl Fn(usize) -> f32) -> f32 {
        (0..n).map(|i| term(i).abs()).sum()
    }

    /// Ragged lengths: empty, shorter than a vector, odd vector counts,
    /// and a tail after whole vectors.
    const LENS: [usize; 9] = [0, 1, 3, 15, 16, 17, 33, 64, 131];

    #[test]
    fn float_rows_match_scalar() {
        let t = token();
        let mut rng = SplitMix64::new(1);
        for &n in &LENS {
            let x = values(n, &mut rng);
            let wf = values(n, &mut rng);
            let m = mag(n, |i| wf[i] * x[i]);
            let what = format!("n = {n}");

            assert_close(dot_f32(t, &wf, &x), dot_scalar::dot_f32(&wf, &x), m, &what);

            let w32: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
            let want = dot_scalar::f32_row(&w32, &x);
            assert_close(f32_row(t, &w32, &x), want, m, &what);

            let w16: Vec<u8> = wf
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect();
            let want = dot_scalar::f16_row(&w16, &x);
            assert_close(f16_row(t, &w16, &x), want, m, &what);

            let wb: Vec<u8> = wf
                .iter()
                .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                .collect();
            let want = dot_scalar::bf16_row(&wb, &x);
            assert_close(bf16_row(t, &wb, &x), want, m, &what);
        }
    }

    #[test]
    fn f16_row_converts_specials() {
        let t = token();
        // Subnormal, largest finite, negative zero: exact against scalar.
        let w: Vec<u8> = [
            0x0001u16, 0x03FF, 0x7BFF, 0x8000, 0xFBFF, 0x0400, 0x3C00, 0xBC00,
        ]
        .iter()
        .cycle()
        .take(16)
        .flat_map(|h| h.to_le_bytes())
        .collect();
        let x = [1.0f32; 16];
        let scalar = dot_scalar::f16_row(&w, &x);
        assert_close(f16_row(t, &w, &x), scalar, 4.0 * 65504.0, "specials");
        // An infinity and a NaN in the vector part propagate.
        for (h, nan) in [(0x7C00u16, false), (0x7E01, true)] {
            let mut w = w.clone();
            w[6..8].copy_from_slice(&h.to_le_bytes());
            let got = f16_row(t, &w, &x);
            assert!(
                if nan { got.is_nan() } else { got.is_infinite() },
                "{h:#06x}: {got}"
            );
        }
    }

    #[test]
    fn e4m3_decodes_every_code() {
        let _ = token();
        let table = bulk::decode_table(ElementFormat::Fp8E4M3).expect("E4M3 table");
        for chunk in 0..16u8 {
            let codes: Vec<u8> = (0..16).map(|i| chunk * 16 + i).collect();
            let mut got = [0f32; 16];
            // SAFETY: NEON was proven by the token above.
            unsafe {
                let v = e4m3x16(ld_u8(&codes));
                for (u, w) in v.iter().enumerate() {
                    st_f32(&mut got[4 * u..], *w);
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

    #[test]
    fn e4m3_rows_match_scalar() {
        let t = token();
        let table = bulk::decode_table(ElementFormat::Fp8E4M3).expect("E4M3 table");
        let mut rng = SplitMix64::new(2);
        for &n in &LENS {
            let x = values(n, &mut rng);
            // Every code but the two NaNs.
            let codes: Vec<u8> = (0..n)
                .map(|_| match rng.next_u64() as u8 {
                    c @ (0x7F | 0xFF) => c - 1,
                    c => c,
                })
                .collect();
            let m = mag(n, |i| table[codes[i] as usize] * x[i]);
            let want = dot_scalar::e4m3_row(&codes, &x);
            assert_close(e4m3_row(t, &codes, &x), want, m, &format!("n = {n}"));
            // A NaN code anywhere (vector part or tail) makes the dot NaN.
            let spots = if n == 0 {
                vec![]
            } else {
                vec![0, n / 2, n - 1]
            };
            for at in spots {
                for nan in [0x7F, 0xFF] {
                    let mut c = codes.clone();
                    c[at] = nan;
                    let got = e4m3_row(t, &c, &x);
                    assert!(got.is_nan(), "n = {n}, NaN {nan:#04x} at {at}: {got}");
                }
            }
        }
    }

    #[test]
    fn mxfp8_row_matches_scalar() {
        let t = token();
        let mut rng = SplitMix64::new(3);
        for blocks in [0, 1, 3, 5] {
            let x = values(32 * blocks, &mut rng);
            let mut w = Vec::new();
            for b in 0..blocks {
                w.push(120 + (b as u8 % 14));
                w.extend((0..32).map(|_| (rng.next_u64() as u8) & 0xFE));
            }
            let block = |i: usize| dot_scalar::mxfp8_row(&w[33 * i..33 * i + 33], &x[32 * i..]);
            let m = mag(blocks, block);
            let want = dot_scalar::mxfp8_row(&w, &x);
            assert_close(mxfp8_row(t, &w, &x), want, m, &format!("{blocks} blocks"));
            if blocks > 0 {
                w[33 * (blocks - 1) + 20] = 0xFF;
                assert!(mxfp8_row(t, &w, &x).is_nan());
            }
        }
    }

    /// An int8 row kernel and its scalar twin, with the block layout they
    /// read.
    struct IntKind {
        /// Bytes per block of W.
        bytes: usize,
        /// `(block, group)` of the x quantization.
        x: (usize, usize),
        /// Offsets of the f16 scales in a block (set to moderate values).
        scales: &'static [usize],
        neon: fn(Neon, &[u8], XRow) -> f32,
        scalar: fn(&[u8], XRow) -> f32,
        /// Byte 0 is an E8M0 scale (set to `2^-7 ..= 2^6`).
        e8m0: bool,
    }

    /// `kind`'s NEON kernel against its scalar twin on a random row of
    /// `blocks` blocks.
    fn int_case(kind: &IntKind, blocks: usize) {
        let t = token();
        let mut rng = SplitMix64::new(blocks as u64 * 1000 + kind.bytes as u64);
        let (qb, group) = kind.x;
        let k = blocks * qb;
        let x: Vec<f32> = (0..k).map(|_| rng.normal() as f32).collect();
        let qx = QuantX::new(&x, 1, k, qb, group);
        let xr = qx.row(0);
        let mut w = rng.bytes(blocks * kind.bytes);
        for b in w.chunks_exact_mut(kind.bytes) {
            for &at in kind.scales {
                let d = f16::from_f32((rng.uniform() as f32 + 0.1) * 0.05);
                b[at..at + 2].copy_from_slice(&d.to_le_bytes());
            }
            if kind.e8m0 {
                b[0] = 120 + (rng.next_u64() % 14) as u8;
            }
        }
        let ng = qb / group;
        let block = |i: usize| {
            let xi = XRow {
                q: &xr.q[qb * i..qb * (i + 1)],
                d: &xr.d[i..i + 1],
                sums: &xr.sums[ng * i..ng * (i + 1)],
            };
            (kind.scalar)(&w[kind.bytes * i..kind.bytes * (i + 1)], xi)
        };
        let m = mag(blocks, block);
        let want = (kind.scalar)(&w, xr);
        let got = (kind.neon)(t, &w, xr);
        let what = format!("{blocks} blocks of {} bytes", kind.bytes);
        assert_close(got, want, m, &what);
    }

    #[test]
    fn int8_rows_match_scalar() {
        let kinds = [
            IntKind {
                bytes: 34,
                x: (32, 32),
                scales: &[0],
                neon: q8_0_row,
                scalar: dot_scalar::q8_0_row,
                e8m0: false,
            },
            IntKind {
                bytes: 18,
                x: (32, 32),
                scales: &[0],
                neon: q4_0_row,
                scalar: dot_scalar::q4_0_row,
                e8m0: false,
            },
            IntKind {
                bytes: 20,
                x: (32, 32),
                scales: &[0, 2],
                neon: q4_1_row,
                scalar: dot_scalar::q4_1_row,
                e8m0: false,
            },
            IntKind {
                bytes: 17,
                x: (32, 32),
                scales: &[],
                neon: mxfp4_row,
                scalar: dot_scalar::mxfp4_row,
                e8m0: true,
            },
            IntKind {
                bytes: 144,
                x: (256, 16),
                scales: &[0, 2],
                neon: q4k_row,
                scalar: dot_scalar::q4k_row,
                e8m0: false,
            },
            IntKind {
                bytes: 176,
                x: (256, 16),
                scales: &[0, 2],
                neon: q5k_row,
                scalar: dot_scalar::q5k_row,
                e8m0: false,
            },
            IntKind {
                bytes: 210,
                x: (256, 16),
                scales: &[208],
                neon: q6k_row,
                scalar: dot_scalar::q6k_row,
                e8m0: false,
            },
        ];
        for kind in &kinds {
            for blocks in [0, 1, 2, 3, 7] {
                int_case(kind, blocks);
            }
        }
    }

    #[test]
    fn int8_extremes_are_exact_sums() {
        // Q8_0 with every weight -128 and x at +-127: the largest i16 pair
        // sums; the result must equal the scalar one exactly (one block,
        // one scale, integer sum).
        let t = token();
        let mut w = vec![0x80u8; 34];
        w[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        for sign in [1.0f32, -1.0] {
            let x = vec![sign; 32];
            let qx = QuantX::new(&x, 1, 32, 32, 32);
            let (got, want) = (
                q8_0_row(t, &w, qx.row(0)),
                dot_scalar::q8_0_row(&w, qx.row(0)),
            );
            assert_eq!(got, want);
            assert_eq!(want, -sign * 128.0 * 32.0);
        }
    }

    #[test]
    fn gemm_kernel_matches_scalar_loop() {
        let t = token();
        let mut rng = SplitMix64::new(4);
        for kc in [0, 1, 2, 7, 64] {
            let a = values(kc * MR, &mut rng);
            let b = values(kc * NR, &mut rng);
            let mut want = [[0f32; NR]; MR];
            let mut mags = [[0f32; NR]; MR];
            for p in 0..kc {
                for i in 0..MR {
                    for j in 0..NR {
                        want[i][j] += a[p * MR + i] * b[p * NR + j];
                        mags[i][j] += (a[p * MR + i] * b[p * NR + j]).abs();
                    }
                }
            }
            for ldc in [NR, NR + 5] {
                let init = values((MR - 1) * ldc + NR, &mut rng);
                for accumulate in [false, true] {
                    let mut c = init.clone();
                    kernel_6x16(t, kc, &a, &b, &mut c, ldc, accumulate);
                    for (idx, &got) in c.iter().enumerate() {
                        let (i, j) = (idx / ldc, idx % ldc);
                        if j >= NR {
                            assert_eq!(got, init[idx], "padding at {idx} was written");
                            continue;
                        }
                        let base = if accumulate { init[idx] } else { 0.0 };
                        let m = mags[i][j] + base.abs();
                        let what = format!("kc {kc} ldc {ldc} acc {accumulate} ({i}, {j})");
                        assert_close(got, base + want[i][j], m, &what);
                    }
                }
            }
        }
    }
}
