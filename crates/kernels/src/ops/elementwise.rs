//! Elementwise arithmetic on f32 slices of equal length: `add`, `sub`,
//! `mul`, `div`, `scale`. Memory-bound; the SIMD paths are exact (the same single f32
//! operation per element as the scalar reference).

use exodus_numerics::cpu::{self, SimdLevel};

use super::check;
use super::dispatch::{path, Path};
use crate::error::Result;

/// The binary operations of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
}

impl Binary {
    /// The scalar operation (every SIMD path computes exactly this).
    #[inline]
    pub(crate) fn apply(self, x: f32, y: f32) -> f32 {
        match self {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
        }
    }
}

/// `out = a + b` elementwise, on the active SIMD level.
///
/// Shapes: `a`, `b`, `out`: `[n]`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    add_with(cpu::active(), a, b, out)
}

/// [`add`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn add_with(level: SimdLevel, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    binary("add", Binary::Add, level, a, b, out)
}

/// `out = a - b` elementwise, on the active SIMD level.
///
/// Shapes: `a`, `b`, `out`: `[n]`.
pub fn sub(a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    sub_with(cpu::active(), a, b, out)
}

/// [`sub`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn sub_with(level: SimdLevel, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    binary("sub", Binary::Sub, level, a, b, out)
}

/// `out = a / b` elementwise (IEEE division: `x / 0` is ±inf or NaN), on
/// the active SIMD level.
///
/// Shapes: `a`, `b`, `out`: `[n]`.
pub fn div(a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    div_with(cpu::active(), a, b, out)
}

/// [`div`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn div_with(level: SimdLevel, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    binary("div", Binary::Div, level, a, b, out)
}

/// `out = a * b` elementwise, on the active SIMD level.
///
/// Shapes: `a`, `b`, `out`: `[n]`.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    mul_with(cpu::active(), a, b, out)
}

/// [`mul`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn mul_with(level: SimdLevel, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
    binary("mul", Binary::Mul, level, a, b, out)
}

fn binary(
    kernel: &'static str,
    op: Binary,
    level: SimdLevel,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check::len(kernel, "b", b.len(), a.len())?;
    check::len(kernel, "out", out.len(), a.len())?;
    match path(level) {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => super::x86::binary(op, a, b, out),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => super::neon::binary(op, a, b, out),
        Path::Scalar => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = op.apply(x, y);
            }
        }
    }
    Ok(())
}

/// `out = x * s` elementwise, on the active SIMD level.
///
/// Shapes: `x`, `out`: `[n]`.
pub fn scale(x: &[f32], s: f32, out: &mut [f32]) -> Result<()> {
    scale_with(cpu::active(), x, s, out)
}

/// [`scale`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn scale_with(level: SimdLevel, x: &[f32], s: f32, out: &mut [f32]) -> Result<()> {
    check::len("scale", "out", out.len(), x.len())?;
    match path(level) {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => super::x86::scale(x, s, out),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => super::neon::scale(x, s, out),
        Path::Scalar => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v * s;
            }
        }
    }
    Ok(())
}
