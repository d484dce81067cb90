//! Per-thread scratch buffers, so that kernels running on the pool's
//! persistent threads allocate once per thread, not once per task.

use std::cell::RefCell;

thread_local! {
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Floats per cache line: packed panels start on a line so that no vector
/// load of a sliver straddles two lines.
const LINE: usize = 16;

/// `v[..len]`, moved up to the first 64-byte boundary (`v` must hold
/// `len + LINE - 1` floats).
pub(crate) fn line_aligned(v: &mut [f32], len: usize) -> &mut [f32] {
    let skip = v.as_ptr().align_offset(64).min(LINE - 1);
    &mut v[skip..skip + len]
}

/// A zeroed buffer with room for `len` floats from a 64-byte boundary
/// (cut it with [`line_aligned`]).
pub(crate) fn aligned_vec(len: usize) -> Vec<f32> {
    vec![0f32; len + LINE - 1]
}

/// Runs `f` with this thread's packing buffer, grown to at least `len`
/// floats and cut to `len` from a 64-byte boundary (contents unspecified).
pub(crate) fn with_pack<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    PACK.with_borrow_mut(|v| {
        if v.len() < len + LINE - 1 {
            v.resize(len + LINE - 1, 0.0);
        }
        f(line_aligned(v, len))
    })
}

/// Runs `f` with this thread's row buffer (a second, independent buffer),
/// `len` floats long (contents unspecified).
pub(crate) fn with_row<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    ROW.with_borrow_mut(|v| {
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
    })
}
