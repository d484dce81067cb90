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

use std::sync::Mutex;

use super::check;
use crate::error::{KernelError, Result};
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
    check::nonzero(K, "cols", cols)?;
    check::nonzero(K, "rows_per_task", rows_per_task)?;
    if !x.len().is_multiple_of(cols) {
        return Err(check::bad_shape(
            K,
            format!(
                "x of {} values is not a whole number of {cols}-value rows",
                x.len()
            ),
        ));
    }
    check::len(K, "out", out.len(), x.len())?;
    let band = check::product(K, &[rows_per_task, cols])?;
    let error: Mutex<Option<KernelError>> = Mutex::new(None);
    pool.for_each_chunk_mut(out, band, |i, out| {
        let x = &x[i * band..i * band + out.len()];
        if let Err(e) = f(x, out, out.len() / cols) {
            error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    });
    match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
    check::nonzero(K, "cols", cols)?;
    check::nonzero(K, "rows_per_task", rows_per_task)?;
    if !x.len().is_multiple_of(cols) {
        return Err(check::bad_shape(
            K,
            format!(
                "x of {} values is not a whole number of {cols}-value rows",
                x.len()
            ),
        ));
    }
    let band = check::product(K, &[rows_per_task, cols])?;
    let error: Mutex<Option<KernelError>> = Mutex::new(None);
    pool.for_each_chunk_mut(x, band, |_, x| {
        let rows = x.len() / cols;
        if let Err(e) = f(x, rows) {
            error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    });
    match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
