//! Embedding lookup: gather rows of a table stored in any exodus-numerics
//! [`Format`] and dequantize them to f32.
//!
//! Each table row is `format.encoded_len(dim)` bytes (sub-byte element
//! formats one code per byte, as [`Format::dequantize_into`] reads them
//! unpacked), so the format's block must divide `dim`. Decoding goes
//! through [`Format::dequantize_into`], which picks its SIMD path from
//! [`exodus_numerics::cpu::active`] (and honours `EXODUS_FORCE_SCALAR`).

use exodus_numerics::Format;

use super::check;
use crate::error::Result;

/// A row-major `[vocab, dim]` table of quantized rows.
#[derive(Debug, Clone, Copy)]
pub struct QuantizedRows<'a> {
    /// The encoded rows, back to back (`vocab * row_bytes` bytes).
    pub bytes: &'a [u8],
    /// Storage format of every row.
    pub format: Format,
    /// Number of rows.
    pub vocab: usize,
    /// Values per row.
    pub dim: usize,
}

impl QuantizedRows<'_> {
    /// Bytes of one encoded row, or an error if the format's block does
    /// not divide `dim`.
    pub fn row_bytes(&self) -> Result<usize> {
        self.format.encoded_len(self.dim, false).map_err(|_| {
            check::bad_shape(
                "embedding",
                format!(
                    "dim {} is not a whole number of {}-value {} blocks",
                    self.dim,
                    self.format.block_elems(),
                    self.format.name()
                ),
            )
        })
    }
}

/// `out[i, :] = dequantize(table[ids[i], :])`.
///
/// Shapes: `ids`: `[n]`; `out`: `[n, dim]`. An id at or beyond
/// `table.vocab` is a [`KernelError::OutOfRange`](crate::KernelError::OutOfRange).
pub fn embedding(table: &QuantizedRows<'_>, ids: &[u32], out: &mut [f32]) -> Result<()> {
    const K: &str = "embedding";
    check::nonzero(K, "dim", table.dim)?;
    let row_bytes = table.row_bytes()?;
    check::len(
        K,
        "table",
        table.bytes.len(),
        check::product(K, &[table.vocab, row_bytes])?,
    )?;
    check::len(
        K,
        "out",
        out.len(),
        check::product(K, &[ids.len(), table.dim])?,
    )?;
    for &id in ids {
        check::index(K, "token id", id as usize, table.vocab)?;
    }
    for (&id, out) in ids.iter().zip(out.chunks_exact_mut(table.dim)) {
        let start = id as usize * row_bytes;
        let row = &table.bytes[start..start + row_bytes];
        table.format.dequantize_into(row, out, false)?;
    }
    Ok(())
}
