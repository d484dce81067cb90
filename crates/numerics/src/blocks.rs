//! Length checks shared by every block format: how many whole blocks a
//! buffer holds, or the typed error that says why it does not.

use crate::error::{NumericsError, Result};

/// The shape of one block of a format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape {
    /// Format name, for error messages.
    pub format: &'static str,
    /// Values per block.
    pub elems: usize,
    /// Bytes per encoded block.
    pub bytes: usize,
}

impl BlockShape {
    /// Blocks in `values` values, checking that `bytes` is exactly their
    /// encoded size (the quantize direction: the values decide).
    pub fn blocks_for_values(self, values: usize, bytes: usize) -> Result<usize> {
        if !values.is_multiple_of(self.elems) {
            return Err(NumericsError::RaggedBlocks {
                format: self.format,
                len: values,
                block: self.elems,
            });
        }
        self.expect(values / self.elems, "encoded buffer", bytes, self.bytes)
    }

    /// Blocks in `bytes` encoded bytes, checking that `values` is exactly
    /// their decoded size (the dequantize direction: the bytes decide).
    pub fn blocks_for_bytes(self, bytes: usize, values: usize) -> Result<usize> {
        if !bytes.is_multiple_of(self.bytes) {
            return Err(NumericsError::RaggedBytes {
                format: self.format,
                len: bytes,
                block_bytes: self.bytes,
            });
        }
        self.expect(bytes / self.bytes, "destination", values, self.elems)
    }

    fn expect(
        self,
        blocks: usize,
        what: &'static str,
        got: usize,
        per_block: usize,
    ) -> Result<usize> {
        let expected = blocks * per_block;
        if got != expected {
            return Err(NumericsError::LengthMismatch {
                format: self.format,
                what,
                expected,
                got,
            });
        }
        Ok(blocks)
    }
}
