//! The one error type of the reader: each variant says what is wrong and
//! where (a byte offset into the file, a metadata key or a tensor name), so
//! a bad file can be diagnosed from the message alone.

use std::path::PathBuf;

use crate::ggml_type::GgmlType;

/// Result of the GGUF reader.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// Everything that can be wrong with a GGUF file, or with a question asked
/// of one. `what` fields name the part of the file being read, e.g.
/// "metadata key `general.name`" or "tensor info #3".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, read or mapped (the cause is the
    /// error's `source`).
    #[error("reading {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: the magic at byte 0 is \"{}\", expected \"GGUF\"", found.escape_ascii())]
    BadMagic {
        /// The bytes found (fewer than four if the file is that short).
        found: Vec<u8>,
    },

    /// A version other than 2 and 3.
    #[error("GGUF version {version} is not supported (exodus reads versions 2 and 3)")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },

    /// The version field only makes sense byte-swapped: a big-endian file.
    #[error(
        "the file looks big-endian (its version field reads {} byte-swapped); \
         exodus reads little-endian GGUF only",
        version.swap_bytes()
    )]
    BigEndian {
        /// The version field, as read little-endian.
        version: u32,
    },

    /// A field runs past the end of the file.
    #[error("truncated file: {what} needs {needed} bytes at byte {at}, but the file is {len} bytes long")]
    Truncated {
        /// The part being read.
        what: String,
        /// Where the field starts.
        at: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Length of the file.
        len: u64,
    },

    /// A metadata value type id outside the GGUF specification.
    #[error("{what}: unknown metadata value type {type_id} at byte {at}")]
    UnknownValueType {
        /// The part being read.
        what: String,
        /// Where the type id is.
        at: u64,
        /// The type id found.
        type_id: u32,
    },

    /// A boolean byte other than 0 or 1.
    #[error("{what}: boolean byte {value} at byte {at}, expected 0 or 1")]
    BadBool {
        /// The part being read.
        what: String,
        /// Where the byte is.
        at: u64,
        /// The byte found.
        value: u8,
    },

    /// A string that is not UTF-8.
    #[error("{what}: the string at byte {at} is not valid UTF-8")]
    BadUtf8 {
        /// The part being read.
        what: String,
        /// Where the string's bytes start.
        at: u64,
    },

    /// A count (of entries, array items or bytes) that the rest of the file
    /// cannot possibly hold. Checked before anything is allocated.
    #[error(
        "{what}: count {count} at byte {at} cannot fit in the {remaining} bytes left \
         (each item takes at least {min_each} bytes)"
    )]
    AbsurdCount {
        /// The part being read.
        what: String,
        /// Where the count is.
        at: u64,
        /// The count found.
        count: u64,
        /// Smallest encoded size of one item.
        min_each: u64,
        /// Bytes left in the file after the count.
        remaining: u64,
    },

    /// Arrays of arrays nested deeper than the reader allows.
    #[error("{what}: arrays nested deeper than {max} levels at byte {at}")]
    NestingTooDeep {
        /// The part being read.
        what: String,
        /// Where the too-deep array starts.
        at: u64,
        /// The deepest nesting allowed.
        max: usize,
    },

    /// A key or tensor name longer than the specification allows.
    #[error("{what}: the name at byte {at} is {len} bytes long, at most {max} are allowed")]
    NameTooLong {
        /// The part being read.
        what: String,
        /// Where the name starts.
        at: u64,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A metadata key that appears twice.
    #[error("duplicate metadata key `{key}` at byte {at}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second copy starts.
        at: u64,
    },

    /// A tensor name that appears twice.
    #[error("duplicate tensor name `{name}` at byte {at}")]
    DuplicateTensor {
        /// The name.
        name: String,
        /// Where the second tensor info starts.
        at: u64,
    },

    /// More dimensions than ggml's maximum of 4.
    #[error("tensor `{name}`: {n_dims} dimensions at byte {at}, at most 4 are allowed")]
    TooManyDims {
        /// The tensor.
        name: String,
        /// Where the dimension count is.
        at: u64,
        /// The dimension count found.
        n_dims: u32,
    },

    /// A ggml tensor type id that no ggml version defines (or that was
    /// removed from GGUF files).
    #[error("tensor `{name}`: unknown ggml type {type_id} at byte {at}")]
    UnknownTensorType {
        /// The tensor.
        name: String,
        /// Where the type id is.
        at: u64,
        /// The type id found.
        type_id: u32,
    },

    /// A known ggml type that exodus has no number format for.
    #[error(
        "tensor `{name}` has type {ty}, which exodus does not support \
         (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, q8_k)"
    )]
    UnsupportedTensorType {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },

    /// Dimensions whose element count or byte size does not fit in 63 bits.
    #[error("tensor `{name}`: dimensions {dims:?} overflow (elements or bytes above 2^63 - 1)")]
    ShapeOverflow {
        /// The tensor.
        name: String,
        /// Its dimensions, innermost first.
        dims: Vec<u64>,
    },

    /// A first dimension that is not a whole number of blocks.
    #[error("tensor `{name}`: its first dimension {ne0} is not a multiple of the {ty} block size {block}")]
    RaggedRow {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
        /// Its first (innermost) dimension.
        ne0: u64,
        /// Elements per block of the type.
        block: u64,
    },

    /// `general.alignment` that is zero or not a power of two.
    #[error("general.alignment is {value}; it must be a power of two")]
    BadAlignment {
        /// The value found.
        value: u32,
    },

    /// A tensor data offset that is not a multiple of the alignment.
    #[error(
        "tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned {
        /// The tensor.
        name: String,
        /// Its offset from the start of the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// Tensor data that does not lie inside the file.
    #[error("tensor `{name}`: data at bytes [{start}, {end}) runs past the end of the file ({len} bytes)")]
    DataPastEnd {
        /// The tensor.
        name: String,
        /// First byte of its data, from the start of the file (saturated).
        start: u64,
        /// One past its last byte (saturated).
        end: u64,
        /// Length of the file.
        len: u64,
    },

    /// Two tensors whose data share bytes.
    #[error(
        "tensors `{first}` (bytes [{first_start}, {first_end})) and `{second}` \
         (bytes [{second_start}, {second_end})) overlap"
    )]
    Overlap {
        /// The tensor that starts first.
        first: String,
        /// Its first byte, from the start of the file.
        first_start: u64,
        /// One past its last byte.
        first_end: u64,
        /// The tensor that starts inside it.
        second: String,
        /// Its first byte.
        second_start: u64,
        /// One past its last byte.
        second_end: u64,
    },

    /// A metadata key that the caller needs but the file lacks.
    #[error("metadata key `{key}` is missing")]
    MissingKey {
        /// The key.
        key: String,
    },

    /// A metadata value of another type than the caller asked for.
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// The type in the file, e.g. "u64" or "array of string".
        found: String,
        /// The type asked for.
        expected: String,
    },

    /// A metadata value of the right kind but out of the asked range
    /// (a negative count, say).
    #[error("metadata key `{key}` is {value}, which is not {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value in the file.
        value: String,
        /// What was asked for.
        expected: &'static str,
    },

    /// A tensor that the caller needs but the file lacks (or a
    /// [`TensorInfo`](crate::TensorInfo) from another file).
    #[error("no tensor named `{name}`")]
    MissingTensor {
        /// The name asked for.
        name: String,
    },
}
