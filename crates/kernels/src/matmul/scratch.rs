//! Per-thread scratch buffers, so that kernels running on the pool's
//! persistent threads allocate once per thread, not once per task.

use std::cell::RefCell;

thread_local! {
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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

/// Runs `f` with this thread's B-panel buffer (the prefill GEMM's shared
/// packed panel, filled by the pool's threads), `len` floats from a 64-byte
/// boundary (contents unspecified). Kept across calls: a fresh multi-MiB
/// allocation per call cost a page fault and a page clear per 4 KiB, a
/// fifth of a 512 x 4096 x 4096 prefill in a profile.
pub(crate) fn with_panel<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    PANEL.with_borrow_mut(|v| {
        if v.len() < len + LINE - 1 {
            v.resize(len + LINE - 1, 0.0);
        }
        f(line_aligned(v, len))
    })
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
