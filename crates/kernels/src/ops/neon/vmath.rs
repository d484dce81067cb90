//! NEON building blocks shared by the op and attention kernels (aarch64):
//! bounds-checked loads and stores, horizontal reductions, a NaN-skipping
//! lane max, a lane mask as bits, and vector `exp` and `erf` — the same
//! polynomials, coefficients and clamps as `ops::x86::vmath`, four lanes
//! at a time.
//!
//! Every function carries `#[target_feature(enable = "neon")]`, so it can
//! only be called from code compiled for NEON (the kernels in `ops::neon`
//! and `attention::neon`, entered once [`SimdLevel::Neon`] was selected).
//!
//! The polynomial coefficients are the published ones, digit for digit,
//! hence `excessive_precision` is allowed.
//!
//! [`SimdLevel::Neon`]: exodus_numerics::cpu::SimdLevel::Neon
#![allow(clippy::excessive_precision)]

use std::arch::aarch64::*;

/// Four f32 lanes.
pub(crate) const LANES: usize = 4;

/// Load `s[..4]` (panics if `s` is shorter: an internal bug, never input).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn load(s: &[f32]) -> float32x4_t {
    let s = &s[..LANES];
    // SAFETY: `s` holds 4 f32s; `vld1q_f32` has no alignment requirement
    // beyond the element's.
    unsafe { vld1q_f32(s.as_ptr()) }
}

/// Store `v` to `d[..4]` (panics if `d` is shorter: an internal bug).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn store(d: &mut [f32], v: float32x4_t) {
    let d = &mut d[..LANES];
    // SAFETY: `d` holds 4 f32s; `vst1q_f32` has no alignment requirement
    // beyond the element's.
    unsafe { vst1q_f32(d.as_mut_ptr(), v) }
}

/// Sum of the four lanes.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn hsum(v: float32x4_t) -> f32 {
    vaddvq_f32(v)
}

/// Largest of the four lanes. The lanes come from [`max_num`], which never
/// lets a NaN in; should one be there, it propagates.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn hmax(v: float32x4_t) -> f32 {
    vmaxvq_f32(v)
}

/// `v` where `v > acc`, else `acc`, lane-wise: a NaN `v` (quiet or
/// signalling) is skipped, as AVX2's `max_ps(v, acc)` skips it. `FMAX`
/// would propagate it and `FMAXNM` turns a signalling one into NaN, hence
/// the compare and select.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn max_num(v: float32x4_t, acc: float32x4_t) -> float32x4_t {
    vbslq_f32(vcgtq_f32(v, acc), v, acc)
}

/// Bit `i` set where lane `i` of the comparison mask `m` is set (the NEON
/// stand-in for `_mm256_movemask_ps`).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn bits(m: uint32x4_t) -> u32 {
    const WEIGHTS: [u32; LANES] = [1, 2, 4, 8];
    // SAFETY: `WEIGHTS` holds 4 u32s.
    let w = unsafe { vld1q_u32(WEIGHTS.as_ptr()) };
    vaddvq_u32(vandq_u32(m, w))
}

/// `e^x` lane-wise (Cephes' `expf` polynomial after a Cody-Waite range
/// reduction, as `ops::x86::vmath::exp`; within 2 ulp of the libm result
/// for `x` in `[-87.3, 88]`). Below -87.34 the result is 0, above 88.73 it
/// is `+inf`, and between 88 and 88.73 it is `e^88`; NaN stays NaN.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn exp(x: float32x4_t) -> float32x4_t {
    let lo = vdupq_n_f32(-87.336_544_750_553_1);
    // `FMAX`/`FMIN` propagate NaN: a NaN `x` survives the clamp.
    let xc = vminq_f32(vmaxq_f32(x, lo), vdupq_n_f32(88.0));
    let n = vrndnq_f32(vmulq_n_f32(xc, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(xc, n, vdupq_n_f32(0.693_359_375));
    let r = vfmsq_f32(r, n, vdupq_n_f32(-2.121_944_40e-4));
    let mut p = vdupq_n_f32(1.987_569_150_0e-4);
    for c in [
        1.398_199_950_7e-3,
        8.333_451_907_3e-3,
        4.166_579_589_4e-2,
        1.666_666_545_9e-1,
        5.000_000_120_1e-1,
    ] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    let y = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0));
    let pow2 = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
    let y = vmulq_f32(y, vreinterpretq_f32_s32(pow2));
    let under = vcltq_f32(x, lo);
    let over = vcgtq_f32(x, vdupq_n_f32(88.722_839_052_068_35));
    let y = vbslq_f32(under, vdupq_n_f32(0.0), y);
    vbslq_f32(over, vdupq_n_f32(f32::INFINITY), y)
}

/// `erf(x)` lane-wise: Eigen's rational approximation `x P(x²) / Q(x²)` on
/// `x` clamped to `[-4, 4]` (beyond which erf is ±1 in f32), as
/// `ops::x86::vmath::erf`; a few ulp. NaN stays NaN.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn erf(x: float32x4_t) -> float32x4_t {
    let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-4.0)), vdupq_n_f32(4.0));
    let x2 = vmulq_f32(x, x);
    let mut p = vdupq_n_f32(-2.726_142_258_013_06e-10);
    for c in [
        2.770_681_424_959_02e-8,
        -2.101_024_020_825_08e-6,
        -5.692_506_394_623_46e-5,
        -7.349_906_303_268_55e-4,
        -2.954_599_808_540_25e-3,
        -1.609_603_332_624_15e-2,
    ] {
        p = vfmaq_f32(vdupq_n_f32(c), p, x2);
    }
    let mut q = vdupq_n_f32(-1.456_607_184_649_96e-5);
    for c in [
        -2.133_740_552_789_05e-4,
        -1.682_826_974_382_03e-3,
        -7.373_329_167_204_68e-3,
        -1.426_473_905_141_89e-2,
    ] {
        q = vfmaq_f32(vdupq_n_f32(c), q, x2);
    }
    vdivq_f32(vmulq_f32(x, p), q)
}
