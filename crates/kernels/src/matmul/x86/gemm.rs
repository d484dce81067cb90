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

/// `sliver[p * 16 + j] = rows[j * kc + p]` for `j < 16`, `p < kc`: the 16
/// dequantized rows of W (`rows`, row-major `[16][kc]`) transposed into a
/// packed B sliver, 8x8 blocks at a time through registers (the scalar
/// scatter it replaces wrote one float per cache line and took a fifth of
/// a 7B-shape prefill). The last `kc % 8` columns go one by one.
///
/// Panics if `rows` or `sliver` is shorter than `16 * kc` (an internal
/// bug).
pub(crate) fn transpose_16(t: Avx2, rows: &[f32], kc: usize, sliver: &mut [f32]) {
    let _ = t;
    let (rows, sliver) = (&rows[..NR * kc], &mut sliver[..NR * kc]);
    // SAFETY: the token proves AVX2; both slices hold 16 * kc floats,
    // which bounds every access (see `transpose_16_avx2`).
    unsafe { transpose_16_avx2(rows, kc, sliver) }
}

/// # Safety
/// AVX2 must be available; `rows` and `sliver` must hold `16 * kc` floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose_16_avx2(rows: &[f32], kc: usize, sliver: &mut [f32]) {
    let (src, dst) = (rows.as_ptr(), sliver.as_mut_ptr());
    let full = kc / 8 * 8;
    for p in (0..full).step_by(8) {
        for jb in (0..NR).step_by(8) {
            // SAFETY: rows `jb..jb + 8` (< 16), columns `p..p + 8` (<= kc).
            let r: [__m256; 8] =
                std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add((jb + i) * kc + p)) });
            // 8x8 transpose: interleave pairs, then quads, then halves.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (i, v) in out.into_iter().enumerate() {
                // SAFETY: `(p + i) * 16 + jb + 0..8 < 16 * kc`.
                unsafe { _mm256_storeu_ps(dst.add((p + i) * NR + jb), v) };
            }
        }
    }
    for p in full..kc {
        for j in 0..NR {
            sliver[p * NR + j] = rows[j * kc + p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exodus_numerics::cpu::SimdLevel;

    #[test]
    fn transpose_16_matches_the_definition() {
        let Some(t) = Avx2::new(SimdLevel::Avx2) else {
            return;
        };
        for kc in [1usize, 7, 8, 9, 16, 37, 279] {
            let rows: Vec<f32> = (0..NR * kc).map(|i| i as f32).collect();
            let mut got = vec![f32::NAN; NR * kc];
            transpose_16(t, &rows, kc, &mut got);
            for p in 0..kc {
                for j in 0..NR {
                    assert_eq!(got[p * NR + j], rows[j * kc + p], "kc {kc} p {p} j {j}");
                }
            }
        }
    }
}
