//! Per-thread scratch buffers, so that kernels running on the pool's
//! persistent threads allocate once per thread, not once per task.

use std::cell::RefCell;

thread_local! {
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's packing buffer, grown to at least `len`
/// floats and cut to `len` (contents unspecified).
pub(crate) fn with_pack<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    PACK.with_borrow_mut(|v| {
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
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
