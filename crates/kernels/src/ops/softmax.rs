//! Numerically stable softmax over the rows of a row-major `[rows, cols]`
//! tensor, in place: `x - max(x)` is exponentiated, so no row overflows.
//!
//! A row whose maximum is `-inf` (every entry masked) becomes all zeros
//! rather than NaN. NaN inputs propagate to their row. The scalar path uses
//! the standard library's `exp`; the SIMD paths a polynomial `exp` within
//! 2 ulp of it.

use exodus_numerics::cpu::{self, SimdLevel};

use super::check;
use super::dispatch::{path, Path};
use crate::error::Result;

/// Softmax of every row of `x`, in place, on the active SIMD level.
///
/// Shape: `x`: `[rows, cols]`.
pub fn softmax(x: &mut [f32], rows: usize, cols: usize) -> Result<()> {
    softmax_with(cpu::active(), x, rows, cols)
}

/// [`softmax`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn softmax_with(level: SimdLevel, x: &mut [f32], rows: usize, cols: usize) -> Result<()> {
    const K: &str = "softmax";
    check::nonzero(K, "cols", cols)?;
    check::len(K, "x", x.len(), check::product(K, &[rows, cols])?)?;
    let p = path(level);
    for row in x.chunks_exact_mut(cols) {
        match p {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::softmax_row(row),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::softmax_row(row),
            Path::Scalar => softmax_row_scalar(row),
        }
    }
    Ok(())
}

fn softmax_row_scalar(row: &mut [f32]) {
    // `f32::max` ignores NaN; a NaN entry still poisons the sum below.
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        fill_masked(row);
        return;
    }
    let mut sum = 0f64;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The result for a row without a finite maximum (every entry `-inf` or
/// NaN): zeros, or NaN everywhere if the row holds a NaN.
pub(crate) fn fill_masked(row: &mut [f32]) {
    let fill = if row.iter().any(|v| v.is_nan()) {
        f32::NAN
    } else {
        0.0
    };
    row.fill(fill);
}
