//! AVX2 building blocks shared by the op and attention kernels: bounds-
//! checked loads and stores, horizontal reductions, and vector `exp` and
//! `erf`.
//!
//! Every function carries `#[target_feature(enable = "avx2,fma,f16c")]`,
//! so it can only be called from code compiled for those features (the
//! kernels in `ops::x86` and `attention::x86`, entered after a run-time
//! check).
//!
//! The polynomial coefficients are the published ones, digit for digit,
//! hence `excessive_precision` is allowed.
#![allow(clippy::excessive_precision)]

use std::arch::x86_64::*;

/// Eight f32 lanes.
pub(crate) const LANES: usize = 8;

/// Load `s[..8]` (panics if `s` is shorter: an internal bug, never input).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load(s: &[f32]) -> __m256 {
    let s = &s[..LANES];
    // SAFETY: `s` holds 8 f32s; the load is unaligned.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

/// Store `v` to `d[..8]` (panics if `d` is shorter: an internal bug).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn store(d: &mut [f32], v: __m256) {
    let d = &mut d[..LANES];
    // SAFETY: `d` holds 8 f32s; the store is unaligned.
    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
}

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Largest of the eight lanes (NaN lanes are skipped unless all are NaN).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `e^x` lane-wise (Cephes' `expf` polynomial after a Cody-Waite range
/// reduction; within 2 ulp of the libm result for `x` in `[-87.3, 88]`).
/// Below -87.34 the result is 0, above 88.73 it is `+inf`, and between 88
/// and 88.73 it is `e^88`; NaN stays NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn exp(x: __m256) -> __m256 {
    let lo = _mm256_set1_ps(-87.336_544_750_553_1);
    let hi = _mm256_set1_ps(88.0);
    // `max/min(a, b)` return `b` when either is NaN: a NaN `x` survives.
    let xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_375), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_40e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_150_0e-4);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_950_7e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_451_907_3e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_589_4e-2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_545_9e-1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.000_000_120_1e-1));
    let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
    let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    let y = _mm256_mul_ps(y, _mm256_castsi256_ps(pow2));
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
    let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(88.722_839_052_068_35));
    let y = _mm256_andnot_ps(under, y);
    _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), over)
}

/// `erf(x)` lane-wise: Eigen's rational approximation `x P(x²) / Q(x²)` on
/// `x` clamped to `[-4, 4]` (beyond which erf is ±1 in f32); a few ulp.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn erf(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_set1_ps(4.0), _mm256_max_ps(_mm256_set1_ps(-4.0), x));
    let x2 = _mm256_mul_ps(x, x);
    let mut p = _mm256_set1_ps(-2.726_142_258_013_06e-10);
    for c in [
        2.770_681_424_959_02e-8,
        -2.101_024_020_825_08e-6,
        -5.692_506_394_623_46e-5,
        -7.349_906_303_268_55e-4,
        -2.954_599_808_540_25e-3,
        -1.609_603_332_624_15e-2,
    ] {
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(c));
    }
    let mut q = _mm256_set1_ps(-1.456_607_184_649_96e-5);
    for c in [
        -2.133_740_552_789_05e-4,
        -1.682_826_974_382_03e-3,
        -7.373_329_167_204_68e-3,
        -1.426_473_905_141_89e-2,
    ] {
        q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(c));
    }
    _mm256_div_ps(_mm256_mul_ps(x, p), q)
}
