//! Data movement and reductions along one axis: transpose (any permutation
//! of up to 8 axes), slice and concatenate along an axis, and row sums.
//! The copies move contiguous runs with `copy_from_slice` (memcpy) wherever
//! the innermost axis stays in place; the general transpose walks the
//! output in order with an odometer over the input strides.

use super::check;
use crate::error::Result;

/// Most axes a transpose takes.
pub const MAX_RANK: usize = 8;

/// `out` = `x` (row-major, `dims`) with its axes permuted: output axis `i`
/// is input axis `perm[i]`.
pub fn transpose(x: &[f32], dims: &[usize], perm: &[usize], out: &mut [f32]) -> Result<()> {
    const K: &str = "transpose";
    let rank = dims.len();
    if rank > MAX_RANK || perm.len() != rank {
        return Err(check::bad_shape(
            K,
            format!(
                "rank {rank} with a permutation of {} axes (at most {MAX_RANK})",
                perm.len()
            ),
        ));
    }
    let mut seen = [false; MAX_RANK];
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return Err(check::bad_shape(
                K,
                format!("{perm:?} is not a permutation of {rank} axes"),
            ));
        }
    }
    let n = check::product(K, dims)?;
    check::len(K, "x", x.len(), n)?;
    check::len(K, "out", out.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // Input strides, and the output's dims with the matching input strides.
    let mut stride = [0usize; MAX_RANK];
    let mut s = 1;
    for a in (0..rank).rev() {
        stride[a] = s;
        s *= dims[a];
    }
    let odims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let ostride: Vec<usize> = perm.iter().map(|&p| stride[p]).collect();
    // The innermost output axis reads input with stride `ostride[last]`;
    // when that is 1 the runs are contiguous and copied whole.
    let inner = odims[rank - 1];
    let contiguous = ostride[rank - 1] == 1;
    let mut idx = [0usize; MAX_RANK];
    let mut src = 0usize;
    for run in out.chunks_exact_mut(inner) {
        if contiguous {
            run.copy_from_slice(&x[src..src + inner]);
        } else {
            for (j, o) in run.iter_mut().enumerate() {
                *o = x[src + j * ostride[rank - 1]];
            }
        }
        // Advance the odometer over the outer output axes.
        for a in (0..rank - 1).rev() {
            idx[a] += 1;
            src += ostride[a];
            if idx[a] < odims[a] {
                break;
            }
            src -= ostride[a] * odims[a];
            idx[a] = 0;
        }
    }
    Ok(())
}

/// `out[o, 0 .. end - start, i] = x[o, start .. end, i]` for `x` of shape
/// `[outer, axis, inner]`.
pub fn slice_axis(
    x: &[f32],
    outer: usize,
    axis: usize,
    inner: usize,
    start: usize,
    end: usize,
    out: &mut [f32],
) -> Result<()> {
    const K: &str = "slice";
    if start > end || end > axis {
        return Err(check::bad_shape(
            K,
            format!("{start}..{end} outside an axis of {axis}"),
        ));
    }
    check::len(K, "x", x.len(), check::product(K, &[outer, axis, inner])?)?;
    let run = (end - start) * inner;
    check::len(K, "out", out.len(), outer * run)?;
    if run == 0 {
        return Ok(());
    }
    for (o, dst) in out.chunks_exact_mut(run).enumerate() {
        let at = (o * axis + start) * inner;
        dst.copy_from_slice(&x[at..at + run]);
    }
    Ok(())
}

/// Concatenates parts of shapes `[outer, axis_p, inner]` along the middle
/// axis into `out[outer, Σ axis_p, inner]`; `parts` are `(data, axis_p)`.
pub fn concat_axis(
    parts: &[(&[f32], usize)],
    outer: usize,
    inner: usize,
    out: &mut [f32],
) -> Result<()> {
    const K: &str = "concat";
    let total: usize = parts.iter().map(|p| p.1).sum();
    check::len(
        K,
        "out",
        out.len(),
        check::product(K, &[outer, total, inner])?,
    )?;
    for (i, (data, axis)) in parts.iter().enumerate() {
        let want = check::product(K, &[outer, *axis, inner])?;
        if data.len() != want {
            return Err(check::bad_shape(
                K,
                format!("part {i} holds {}, its shape {want}", data.len()),
            ));
        }
    }
    let row = total * inner;
    for o in 0..outer {
        let mut at = o * row;
        for (data, axis) in parts {
            let run = axis * inner;
            out[at..at + run].copy_from_slice(&data[o * run..(o + 1) * run]);
            at += run;
        }
    }
    Ok(())
}

/// `out[r] = sum(x[r, :])` (`x`: `[rows, cols]`), summed in f64 so long
/// rows keep f32 accuracy; `mean` divides by `cols`.
pub fn sum_rows(x: &[f32], rows: usize, cols: usize, mean: bool, out: &mut [f32]) -> Result<()> {
    const K: &str = "sum_rows";
    check::len(K, "x", x.len(), check::product(K, &[rows, cols])?)?;
    check::len(K, "out", out.len(), rows)?;
    if cols == 0 {
        out.fill(if mean { f32::NAN } else { 0.0 });
        return Ok(());
    }
    for (o, row) in out.iter_mut().zip(x.chunks_exact(cols)) {
        let s: f64 = row.iter().map(|&v| v as f64).sum();
        *o = if mean {
            (s / cols as f64) as f32
        } else {
            s as f32
        };
    }
    Ok(())
}

/// `out[i, :] = x[rows[i], :]` for `x` of `x.len() / width` rows of `width`
/// values: the rows a step keeps (the last token's hidden state before the
/// output projection). Errors on a row index past `x`'s rows.
pub fn gather_rows(x: &[f32], width: usize, rows: &[u32], out: &mut [f32]) -> Result<()> {
    const K: &str = "gather_rows";
    if width == 0 {
        return check::len(K, "out", out.len(), 0);
    }
    let have = x.len() / width;
    check::len(K, "x", x.len(), have * width)?;
    check::len(
        K,
        "out",
        out.len(),
        check::product(K, &[rows.len(), width])?,
    )?;
    for (o, &r) in out.chunks_exact_mut(width).zip(rows) {
        let r = r as usize;
        if r >= have {
            return Err(check::bad_shape(K, format!("row {r} of {have} rows")));
        }
        o.copy_from_slice(&x[r * width..(r + 1) * width]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_index_arithmetic() {
        let dims = [2usize, 3, 4];
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        for perm in [
            [0, 1, 2],
            [2, 1, 0],
            [1, 0, 2],
            [0, 2, 1],
            [2, 0, 1],
            [1, 2, 0],
        ] {
            let mut out = vec![0f32; 24];
            transpose(&x, &dims, &perm, &mut out).unwrap();
            let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
            for (flat, &v) in out.iter().enumerate() {
                let o = [flat / (od[1] * od[2]), flat / od[2] % od[1], flat % od[2]];
                let mut i = [0usize; 3];
                for a in 0..3 {
                    i[perm[a]] = o[a];
                }
                assert_eq!(
                    v,
                    x[(i[0] * 3 + i[1]) * 4 + i[2]],
                    "perm {perm:?} at {flat}"
                );
            }
        }
        assert!(transpose(&x, &dims, &[0, 0, 1], &mut [0f32; 24]).is_err());
        assert!(transpose(&x, &dims, &[0, 1], &mut [0f32; 24]).is_err());
    }

    #[test]
    fn slice_concat_and_sums() {
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect(); // [2, 3, 4]
        let mut s = vec![0f32; 2 * 2 * 4];
        slice_axis(&x, 2, 3, 4, 1, 3, &mut s).unwrap();
        assert_eq!(&s[..4], &[4.0, 5.0, 6.0, 7.0]);
        assert_eq!(&s[8..12], &[16.0, 17.0, 18.0, 19.0]);
        assert!(slice_axis(&x, 2, 3, 4, 2, 4, &mut s).is_err());
        let mut head = vec![0f32; 2 * 4];
        slice_axis(&x, 2, 3, 4, 0, 1, &mut head).unwrap();
        let mut back = vec![0f32; 24];
        concat_axis(&[(&head, 1), (&s, 2)], 2, 4, &mut back).unwrap();
        assert_eq!(back, x);
        let mut sums = vec![0f32; 6];
        sum_rows(&x, 6, 4, false, &mut sums).unwrap();
        assert_eq!(sums, [6.0, 22.0, 38.0, 54.0, 70.0, 86.0]);
        sum_rows(&x, 6, 4, true, &mut sums).unwrap();
        assert_eq!(sums[0], 1.5);
    }
}
