//! The one error type of `exodus-kernels`.

use std::sync::Mutex;

/// What a kernel refuses: shapes that do not fit the slices it was given,
/// or a weight format it has no kernel for. Kernels never panic on such input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A slice has the wrong length for the shape the caller stated.
    #[error("{kernel}: {what} has length {got}, expected {expected}")]
    LengthMismatch {
        /// Kernel name.
        kernel: &'static str,
        /// Which argument.
        what: &'static str,
        /// Length implied by the shape.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A shape the kernel cannot run (zero heads, head_dim not even for rope, ...).
    #[error("{kernel}: {reason}")]
    BadShape {
        /// Kernel name.
        kernel: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The kernel has no implementation for this weight/cache format.
    #[error("{kernel}: format {format} is not supported")]
    UnsupportedFormat {
        /// Kernel name.
        kernel: &'static str,
        /// Format name.
        format: &'static str,
    },
    /// A lower-level codec error.
    #[error(transparent)]
    Numerics(#[from] exodus_numerics::NumericsError),
    /// An index (token id, block id, position) outside the range it addresses.
    #[error("{kernel}: {what} {index} is out of range (limit {limit})")]
    OutOfRange {
        /// Kernel name.
        kernel: &'static str,
        /// What the index addresses.
        what: &'static str,
        /// The index given.
        index: usize,
        /// The exclusive upper bound.
        limit: usize,
    },
}

/// Result alias of this crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Keeps the first error of tasks run in parallel on the pool (the others
/// are dropped: one failure is enough to fail the call).
#[derive(Default)]
pub(crate) struct FirstError(Mutex<Option<KernelError>>);

impl FirstError {
    pub(crate) fn keep(&self, r: Result<()>) {
        if let Err(e) = r {
            let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        }
    }

    pub(crate) fn into_result(self) -> Result<()> {
        match self.0.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
