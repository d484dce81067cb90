//! The one error type of `exodus-numerics`.

/// Everything that can go wrong when converting numbers. Malformed input
/// (wrong slice lengths, counts that are not a whole number of blocks,
/// unknown format names) is reported here; nothing in this crate panics on
/// user-controlled input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumericsError {
    /// The element count is not a whole number of blocks of the format.
    #[error("{format}: {len} elements is not a whole number of {block}-element blocks")]
    RaggedBlocks {
        /// Format name as used on the command line.
        format: &'static str,
        /// Number of elements given.
        len: usize,
        /// Elements per block of the format.
        block: usize,
    },
    /// An encoded byte buffer does not hold a whole number of blocks.
    #[error("{format}: {len} bytes is not a whole number of {block_bytes}-byte blocks")]
    RaggedBytes {
        /// Format name as used on the command line.
        format: &'static str,
        /// Number of bytes given.
        len: usize,
        /// Bytes per block of the format.
        block_bytes: usize,
    },
    /// Source and destination disagree on their length.
    #[error("{format}: {what} has length {got}, expected {expected}")]
    LengthMismatch {
        /// Format name as used on the command line.
        format: &'static str,
        /// Which buffer is wrong ("destination", "scales", ...).
        what: &'static str,
        /// The length that the other arguments imply.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A two-dimensional layout was asked for with a shape that does not fit.
    #[error("{format}: shape {rows}x{cols} does not match {len} elements")]
    BadShape {
        /// Format name.
        format: &'static str,
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Elements given.
        len: usize,
    },
    /// The format can be decoded but exodus has no encoder for it.
    #[error("{0}: quantizing to this format is not supported (only dequantizing is)")]
    QuantizeUnsupported(&'static str),
    /// A format name that exodus does not know.
    #[error("unknown format `{0}` (run `exodus formats` for the list)")]
    UnknownFormat(String),
    /// An option value that exodus does not know.
    #[error("unknown {what} `{value}` (expected one of: {expected})")]
    UnknownOption {
        /// Which option.
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T, E = NumericsError> = std::result::Result<T, E>;
