//! The crate's only `unsafe`: mapping a model file into memory read-only.

use std::fs::File;
use std::path::Path;

use crate::error::{GgufError, Result};

/// A read-only memory map of a whole file.
#[derive(Debug)]
pub struct MappedFile(memmap2::Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps the file at `path` read-only.
///
/// The bytes are shared with the page cache: if this or another process
/// writes to or truncates the file while the map lives, the slices handed
/// out change under the reader's feet (or the process gets `SIGBUS` on
/// touching pages past a new end). Do not modify model files while they
/// are open; read them with [`Gguf::read`](crate::Gguf::read) instead if
/// that cannot be ruled out.
#[allow(unsafe_code)]
pub(crate) fn map(path: &Path) -> Result<MappedFile> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: `Mmap::map` is unsafe only because the mapped file may be
    // modified or truncated by someone else while mapped, which would break
    // Rust's guarantee that a `&[u8]` does not change (or raise SIGBUS).
    // No platform lets us forbid that (Linux has no mandatory locks), so,
    // like every mmap-based model loader, exodus states the rule instead
    // (model files are not modified while open; see the doc above and on
    // `GgufFile::open`). The map is read-only (PROT_READ) and owned by the
    // returned value, so it outlives every slice borrowed from it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(MappedFile(map))
}
