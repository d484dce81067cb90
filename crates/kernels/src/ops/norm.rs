//! RMS norm and layer norm over the last dimension of a row-major
//! `[rows, dim]` tensor.
//!
//! The scalar references accumulate the statistics in f64; the SIMD paths
//! accumulate in f32 over eight (AVX2) or four (NEON) lanes (relative
//! difference ~1e-6).

use exodus_numerics::cpu::{self, SimdLevel};

use super::check;
use super::dispatch::{path, Path};
use crate::error::Result;

/// Options of [`rms_norm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNormParams {
    /// Added to the mean square before the square root (Llama: 1e-5 or 1e-6).
    pub eps: f32,
}

impl Default for RmsNormParams {
    fn default() -> Self {
        Self { eps: 1e-5 }
    }
}

/// Options of [`layer_norm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNormParams {
    /// Added to the variance before the square root.
    pub eps: f32,
}

impl Default for LayerNormParams {
    fn default() -> Self {
        Self { eps: 1e-5 }
    }
}

/// `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight`, on the
/// active SIMD level.
///
/// Shapes: `x`, `out`: `[rows, dim]`; `weight`: `[dim]`.
pub fn rms_norm(
    x: &[f32],
    weight: &[f32],
    out: &mut [f32],
    rows: usize,
    dim: usize,
    params: &RmsNormParams,
) -> Result<()> {
    rms_norm_with(cpu::active(), x, weight, out, rows, dim, params)
}

/// [`rms_norm`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn rms_norm_with(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    out: &mut [f32],
    rows: usize,
    dim: usize,
    params: &RmsNormParams,
) -> Result<()> {
    const K: &str = "rms_norm";
    check_rows(K, x, weight, out, rows, dim)?;
    let eps = params.eps;
    for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        match path(level) {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::rms_norm_row(x, weight, out, eps),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::rms_norm_row(x, weight, out, eps),
            Path::Scalar => rms_norm_row_scalar(x, weight, out, eps),
        }
    }
    Ok(())
}

fn rms_norm_row_scalar(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let inv = (1.0 / (ss / x.len() as f64 + eps as f64).sqrt()) as f32;
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * w;
    }
}

/// `out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias` (the
/// biased variance, as PyTorch's `LayerNorm`), on the active SIMD level.
/// Without a bias the `+ bias` term is left out.
///
/// Shapes: `x`, `out`: `[rows, dim]`; `weight`, `bias`: `[dim]`.
pub fn layer_norm(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    rows: usize,
    dim: usize,
    params: &LayerNormParams,
) -> Result<()> {
    layer_norm_with(cpu::active(), x, weight, bias, out, rows, dim, params)
}

/// [`layer_norm`] on a given SIMD level (an unsupported one runs the scalar path).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_with(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    rows: usize,
    dim: usize,
    params: &LayerNormParams,
) -> Result<()> {
    const K: &str = "layer_norm";
    check_rows(K, x, weight, out, rows, dim)?;
    if let Some(b) = bias {
        check::len(K, "bias", b.len(), dim)?;
    }
    let eps = params.eps;
    for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        match path(level) {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::layer_norm_row(x, weight, bias, out, eps),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::layer_norm_row(x, weight, bias, out, eps),
            Path::Scalar => layer_norm_row_scalar(x, weight, bias, out, eps),
        }
    }
    Ok(())
}

fn layer_norm_row_scalar(x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32], eps: f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = (1.0 / (var + eps as f64).sqrt()) as f32;
    let mean = mean as f32;
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let y = (v - mean) * inv * w[i];
        *o = match b {
            Some(b) => y + b[i],
            None => y,
        };
    }
}

/// Shared checks of the norms: positive `dim`, `x`/`out` of `rows * dim`,
/// `weight` of `dim`.
fn check_rows(
    kernel: &'static str,
    x: &[f32],
    weight: &[f32],
    out: &[f32],
    rows: usize,
    dim: usize,
) -> Result<()> {
    check::nonzero(kernel, "dim", dim)?;
    let n = check::product(kernel, &[rows, dim])?;
    check::len(kernel, "x", x.len(), n)?;
    check::len(kernel, "out", out.len(), n)?;
    check::len(kernel, "weight", weight.len(), dim)
}
