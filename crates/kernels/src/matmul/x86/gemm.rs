//! The 6x16 f32 GEMM micro-kernel: `C[6, 16] (+)= A_sliver · B_sliver`
//! over a packed depth `kc`, with 12 ymm accumulators.
//!
//! Packed layouts (made by `prefill.rs`): the A sliver is `kc` groups of
//! [`MR`] values (`a[p * 6 + i] = x[i, p]`), the B sliver `kc` groups of
//! [`NR`] values (`b[p * 16 + j] = W[j, p]`); C is row-major with leading
//! dimension `ldc`.

use std::arch::x86_64::*;

use super::Avx2;
use crate::tiling::{MR, NR};

/// `C (+)= A · B` for one 6x16 tile; `accumulate == false` overwrites C.
///
/// Panics if a slice is too short for `kc` and `ldc` (an internal bug).
pub(crate) fn kernel_6x16(
    t: Avx2,
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
    // SAFETY: the token proves AVX2 and FMA; the asserts above bound every
    // pointer the kernel forms: `a + 6p + i` (`p < kc`, `i < 6`),
    // `b + 16p + 8h + 0..8`, and `c + i * ldc + 0..16`.
    unsafe { kernel_6x16_avx2(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) }
}

/// # Safety
/// AVX2 and FMA must be available; `a` must be valid for `6 * kc` reads,
/// `b` for `16 * kc` reads and `c` for reads and writes of
/// `5 * ldc + 16` floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_6x16_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: `p < kc`, so these reads are within the stated ranges.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(b.add(NR * p)),
                _mm256_loadu_ps(b.add(NR * p + 8)),
            )
        };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: `MR * p + i < MR * kc`.
            let ai = _mm256_set1_ps(unsafe { *a.add(MR * p + i) });
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row `i < 6` of C spans `c + i * ldc + 0..16`, within the
        // stated range.
        unsafe {
            let ci = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if accumulate {
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(ci));
                r1 = _mm256_add_ps(r1, _mm256_loadu_ps(ci.add(8)));
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci.add(8), r1);
        }
    }
}

/// Runs `iters` rounds of 12 independent 8-lane FMA chains (192 flops a
/// round) and returns a value that depends on all of them: the FMA
/// throughput ceiling the micro-kernel is measured against.
pub(crate) fn fma_probe(t: Avx2, iters: usize, seed: f32) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX2 and FMA.
    unsafe { fma_probe_avx2(iters, seed) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn fma_probe_avx2(iters: usize, seed: f32) -> f32 {
    let mut acc = [_mm256_set1_ps(seed); 12];
    let a = _mm256_set1_ps(0.999_99);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    super::fdot::hsum(s)
}
