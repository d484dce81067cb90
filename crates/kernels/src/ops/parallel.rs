//! The thin parallel layer of the row-wise ops: split a `[rows, cols]`
//! input and its output into bands of whole rows and run a single-threaded
//! kernel on each band on the [`ThreadPool`].
//!
//! ```
//! use exodus_kernels::ops::{self, parallel, RmsNormParams};
//! use exodus_kernels::pool::ThreadPool;
//!
//! let (rows, dim) = (64, 576);
//! let x = vec![1.0f32; rows * dim];
//! let w = vec![0.5f32; dim];
//! let mut out = vec![0f32; rows * dim];
//! let p = RmsNormParams::default();
//! parallel::map_rows(&ThreadPool::new(2), &x, &mut out, dim, 16, |x, out, n| {
//!     ops::rms_norm(x, &w, out, n, dim, &p)
//! })?;
//! assert!((out[0] - 0.5).abs() < 1e-3);
//! # Ok::<(), exodus_kernels::KernelError>(())
//! ```

use super::check;
use crate::error::{FirstError, Result};
use crate::pool::ThreadPool;

/// Run `f(x_band, out_band, band_rows)` over bands of at most
/// `rows_per_task` rows of `x` and `out` (both `[rows, cols]`), in
/// parallel on `pool`; the first error of any band is returned.
///
/// Memory-bound ops only gain from this for large inputs (a prefill
/// chunk, a batch of logits): `rows_per_task` sets the grain.
pub fn map_rows<F>(
    pool: &ThreadPool,
    x: &[f32],
    out: &mut [f32],
    cols: usize,
    rows_per_task: usize,
    f: F,
) -> Result<()>
where
    F: Fn(&[f32], &mut [f32], usize) -> Result<()> + Sync,
{
    const K: &str = "parallel::map_rows";
    check_rows(K, x.len(), cols, rows_per_task)?;
    check::len(K, "out", out.len(), x.len())?;
    let band = check::product(K, &[rows_per_task, cols])?;
    let errors = FirstError::default();
    pool.for_each_chunk_mut(out, band, |i, out| {
        let x = &x[i * band..i * band + out.len()];
        if let Err(e) = f(x, out, out.len() / cols) {
            errors.keep(Err(e));
        }
    });
    errors.into_result()
}

/// Run `f(band, band_rows)` over bands of at most `rows_per_task` rows of
/// `x` (`[rows, cols]`, in place), in parallel on `pool`; the first error
/// of any band is returned.
pub fn map_rows_in_place<F>(
    pool: &ThreadPool,
    x: &mut [f32],
    cols: usize,
    rows_per_task: usize,
    f: F,
) -> Result<()>
where
    F: Fn(&mut [f32], usize) -> Result<()> + Sync,
{
    const K: &str = "parallel::map_rows_in_place";
    check_rows(K, x.len(), cols, rows_per_task)?;
    let band = check::product(K, &[rows_per_task, cols])?;
    let errors = FirstError::default();
    pool.for_each_chunk_mut(x, band, |_, x| {
        let rows = x.len() / cols;
        if let Err(e) = f(x, rows) {
            errors.keep(Err(e));
        }
    });
    errors.into_result()
}

/// `len` values must be whole rows of `cols`, and a band at least one row.
fn check_rows(kernel: &'static str, len: usize, cols: usize, rows_per_task: usize) -> Result<()> {
    check::nonzero(kernel, "cols", cols)?;
    check::nonzero(kernel, "rows_per_task", rows_per_task)?;
    if !len.is_multiple_of(cols) {
        return Err(check::bad_shape(
            kernel,
            format!("x of {len} values is not a whole number of {cols}-value rows"),
        ));
    }
    Ok(())
}
