//! The prefill regime (many rows, compute-bound): a packed, tiled GEMM in
//! the BLIS loop order, for every weight format.
//!
//! ```text
//! for jc in 0..n step nc            // panel of W rows (columns of out)
//!   for pc in 0..k step kc          // depth
//!     pack B = W[jc.., pc..]ᵀ       // dequantized to f32, kc x nr slivers,
//!                                   //   slivers spread over the pool
//!     for ic in 0..rows step mc     // one pool task per row block
//!       pack A = x[ic.., pc..]      // mr x kc slivers, per-thread buffer
//!       for jr in slivers of B      // kc x nr sliver stays in L1
//!         for ir in slivers of A    // mc x kc block stays in L2
//!           out[ir, jr] (+)= A_ir · B_jr   // 6x16 micro-kernel
//! ```
//!
//! Quantized weights are dequantized into the B panel with the
//! exodus-numerics decoders, so each weight is decoded once per call, and
//! the one f32 micro-kernel serves every format. Each task owns whole rows
//! of `out`, so tasks write disjoint chunks.

use exodus_numerics::cpu::SimdLevel;

#[cfg(target_arch = "x86_64")]
use super::int8_prefill;
use super::scratch;
use super::weights::Weights;
use super::Simd;
use crate::error::{FirstError, Result};
use crate::pool::ThreadPool;
use crate::tiling::{Tiling, MR, NR};

#[cfg(target_arch = "aarch64")]
use super::neon;
#[cfg(target_arch = "x86_64")]
use super::x86::{avx512, gemm};

/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ` in the prefill regime. Shapes
/// and the tiling were checked by the caller.
pub(crate) fn prefill(
    pool: &ThreadPool,
    level: SimdLevel,
    t: &Tiling,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if let (Simd::Avx512(t), Some(kind)) = (Simd::new(level), int8_prefill::Int8Kind::of(w)) {
        let kernel = int8_prefill::TileKernel::Vnni(t);
        return int8_prefill::prefill(pool, kernel, kind, x, rows, w, out);
    }
    prefill_f32(pool, level, t, x, rows, w, out, Panels::PackEachCall)
}

/// Where the f32 GEMM gets its B panels.
#[derive(Clone, Copy)]
pub(crate) enum Panels<'a> {
    /// Dequantize and pack each panel of W on this call.
    PackEachCall,
    /// Every panel, packed before ([`pack_all`]) with the same `kc` and
    /// `nc`, in the loop order (`jc` outer, `pc` inner).
    Packed(&'a [f32]),
}

/// Packs every B panel of `w` for the tiling's `kc` and `nc`, in the order
/// [`prefill_f32`] reads them: `4 * n * k` bytes (rounded up to whole
/// slivers).
pub(crate) fn pack_all(
    pool: &ThreadPool,
    level: SimdLevel,
    t: &Tiling,
    w: &Weights,
) -> Result<Vec<f32>> {
    let (n, k) = (w.n(), w.k());
    let mut all = vec![0f32; n.div_ceil(NR) * NR * k];
    let errors = FirstError::default();
    let mut offset = 0;
    for jc in (0..n).step_by(t.nc) {
        let slivers = t.nc.min(n - jc).div_ceil(NR);
        for pc in (0..k).step_by(t.kc) {
            let kcb = t.kc.min(k - pc);
            let len = slivers * kcb * NR;
            pack_panel(
                pool,
                level,
                w,
                jc,
                pc,
                kcb,
                &mut all[offset..offset + len],
                &errors,
            );
            offset += len;
        }
    }
    errors.into_result()?;
    Ok(all)
}

/// Packs the panel `W[jc.., pc .. pc + kcb]` into `b` (`[slivers][kcb][NR]`),
/// slivers spread over the pool.
#[allow(clippy::too_many_arguments)]
fn pack_panel(
    pool: &ThreadPool,
    level: SimdLevel,
    w: &Weights,
    jc: usize,
    pc: usize,
    kcb: usize,
    b: &mut [f32],
    errors: &FirstError,
) {
    let sliver_len = kcb * NR;
    let slivers = b.len() / sliver_len;
    let per_task = slivers.div_ceil(2 * pool.threads()).max(1);
    pool.for_each_chunk_mut(b, per_task * sliver_len, |task, chunk| {
        for (s, sliver) in chunk.chunks_exact_mut(sliver_len).enumerate() {
            let j0 = jc + (task * per_task + s) * NR;
            errors.keep(pack_b(level, w, j0, pc, kcb, sliver));
        }
    });
}

/// The f32 GEMM (every format, W dequantized into the B panels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn prefill_f32(
    pool: &ThreadPool,
    level: SimdLevel,
    t: &Tiling,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
    panels: Panels,
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    debug_assert_eq!((x.len(), out.len()), (rows * k, rows * n));
    let simd = Simd::new(level);
    let (kc, mc, nc) = (t.kc, t.mc, t.nc);
    let errors = FirstError::default();
    let panel_len = match panels {
        Panels::PackEachCall => kc * nc.min(n.div_ceil(NR) * NR),
        Panels::Packed(_) => 0,
    };
    let mut offset = 0;
    scratch::with_panel(panel_len, |panel| {
        for jc in (0..n).step_by(nc) {
            let slivers = nc.min(n - jc).div_ceil(NR);
            for pc in (0..k).step_by(kc) {
                let kcb = kc.min(k - pc);
                let sliver_len = kcb * NR;
                let len = slivers * sliver_len;
                let b: &[f32] = match panels {
                    Panels::PackEachCall => {
                        let b = &mut panel[..len];
                        pack_panel(pool, level, w, jc, pc, kcb, b, &errors);
                        b
                    }
                    Panels::Packed(all) => &all[offset..offset + len],
                };
                offset += len;
                // out rows [ic, ic + mc) x all n columns: one task each.
                pool.for_each_chunk_mut(out, mc * n, |ib, out_rows| {
                    let mcb = out_rows.len() / n;
                    let a_slivers = mcb.div_ceil(MR);
                    scratch::with_pack(a_slivers * MR * kcb, |a| {
                        pack_a(x, k, ib * mc, mcb, pc, kcb, a);
                        let a_len = MR * kcb;
                        let mut s = 0;
                        while s < slivers {
                            let j = jc + s * NR;
                            // Two B slivers at once where the wide kernels run.
                            let wide = simd.is_wide() && s + 1 < slivers;
                            let width = if wide { 2 * NR } else { NR };
                            let bs = &b[s * sliver_len..(s + width / NR) * sliver_len];
                            let mut ir = 0;
                            while ir < a_slivers {
                                // And two A slivers (12 rows) when both B are.
                                let height = if wide && ir + 1 < a_slivers { 2 } else { 1 };
                                let tile = Tile {
                                    offset: ir * MR * n + j,
                                    ldc: n,
                                    m: (height * MR).min(mcb - ir * MR),
                                    n: width.min(n - j),
                                };
                                let asl = &a[ir * a_len..(ir + height) * a_len];
                                micro(simd, kcb, asl, bs, out_rows, tile, pc > 0);
                                ir += height;
                            }
                            s += width / NR;
                        }
                    });
                });
            }
        }
    });
    errors.into_result()
}

/// Packs `x[i0 .. i0 + mcb, pc .. pc + kcb]` (x is `[rows, k]`) into
/// `mr`-row slivers `[sliver][p][i]`, zero-padding the last one.
fn pack_a(x: &[f32], k: usize, i0: usize, mcb: usize, pc: usize, kcb: usize, a: &mut [f32]) {
    for (ir, sl) in a.chunks_exact_mut(MR * kcb).enumerate() {
        for i in 0..MR {
            let r = ir * MR + i;
            if r < mcb {
                let src = &x[(i0 + r) * k + pc..(i0 + r) * k + pc + kcb];
                for (p, &v) in src.iter().enumerate() {
                    sl[p * MR + i] = v;
                }
            } else {
                (0..kcb).for_each(|p| sl[p * MR + i] = 0.0);
            }
        }
    }
}

/// Packs `W[j0 .. j0 + nr, pc .. pc + kcb]`, dequantized, as a sliver
/// `[p][j]` (`B = Wᵀ`), zero-padding rows past `n`: the 16 rows are
/// dequantized side by side, then transposed into the sliver.
fn pack_b(
    level: SimdLevel,
    w: &Weights,
    j0: usize,
    pc: usize,
    kcb: usize,
    sliver: &mut [f32],
) -> Result<()> {
    scratch::with_row(NR * kcb, |rows| {
        for (jj, row) in rows.chunks_exact_mut(kcb).enumerate() {
            if j0 + jj < w.n() {
                w.dequantize_row(level, j0 + jj, pc, pc + kcb, row)?;
            } else {
                row.fill(0.0);
            }
        }
        transpose_16(Simd::new(level), rows, kcb, sliver);
        Ok(())
    })
}

/// `sliver[p * 16 + j] = rows[j * kcb + p]`: 16 rows of B into a sliver.
fn transpose_16(simd: Simd, rows: &[f32], kcb: usize, sliver: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = simd.avx2() {
        return gemm::transpose_16(t, rows, kcb, sliver);
    }
    let _ = simd;
    for (p, dst) in sliver.chunks_exact_mut(NR).take(kcb).enumerate() {
        for (j, d) in dst.iter_mut().enumerate() {
            *d = rows[j * kcb + p];
        }
    }
}

impl Simd {
    /// Whether the micro-kernel takes two B slivers (6x32, AVX-512).
    fn is_wide(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Simd::Avx512(_) = self {
            return true;
        }
        false
    }
}

/// Where a micro-tile lands in the output chunk.
#[derive(Clone, Copy)]
struct Tile {
    /// Index of its top-left element.
    offset: usize,
    /// Row stride.
    ldc: usize,
    /// Valid rows (<= MR, or <= 2 MR for the 12x32 kernel).
    m: usize,
    /// Valid columns (<= NR, or <= 2 NR for the wide kernel).
    n: usize,
}

/// Row stride of the edge-tile buffer: wide enough for the 32-column
/// kernels.
const TMP_LD: usize = 2 * NR;

/// Rows of the edge-tile buffer: tall enough for the 12-row kernel.
const TMP_ROWS: usize = 2 * MR;

/// One micro-tile of `a` (one packed A sliver, or two for the 12x32
/// kernel) against `b` (one packed B sliver, or two for the 32-column
/// kernels, [`Simd::is_wide`]): full tiles go straight into `c`, edge tiles
/// through a buffer.
fn micro(simd: Simd, kc: usize, a: &[f32], b: &[f32], c: &mut [f32], t: Tile, accumulate: bool) {
    let mut tmp = [0f32; TMP_ROWS * TMP_LD];
    let width = b.len() / kc.max(1);
    let height = a.len() / kc.max(1);
    #[cfg(target_arch = "x86_64")]
    {
        if let (Simd::Avx512(token), true, true) = (simd, width == 2 * NR, height == 2 * MR) {
            let (a0, a1) = a.split_at(kc * MR);
            let (b0, b1) = b.split_at(kc * NR);
            let (a, b) = ([a0, a1], [b0, b1]);
            if t.m == 2 * MR && t.n == 2 * NR {
                let c = &mut c[t.offset..];
                avx512::kernel_12x32(token, kc, a, b, c, t.ldc, accumulate);
            } else {
                avx512::kernel_12x32(token, kc, a, b, &mut tmp, TMP_LD, false);
                merge(&tmp, c, t, accumulate);
            }
            return;
        }
        if let (Simd::Avx512(token), true) = (simd, width == 2 * NR) {
            let (b0, b1) = b.split_at(kc * NR);
            if t.m == MR && t.n == 2 * NR {
                let c = &mut c[t.offset..];
                avx512::kernel_6x32(token, kc, a, b0, b1, c, t.ldc, accumulate);
            } else {
                avx512::kernel_6x32(token, kc, a, b0, b1, &mut tmp, TMP_LD, false);
                merge(&tmp, c, t, accumulate);
            }
            return;
        }
        if let Some(token) = simd.avx2() {
            if t.m == MR && t.n == NR {
                gemm::kernel_6x16(token, kc, a, b, &mut c[t.offset..], t.ldc, accumulate);
            } else {
                gemm::kernel_6x16(token, kc, a, b, &mut tmp, TMP_LD, false);
                merge(&tmp, c, t, accumulate);
            }
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if let Simd::Neon(token) = simd {
        if t.m == MR && t.n == NR {
            neon::kernel_6x16(token, kc, a, b, &mut c[t.offset..], t.ldc, accumulate);
        } else {
            neon::kernel_6x16(token, kc, a, b, &mut tmp, TMP_LD, false);
            merge(&tmp, c, t, accumulate);
        }
        return;
    }
    let _ = (simd, width, height);
    kernel_scalar(kc, a, b, &mut tmp);
    merge(&tmp, c, t, accumulate);
}

/// Writes (or adds) the valid part of a micro-tile buffer into `c`.
fn merge(tmp: &[f32; TMP_ROWS * TMP_LD], c: &mut [f32], t: Tile, accumulate: bool) {
    for i in 0..t.m {
        let dst = &mut c[t.offset + i * t.ldc..t.offset + i * t.ldc + t.n];
        let src = &tmp[i * TMP_LD..i * TMP_LD + t.n];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// Scalar twin of the micro-kernel: `tmp[6, 16] = A_sliver · B_sliver`.
fn kernel_scalar(kc: usize, a: &[f32], b: &[f32], tmp: &mut [f32; TMP_ROWS * TMP_LD]) {
    let mut acc = [[0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (c, &bj) in row.iter_mut().zip(bp) {
                *c += ai * bj;
            }
        }
    }
    for (dst, row) in tmp.chunks_exact_mut(TMP_LD).zip(&acc) {
        dst[..NR].copy_from_slice(row);
    }
}
