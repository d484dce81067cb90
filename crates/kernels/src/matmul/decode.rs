//! The decode regime (few rows, memory-bound): W is streamed once, row by
//! row; each row of W is dotted with every row of x while it is in L1.
//!
//! - GGUF Q4_0 / Q4_1 / Q8_0 and MXFP4 weights: x is quantized to int8
//!   blocks of 32 (Q8_0-style) and the dots are integer;
//! - Q4_K / Q5_K / Q6_K: x is quantized to int8 blocks of 256 with 16-value
//!   sums (Q8_K-style);
//! - f32, f16, bf16, FP8 (per-row and tiled scales), MXFP8-E4M3: W is
//!   decoded to f32 in registers and multiplied into f32 FMA accumulators;
//! - every other format: the row is dequantized with exodus-numerics into a
//!   per-thread buffer and dotted in f32.
//!
//! The outputs (`n` of them per row of x) are cut into tasks of
//! `tiling.decode_cols` on the pool.

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::mx::MxElement;
use exodus_numerics::{ElementFormat, Format};

use super::dot_scalar as scalar;
use super::quant_x::{QuantX, XRow};
use super::scratch;
use super::weights::{WeightData, Weights};
use super::Simd;
use crate::error::{FirstError, KernelError, Result};
use crate::pool::ThreadPool;
use crate::tiling::Tiling;

#[cfg(target_arch = "aarch64")]
use super::neon;
#[cfg(target_arch = "x86_64")]
use super::x86::{avx512, fdot, idot};

/// Which row-dot kernel a weight format gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowKernel {
    F32,
    F16,
    Bf16,
    Fp8Row,
    Fp8Tiled,
    MxFp8E4M3,
    Q8_0,
    Q4_0,
    Q4_1,
    MxFp4,
    Q4K,
    Q5K,
    Q6K,
    /// Dequantize the row, then an f32 dot.
    Generic,
}

impl RowKernel {
    /// The kernel for `w`.
    pub(crate) fn for_weights(w: &Weights) -> RowKernel {
        match w.data() {
            WeightData::Fp8Row { .. } => RowKernel::Fp8Row,
            WeightData::Fp8Tiled { .. } => RowKernel::Fp8Tiled,
            WeightData::Encoded { format, .. } => match format {
                Format::Element(ElementFormat::F32) => RowKernel::F32,
                Format::Element(ElementFormat::F16) => RowKernel::F16,
                Format::Element(ElementFormat::Bf16) => RowKernel::Bf16,
                Format::Mx(MxElement::Fp8E4M3) => RowKernel::MxFp8E4M3,
                Format::Mx(MxElement::Fp4E2M1) => RowKernel::MxFp4,
                Format::Gguf(GgufBlockType::Q8_0) => RowKernel::Q8_0,
                Format::Gguf(GgufBlockType::Q4_0) => RowKernel::Q4_0,
                Format::Gguf(GgufBlockType::Q4_1) => RowKernel::Q4_1,
                Format::Gguf(GgufBlockType::Q4K) => RowKernel::Q4K,
                Format::Gguf(GgufBlockType::Q5K) => RowKernel::Q5K,
                Format::Gguf(GgufBlockType::Q6K) => RowKernel::Q6K,
                _ => RowKernel::Generic,
            },
        }
    }

    /// `(block, group)` of the int8 quantization of x this kernel needs.
    pub(crate) fn int8_x(self) -> Option<(usize, usize)> {
        match self {
            RowKernel::Q8_0 | RowKernel::Q4_0 | RowKernel::Q4_1 | RowKernel::MxFp4 => {
                Some((32, 32))
            }
            RowKernel::Q4K | RowKernel::Q5K | RowKernel::Q6K => Some((256, 16)),
            _ => None,
        }
    }
}

/// Everything a decode task needs.
struct Ctx<'a> {
    simd: Simd,
    level: SimdLevel,
    kernel: RowKernel,
    w: &'a Weights<'a>,
    /// x `[rows, k]`.
    x: &'a [f32],
    /// x quantized, for the int8 kernels.
    qx: Option<&'a QuantX>,
}

impl Ctx<'_> {
    /// `outs[r] = x[r, :] · W[j, :]` for every row `r` of x.
    fn column(&self, j: usize, outs: &mut [f32]) -> Result<()> {
        let k = self.w.k();
        let xr = |r: usize| &self.x[r * k..(r + 1) * k];
        match (self.kernel, self.w.data()) {
            (RowKernel::Generic, _) => scratch::with_row(k, |buf| {
                self.w.dequantize_row(self.level, j, 0, k, buf)?;
                for (r, o) in outs.iter_mut().enumerate() {
                    *o = dot_f32(self.simd, buf, xr(r));
                }
                Ok(())
            }),
            (RowKernel::Fp8Row, WeightData::Fp8Row { codes, scales }) => {
                let row = &codes[j * k..(j + 1) * k];
                for (r, o) in outs.iter_mut().enumerate() {
                    *o = e4m3_row(self.simd, row, xr(r)) * scales[j];
                }
                Ok(())
            }
            (
                RowKernel::Fp8Tiled,
                WeightData::Fp8Tiled {
                    codes, tile_cols, ..
                },
            ) => {
                let row = &codes[j * k..(j + 1) * k];
                // The row's tile scales, once for every row of x, in this
                // thread's scratch (no allocation per output).
                scratch::with_row(k.div_ceil(tile_cols), |scales| {
                    self.w.tile_scales_of_row(j, scales);
                    for (r, o) in outs.iter_mut().enumerate() {
                        *o = e4m3_tiled_row(self.simd, row, xr(r), tile_cols, scales);
                    }
                });
                Ok(())
            }
            (kernel, WeightData::Encoded { .. }) => {
                let row = self.w.encoded_row(j).ok_or_else(|| KernelError::BadShape {
                    kernel: "matmul",
                    reason: format!("row {j} of W is out of range"),
                })?;
                for (r, o) in outs.iter_mut().enumerate() {
                    let q = self.qx.map(|q| q.row(r));
                    *o = encoded_dot(self.simd, kernel, row, xr(r), q);
                }
                Ok(())
            }
            _ => Err(KernelError::UnsupportedFormat {
                kernel: "matmul decode",
                format: self.w.format_name(),
            }),
        }
    }
}

impl Ctx<'_> {
    /// `outs[i] = x · W[j0 + i, :]` for a one-row x: groups of
    /// [`avx512::ROWS`] consecutive W rows go through a multi-row kernel
    /// where there is one (the same bits as [`column`](Self::column) on
    /// each), the rest column by column.
    fn columns_of_one_row(&self, j0: usize, outs: &mut [f32]) -> Result<()> {
        // Only x86 has multi-row kernels to advance it.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if let (Simd::Avx512(t), Some(q)) = (self.simd, self.qx) {
            if let Some(pack) = self.w.decode_pack() {
                // The pack's groups start at multiples of four rows: the
                // columns before the first whole group run one by one.
                let lead = ((avx512::ROWS - j0 % avx512::ROWS) % avx512::ROWS).min(outs.len());
                for (i, o) in outs[..lead].iter_mut().enumerate() {
                    self.column(j0 + i, std::slice::from_mut(o))?;
                }
                done = lead;
                let xr = q.row(0);
                for group in outs[lead..].chunks_exact_mut(avx512::ROWS) {
                    let g = (j0 + done) / avx512::ROWS;
                    if g >= pack.groups() {
                        break;
                    }
                    group.copy_from_slice(&avx512::packed_q4_rows(t, pack, g, xr));
                    done += avx512::ROWS;
                }
            }
            let rows_kernel = match self.kernel {
                RowKernel::Q8_0 => Some(avx512::q8_0_rows as MultiRowKernel),
                RowKernel::Q4_0 => Some(avx512::q4_0_rows as MultiRowKernel),
                RowKernel::Q4_1 => Some(avx512::q4_1_rows as MultiRowKernel),
                _ => None,
            };
            if let Some(rows_kernel) = rows_kernel {
                let xr = q.row(0);
                for group in outs[done..].chunks_exact_mut(avx512::ROWS) {
                    let Some((w, row_len)) = self.w.encoded_rows(j0 + done, avx512::ROWS) else {
                        break;
                    };
                    group.copy_from_slice(&rows_kernel(t, w, row_len, xr));
                    done += avx512::ROWS;
                }
            }
        }
        for (i, o) in outs.iter_mut().enumerate().skip(done) {
            self.column(j0 + i, std::slice::from_mut(o))?;
        }
        Ok(())
    }
}

/// A multi-row int8 decode kernel (`avx512::q4_1_rows` and its kin).
#[cfg(target_arch = "x86_64")]
type MultiRowKernel = fn(avx512::Avx512, &[u8], usize, XRow) -> [f32; avx512::ROWS];

fn dot_f32(simd: Simd, w: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = simd.avx2() {
        return fdot::dot_f32(t, w, x);
    }
    #[cfg(target_arch = "aarch64")]
    if let Simd::Neon(t) = simd {
        return neon::dot_f32(t, w, x);
    }
    let _ = simd;
    scalar::dot_f32(w, x)
}

fn e4m3_row(simd: Simd, codes: &[u8], x: &[f32]) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512(t) => avx512::e4m3_row(t, codes, x),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2(t) => fdot::e4m3_row(t, codes, x),
        #[cfg(target_arch = "aarch64")]
        Simd::Neon(t) => neon::e4m3_row(t, codes, x),
        Simd::Scalar => scalar::e4m3_row(codes, x),
    }
}

/// E4M3 codes · x with one scale per `tile` columns.
fn e4m3_tiled_row(simd: Simd, codes: &[u8], x: &[f32], tile: usize, scales: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if let (Simd::Avx512(t), true) = (simd, tile.is_multiple_of(64)) {
            return avx512::e4m3_tiled_row(t, codes, x, tile, scales);
        }
        if let (Some(t), true) = (simd.avx2(), tile.is_multiple_of(32)) {
            return fdot::e4m3_tiled_row(t, codes, x, tile, scales);
        }
    }
    codes
        .chunks(tile)
        .zip(x.chunks(tile))
        .zip(scales)
        .map(|((c, xs), &s)| e4m3_row(simd, c, xs) * s)
        .sum()
}

/// One encoded row · one row of x (`q`: x quantized, for the int8 kernels).
fn encoded_dot(simd: Simd, kernel: RowKernel, w: &[u8], x: &[f32], q: Option<XRow>) -> f32 {
    let float = |f: fn(&[u8], &[f32]) -> f32| f(w, x);
    let int = |f: fn(&[u8], XRow) -> f32| q.map_or(f32::NAN, |q| f(w, q));
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512(t) => match kernel {
            RowKernel::Q8_0 => q.map_or(f32::NAN, |q| avx512::q8_0_row(t, w, q)),
            RowKernel::Q4_0 => q.map_or(f32::NAN, |q| avx512::q4_0_row(t, w, q)),
            RowKernel::Q4_1 => q.map_or(f32::NAN, |q| avx512::q4_1_row(t, w, q)),
            _ => encoded_dot(Simd::Avx2(t.avx2()), kernel, w, x, q),
        },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2(t) => match kernel {
            RowKernel::F32 => fdot::f32_row(t, w, x),
            RowKernel::F16 => fdot::f16_row(t, w, x),
            RowKernel::Bf16 => fdot::bf16_row(t, w, x),
            RowKernel::MxFp8E4M3 => fdot::mxfp8_row(t, w, x),
            RowKernel::Q8_0 => q.map_or(f32::NAN, |q| idot::q8_0_row(t, w, q)),
            RowKernel::Q4_0 => q.map_or(f32::NAN, |q| idot::q4_0_row(t, w, q)),
            RowKernel::Q4_1 => q.map_or(f32::NAN, |q| idot::q4_1_row(t, w, q)),
            RowKernel::MxFp4 => q.map_or(f32::NAN, |q| idot::mxfp4_row(t, w, q)),
            RowKernel::Q4K => q.map_or(f32::NAN, |q| idot::q4k_row(t, w, q)),
            RowKernel::Q5K => q.map_or(f32::NAN, |q| idot::q5k_row(t, w, q)),
            RowKernel::Q6K => q.map_or(f32::NAN, |q| idot::q6k_row(t, w, q)),
            _ => f32::NAN,
        },
        #[cfg(target_arch = "aarch64")]
        Simd::Neon(t) => match kernel {
            RowKernel::F32 => neon::f32_row(t, w, x),
            RowKernel::F16 => neon::f16_row(t, w, x),
            RowKernel::Bf16 => neon::bf16_row(t, w, x),
            RowKernel::MxFp8E4M3 => neon::mxfp8_row(t, w, x),
            RowKernel::Q8_0 => q.map_or(f32::NAN, |q| neon::q8_0_row(t, w, q)),
            RowKernel::Q4_0 => q.map_or(f32::NAN, |q| neon::q4_0_row(t, w, q)),
            RowKernel::Q4_1 => q.map_or(f32::NAN, |q| neon::q4_1_row(t, w, q)),
            RowKernel::MxFp4 => q.map_or(f32::NAN, |q| neon::mxfp4_row(t, w, q)),
            RowKernel::Q4K => q.map_or(f32::NAN, |q| neon::q4k_row(t, w, q)),
            RowKernel::Q5K => q.map_or(f32::NAN, |q| neon::q5k_row(t, w, q)),
            RowKernel::Q6K => q.map_or(f32::NAN, |q| neon::q6k_row(t, w, q)),
            _ => f32::NAN,
        },
        Simd::Scalar => match kernel {
            RowKernel::F32 => float(scalar::f32_row),
            RowKernel::F16 => float(scalar::f16_row),
            RowKernel::Bf16 => float(scalar::bf16_row),
            RowKernel::MxFp8E4M3 => float(scalar::mxfp8_row),
            RowKernel::Q8_0 => int(scalar::q8_0_row),
            RowKernel::Q4_0 => int(scalar::q4_0_row),
            RowKernel::Q4_1 => int(scalar::q4_1_row),
            RowKernel::MxFp4 => int(scalar::mxfp4_row),
            RowKernel::Q4K => int(scalar::q4k_row),
            RowKernel::Q5K => int(scalar::q5k_row),
            RowKernel::Q6K => int(scalar::q6k_row),
            _ => f32::NAN,
        },
    }
}

/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ` in the decode regime. Shapes
/// were checked by the caller.
pub(crate) fn decode(
    pool: &ThreadPool,
    level: SimdLevel,
    tiling: &Tiling,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    let kernel = RowKernel::for_weights(w);
    let simd = Simd::new(level);
    let qx = quantize_x(simd, kernel, x, rows, k);
    let ctx = Ctx {
        simd,
        level,
        kernel,
        w,
        x,
        qx: qx.as_ref(),
    };
    let cols = tiling.decode_cols.max(1);
    let errors = FirstError::default();
    if rows == 1 {
        // out [1, n]: a task owns `cols` consecutive outputs.
        pool.for_each_chunk_mut(out, cols, |t, chunk| {
            errors.keep(ctx.columns_of_one_row(t * cols, chunk));
        });
        return errors.into_result();
    }
    // Tasks write out transposed, [n, rows], so each owns one contiguous
    // chunk; the transpose back costs rows * n stores, small next to W.
    let mut out_t = vec![0f32; n * rows];
    pool.for_each_chunk_mut(&mut out_t, cols * rows, |t, chunk| {
        for (jj, col) in chunk.chunks_exact_mut(rows).enumerate() {
            errors.keep(ctx.column(t * cols + jj, col));
        }
    });
    errors.into_result()?;
    for (j, col) in out_t.chunks_exact(rows).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            out[r * n + j] = v;
        }
    }
    Ok(())
}

/// x quantized the way `kernel`'s integer dots read it (`None` for the
/// float kernels).
fn quantize_x(simd: Simd, kernel: RowKernel, x: &[f32], rows: usize, k: usize) -> Option<QuantX> {
    kernel.int8_x().map(|(block, group)| {
        let q = QuantX::new_at(simd, x, rows, k, block, group);
        match (simd, kernel) {
            // The AVX2 MXFP4 dot takes x in packed-nibble order.
            #[cfg(target_arch = "x86_64")]
            (Simd::Avx2(_) | Simd::Avx512(_), RowKernel::MxFp4) => q.nibble_order(),
            _ => q,
        }
    })
}

/// [`decode`] for several weights of one format and one `k` against the
/// same x, as one job: x is quantized once and one parallel pass covers the
/// outputs of every weight (each output is the very dot [`decode`]
/// computes, so the results are the same bits). The caller checked that
/// every weight has the format and `k` of the first and every `outs[i]`
/// is `rows * ws[i].n()` long.
pub(crate) fn decode_group(
    pool: &ThreadPool,
    level: SimdLevel,
    tiling: &Tiling,
    x: &[f32],
    rows: usize,
    ws: &[&Weights],
    outs: &mut [&mut [f32]],
) -> Result<()> {
    let Some(first) = ws.first() else {
        return Ok(());
    };
    let k = first.k();
    let kernel = RowKernel::for_weights(first);
    let simd = Simd::new(level);
    let qx = quantize_x(simd, kernel, x, rows, k);
    let ctxs: Vec<Ctx> = ws
        .iter()
        .map(|w| Ctx {
            simd,
            level,
            kernel,
            w,
            x,
            qx: qx.as_ref(),
        })
        .collect();
    // Output j of the concatenation [W_0; W_1; ..] is row j - starts[i]
    // of the W_i with starts[i] <= j < starts[i + 1].
    let mut starts = Vec::with_capacity(ws.len() + 1);
    starts.push(0);
    for w in ws {
        starts.push(starts[starts.len() - 1] + w.n());
    }
    let total = starts[ws.len()];
    let locate = |j: usize| {
        let i = starts.partition_point(|&s| s <= j) - 1;
        (i, j - starts[i])
    };
    let cols = tiling.decode_cols.max(1);
    let errors = FirstError::default();
    // Tasks write the concatenation transposed, [total, rows], so each
    // owns one contiguous chunk; it is scattered into `outs` after.
    let mut out_t = vec![0f32; total * rows];
    pool.for_each_chunk_mut(&mut out_t, cols * rows, |t, chunk| {
        if rows == 1 {
            // Runs of the chunk that fall in one weight, several rows at once.
            let mut jj = 0;
            while jj < chunk.len() {
                let (i, j) = locate(t * cols + jj);
                let run = (ws[i].n() - j).min(chunk.len() - jj);
                errors.keep(ctxs[i].columns_of_one_row(j, &mut chunk[jj..jj + run]));
                jj += run;
            }
            return;
        }
        for (jj, col) in chunk.chunks_exact_mut(rows).enumerate() {
            let (i, j) = locate(t * cols + jj);
            errors.keep(ctxs[i].column(j, col));
        }
    });
    errors.into_result()?;
    for (i, out) in outs.iter_mut().enumerate() {
        let n = ws[i].n();
        let cols_of_w = &out_t[starts[i] * rows..starts[i + 1] * rows];
        for (j, col) in cols_of_w.chunks_exact(rows).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                out[r * n + j] = v;
            }
        }
    }
    Ok(())
}

/// `out[j] = silu(x · W_gate[j]) * (x · W_up[j])` for one row of x in the
/// decode regime, as one job without the gate and up vectors: each task
/// computes the two dots of its columns (a multiple of 16 of them, so every
/// SIMD tail of the activation falls where a whole-vector call's would) into
/// stack scratch and applies [`crate::ops::swiglu`] to them. The dots are
/// the ones [`decode`] computes and the activation the one `swiglu` applies
/// to the whole vectors, so the result is the same bits. The caller checked
/// that both weights have one row kernel, one `k` and one `n`, that x is
/// one row of `k` and `out` is `n` long.
pub(crate) fn decode_swiglu(
    pool: &ThreadPool,
    level: SimdLevel,
    tiling: &Tiling,
    x: &[f32],
    gate: &Weights,
    up: &Weights,
    out: &mut [f32],
) -> Result<()> {
    let kernel = RowKernel::for_weights(gate);
    let simd = Simd::new(level);
    let qx = quantize_x(simd, kernel, x, 1, gate.k());
    let ctx = |w| Ctx {
        simd,
        level,
        kernel,
        w,
        x,
        qx: qx.as_ref(),
    };
    let (g, u) = (ctx(gate), ctx(up));
    let cols = tiling
        .decode_cols
        .max(1)
        .next_multiple_of(SWIGLU_COLS)
        .min(SWIGLU_COLS * 4);
    let errors = FirstError::default();
    pool.for_each_chunk_mut(out, cols, |t, chunk| {
        let mut gv = [0f32; SWIGLU_COLS * 4];
        let mut uv = [0f32; SWIGLU_COLS * 4];
        let n = chunk.len();
        errors.keep(g.columns_of_one_row(t * cols, &mut gv[..n]));
        errors.keep(u.columns_of_one_row(t * cols, &mut uv[..n]));
        errors.keep(crate::ops::swiglu_with(level, &gv[..n], &uv[..n], chunk));
    });
    errors.into_result()
}

/// Columns per task of [`decode_swiglu`] are a multiple of this (the
/// widest SIMD vector of the activation).
const SWIGLU_COLS: usize = 16;
