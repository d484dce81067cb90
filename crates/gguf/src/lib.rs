//! `exodus-gguf`: reading GGUF model files safely.
//!
//! GGUF (ggml's model format, versions 2 and 3) is a header, metadata
//! key-value pairs, tensor infos (name, shape, ggml type, offset) and an
//! aligned data section. A model file is untrusted input, so the reader
//! checks every count, length and offset against the file before using it:
//!
//! - a malformed file gives a typed [`GgufError`] that says what is wrong
//!   and where (byte offset, metadata key or tensor name), never a panic;
//! - a count or length larger than the rest of the file could hold is
//!   rejected before anything is allocated, so no file makes the reader
//!   allocate more than a small multiple of its own size;
//! - tensor data must be aligned, inside the file and not overlapping, and
//!   its size follows from the ggml type and the shape (rows of `dims[0]`
//!   elements, each row whole blocks).
//!
//! A parsed file ([`Gguf`]) keeps its bytes: a memory map
//! ([`GgufFile::open`]), a borrowed slice ([`GgufView`]) or a `Vec`
//! ([`Gguf::read`]); tensor data is handed out as slices of them, without
//! copying. Metadata has typed getters ([`Metadata::get_u32`],
//! [`Metadata::get_str`], [`Metadata::get_slice`], ...) whose errors name
//! the key and both types, and tensor types map to exodus number formats
//! ([`TensorInfo::format`]). [`writer::GgufWriter`] writes files the reader
//! accepts.
//!
//! ```
//! use exodus_gguf::{writer::GgufWriter, GgmlType, Gguf};
//! use exodus_numerics::Format;
//!
//! let mut w = GgufWriter::new();
//! w.set("general.architecture", "llama")?
//!     .set("llama.block_count", 30u32)?
//!     .set("tokenizer.ggml.tokens", vec!["<s>", "</s>"])?;
//! w.add_tensor("blk.0.ffn_up.weight", GgmlType::Q4_1, &[64, 2], vec![0u8; 4 * 20])?;
//! let bytes = w.to_bytes();
//!
//! let file = Gguf::parse(&bytes[..])?;
//! let meta = file.metadata();
//! assert_eq!(meta.get_u32("llama.block_count")?, 30);
//! assert_eq!(meta.get_slice::<String>("tokenizer.ggml.tokens")?.len(), 2);
//! assert_eq!(
//!     meta.get_str("llama.block_count").unwrap_err().to_string(),
//!     "metadata key `llama.block_count` has type u32, expected string"
//! );
//! let t = file.tensor("blk.0.ffn_up.weight").unwrap();
//! assert_eq!(t.format()?, "q4_1".parse::<Format>()?);
//! assert_eq!(file.data(t.name())?.len(), 80);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `unsafe` is denied crate-wide; the one exception is mapping the file
//! (`mmap.rs`), whose caveat (the file must not change while mapped) is on
//! [`GgufFile::open`].

#![deny(unsafe_code)]

mod cursor;
pub mod error;
mod file;
pub mod ggml_type;
mod metadata;
mod mmap;
mod parse;
mod tensor;
pub mod value;
pub mod writer;

pub use error::{GgufError, Result};
pub use file::{Gguf, GgufFile, GgufView};
pub use ggml_type::GgmlType;
pub use metadata::Metadata;
pub use mmap::MappedFile;
pub use parse::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KEY_LEN,
    MAX_TENSOR_NAME_LEN,
};
pub use tensor::TensorInfo;
pub use value::{Array, Value, ValueType};
