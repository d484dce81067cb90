//! Argument checks shared by the ops and attention kernels: every length
//! and shape a caller states is validated here before a kernel touches a
//! slice, so bad input comes back as a [`KernelError`], never a panic.

use crate::error::{KernelError, Result};

/// `rows * cols`, or a [`KernelError::BadShape`] if the product overflows.
pub(crate) fn product(kernel: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad_shape(kernel, format!("shape {dims:?} overflows usize")))
}

/// A [`KernelError::LengthMismatch`] unless `got == expected`.
pub(crate) fn len(
    kernel: &'static str,
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            kernel,
            what,
            expected,
            got,
        })
    }
}

/// A [`KernelError::BadShape`] with `reason`.
pub(crate) fn bad_shape(kernel: &'static str, reason: impl Into<String>) -> KernelError {
    KernelError::BadShape {
        kernel,
        reason: reason.into(),
    }
}

/// A [`KernelError::BadShape`] unless `value > 0`.
pub(crate) fn nonzero(kernel: &'static str, what: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(bad_shape(kernel, format!("{what} must be positive")))
    } else {
        Ok(())
    }
}

/// A [`KernelError::OutOfRange`] unless `index < limit`.
pub(crate) fn index(
    kernel: &'static str,
    what: &'static str,
    index: usize,
    limit: usize,
) -> Result<()> {
    if index < limit {
        Ok(())
    } else {
        Err(KernelError::OutOfRange {
            kernel,
            what,
            index,
            limit,
        })
    }
}
