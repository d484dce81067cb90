//! Row-wise argmax and top-k over a row-major `[rows, cols]` tensor
//! (greedy sampling and the candidate set of top-k / top-p sampling).
//!
//! Order: larger values first, NaN below every number (it is chosen only
//! when nothing else is left), equal values by lower index. Both functions
//! return the same indices on every SIMD level.

use exodus_numerics::cpu::{self, SimdLevel};

use super::check;
use super::dispatch::{path, Path};
use crate::error::Result;

/// Whether `a` ranks strictly above `b` by value alone (NaN lowest).
#[inline]
pub(crate) fn above(a: f32, b: f32) -> bool {
    a > b || (b.is_nan() && !a.is_nan())
}

/// `out[r]` = index of the largest value of row `r` (lowest index on ties;
/// 0 for a row of NaNs), on the active SIMD level.
///
/// Shapes: `x`: `[rows, cols]`; `out`: `[rows]`.
pub fn argmax(x: &[f32], rows: usize, cols: usize, out: &mut [u32]) -> Result<()> {
    argmax_with(cpu::active(), x, rows, cols, out)
}

/// [`argmax`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn argmax_with(
    level: SimdLevel,
    x: &[f32],
    rows: usize,
    cols: usize,
    out: &mut [u32],
) -> Result<()> {
    const K: &str = "argmax";
    check_cols(K, cols)?;
    check::len(K, "x", x.len(), check::product(K, &[rows, cols])?)?;
    check::len(K, "out", out.len(), rows)?;
    let p = path(level);
    for (row, o) in x.chunks_exact(cols).zip(out.iter_mut()) {
        *o = match p {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::argmax_row(row),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::argmax_row(row),
            Path::Scalar => argmax_row_scalar(row),
        } as u32;
    }
    Ok(())
}

fn argmax_row_scalar(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        if above(v, row[best]) {
            best = i;
        }
    }
    best
}

/// The `k` largest values of every row, in descending order, with their
/// column indices (ties by lower index; NaN last), on the active SIMD level.
///
/// Shapes: `x`: `[rows, cols]`; `indices`, `values`: `[rows, k]`;
/// `1 <= k <= cols`.
pub fn top_k(
    x: &[f32],
    rows: usize,
    cols: usize,
    k: usize,
    indices: &mut [u32],
    values: &mut [f32],
) -> Result<()> {
    top_k_with(cpu::active(), x, rows, cols, k, indices, values)
}

/// [`top_k`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn top_k_with(
    level: SimdLevel,
    x: &[f32],
    rows: usize,
    cols: usize,
    k: usize,
    indices: &mut [u32],
    values: &mut [f32],
) -> Result<()> {
    const K: &str = "top_k";
    check_cols(K, cols)?;
    if k == 0 || k > cols {
        return Err(check::bad_shape(
            K,
            format!("k = {k} must be in 1..={cols}"),
        ));
    }
    check::len(K, "x", x.len(), check::product(K, &[rows, cols])?)?;
    let n = check::product(K, &[rows, k])?;
    check::len(K, "indices", indices.len(), n)?;
    check::len(K, "values", values.len(), n)?;
    let p = path(level);
    let mut best = TopK::new(k);
    for ((row, idx), val) in x
        .chunks_exact(cols)
        .zip(indices.chunks_exact_mut(k))
        .zip(values.chunks_exact_mut(k))
    {
        best.clear();
        match p {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::top_k_row(row, &mut best),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::top_k_row(row, &mut best),
            Path::Scalar => best.extend(row, 0),
        }
        for ((i, v), e) in idx.iter_mut().zip(val.iter_mut()).zip(&best.items) {
            *i = e.1;
            *v = e.0;
        }
    }
    Ok(())
}

/// Column indices are `u32`: a row longer than that cannot be indexed.
fn check_cols(kernel: &'static str, cols: usize) -> Result<()> {
    check::nonzero(kernel, "cols", cols)?;
    if cols > u32::MAX as usize {
        return Err(check::bad_shape(kernel, format!("cols {cols} exceeds u32")));
    }
    Ok(())
}

/// The best `k` entries seen so far, sorted (best first).
pub(crate) struct TopK {
    k: usize,
    items: Vec<(f32, u32)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn clear(&mut self) {
        self.items.clear();
    }

    /// The value a new entry must rank above to get in, `None` while the
    /// set is not full.
    #[inline]
    pub(crate) fn threshold(&self) -> Option<f32> {
        (self.items.len() == self.k).then(|| self.items[self.k - 1].0)
    }

    /// Offer `v` at column `i` (columns are offered in increasing order, so
    /// an equal value already held stays ahead).
    #[inline]
    pub(crate) fn push(&mut self, v: f32, i: u32) {
        if let Some(t) = self.threshold() {
            if !above(v, t) {
                return;
            }
        }
        let at = self.items.partition_point(|e| !above(v, e.0));
        self.items.insert(at, (v, i));
        self.items.truncate(self.k);
    }

    /// Offer every value of `row`, the first at column `first`.
    pub(crate) fn extend(&mut self, row: &[f32], first: usize) {
        for (i, &v) in row.iter().enumerate() {
            self.push(v, (first + i) as u32);
        }
    }
}
