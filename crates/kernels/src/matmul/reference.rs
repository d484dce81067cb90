//! The scalar reference every matmul path is tested against: W
//! dequantized row by row with exodus-numerics' scalar decoders, then the
//! naive triple loop with f64 accumulation.

use exodus_numerics::cpu::SimdLevel;

use super::{check_shapes, Weights};
use crate::error::Result;

/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ`, slowly and exactly: each output
/// is the f64 sum of the f64 products of x and the dequantized W, rounded
/// once to f32. x is f32 row-major `[rows, k]`, out f32 row-major
/// `[rows, n]`; wrong lengths are a [`crate::KernelError::LengthMismatch`].
pub fn matmul_reference(x: &[f32], rows: usize, w: &Weights, out: &mut [f32]) -> Result<()> {
    check_shapes(x, rows, w, out)?;
    let (n, k) = (w.n(), w.k());
    let mut wrow = vec![0f32; k];
    for j in 0..n {
        // wrow = W[j, :] (k values)
        w.dequantize_row(SimdLevel::Scalar, j, 0, k, &mut wrow)?;
        for r in 0..rows {
            let xr = &x[r * k..(r + 1) * k];
            let s: f64 = xr
                .iter()
                .zip(&wrow)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            out[r * n + j] = s as f32;
        }
    }
    Ok(())
}
