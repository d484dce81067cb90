//! The one error type of `exodus-kernels`.

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
