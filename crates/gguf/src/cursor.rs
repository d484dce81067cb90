//! A bounds-checked little-endian reader over the file's bytes. Every read
//! checks the bytes are there first and, if not, says which part of the
//! file was being read ([`Place`]) and at which byte.

use std::fmt;

use crate::error::{GgufError, Result};

/// The part of the file being read, for error messages. Cheap to copy; it
/// becomes a `String` only when an error is built.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'k> {
    /// The fixed header.
    Header,
    /// The key of the metadata entry with this index.
    KeyName(u64),
    /// The value of this metadata key.
    Key(&'k str),
    /// The name of the tensor info with this index.
    TensorName(u64),
    /// The rest of this tensor's info.
    Tensor(&'k str),
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Header => f.write_str("header"),
            Place::KeyName(i) => write!(f, "the key of metadata entry #{i}"),
            Place::Key(k) => write!(f, "metadata key `{k}`"),
            Place::TensorName(i) => write!(f, "the name of tensor info #{i}"),
            Place::Tensor(n) => write!(f, "tensor info `{n}`"),
        }
    }
}

/// Reads forward through `bytes`.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Current offset from the start of the file.
    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left after the current offset.
    pub(crate) fn remaining(&self) -> u64 {
        self.bytes.len().saturating_sub(self.pos) as u64
    }

    /// The error for `needed` bytes that are not there.
    pub(crate) fn truncated(&self, place: Place<'_>, needed: u64) -> GgufError {
        GgufError::Truncated {
            what: place.to_string(),
            at: self.pos(),
            needed,
            len: self.bytes.len() as u64,
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64, place: Place<'_>) -> Result<&'a [u8]> {
        let slice = usize::try_from(n)
            .ok()
            .and_then(|n| Some(self.pos..self.pos.checked_add(n)?))
            .and_then(|range| self.bytes.get(range));
        match slice {
            Some(s) => {
                self.pos += s.len();
                Ok(s)
            }
            None => Err(self.truncated(place, n)),
        }
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, place: Place<'_>) -> Result<[u8; N]> {
        let s = self.take(N as u64, place)?;
        <[u8; N]>::try_from(s).map_err(|_| self.truncated(place, N as u64))
    }

    pub(crate) fn u8(&mut self, place: Place<'_>) -> Result<u8> {
        Ok(self.array::<1>(place)?[0])
    }

    pub(crate) fn u32(&mut self, place: Place<'_>) -> Result<u32> {
        self.array(place).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, place: Place<'_>) -> Result<u64> {
        self.array(place).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_each` bytes each can fit
    /// in the rest of the file; `at` is where the count was read.
    pub(crate) fn check_count(
        &self,
        count: u64,
        min_each: u64,
        at: u64,
        place: Place<'_>,
    ) -> Result<usize> {
        let remaining = self.remaining();
        let fits = count
            .checked_mul(min_each)
            .is_some_and(|bytes| bytes <= remaining);
        match usize::try_from(count) {
            Ok(n) if fits => Ok(n),
            _ => Err(GgufError::AbsurdCount {
                what: place.to_string(),
                at,
                count,
                min_each,
                remaining,
            }),
        }
    }

    /// A GGUF string (u64 length, UTF-8 bytes) of at most `max_len` bytes.
    pub(crate) fn string(&mut self, max_len: u64, place: Place<'_>) -> Result<&'a str> {
        let len_at = self.pos();
        let len = self.u64(place)?;
        if len > self.remaining() {
            return Err(GgufError::AbsurdCount {
                what: place.to_string(),
                at: len_at,
                count: len,
                min_each: 1,
                remaining: self.remaining(),
            });
        }
        if len > max_len {
            return Err(GgufError::NameTooLong {
                what: place.to_string(),
                at: len_at,
                len,
                max: max_len,
            });
        }
        let at = self.pos();
        let bytes = self.take(len, place)?;
        std::str::from_utf8(bytes).map_err(|_| GgufError::BadUtf8 {
            what: place.to_string(),
            at,
        })
    }

    /// Moves to `pos` (at most the end of the file).
    pub(crate) fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.bytes.len());
    }
}
