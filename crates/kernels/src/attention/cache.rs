//! The paged KV cache: a pool of fixed-size blocks, each holding the K and
//! V rows of `block_size` consecutive tokens of one sequence for every KV
//! head, stored in a [`KvFormat`]. A sequence finds its blocks through a
//! block table (`&[u32]` of block ids, logical block `i` holding positions
//! `i * block_size ..`), so its blocks need not be contiguous or in order.
//!
//! Byte layout of block `b` (`block_bytes` long, at `b * block_bytes`):
//!
//! ```text
//! [part: K, V][kv_head: n_kv_heads][slot: block_size][row_bytes]
//! ```
//!
//! so the rows of one head in one block are contiguous and decode in one
//! call. `row_bytes` is [`KvFormat::row_bytes`]`(head_dim)`.

use exodus_numerics::cpu::{self, SimdLevel};

use super::centering::KvCentering;
use super::format::KvFormat;
use crate::error::Result;
use crate::ops::check;

/// K or V.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvPart {
    /// The keys.
    Key = 0,
    /// The values.
    Value = 1,
}

/// The shape of a paged KV cache (everything but the pool bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvLayout {
    block_size: usize,
    n_kv_heads: usize,
    head_dim: usize,
    format: KvFormat,
    row_bytes: usize,
    block_bytes: usize,
}

impl KvLayout {
    /// A layout of blocks of `block_size` tokens (e.g. 16) for
    /// `n_kv_heads` heads of `head_dim` values in `format`. All sizes must
    /// be positive, and `head_dim` a multiple of 32 for the MX formats.
    pub fn new(
        block_size: usize,
        n_kv_heads: usize,
        head_dim: usize,
        format: KvFormat,
    ) -> Result<Self> {
        const K: &str = "kv_cache";
        check::nonzero(K, "block_size", block_size)?;
        check::nonzero(K, "n_kv_heads", n_kv_heads)?;
        check::nonzero(K, "head_dim", head_dim)?;
        let row_bytes = format.row_bytes(head_dim)?;
        let block_bytes = check::product(K, &[2, n_kv_heads, block_size, row_bytes])?;
        Ok(Self {
            block_size,
            n_kv_heads,
            head_dim,
            format,
            row_bytes,
            block_bytes,
        })
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// KV heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Values per head row.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Storage format of the rows.
    pub fn format(&self) -> KvFormat {
        self.format
    }

    /// Bytes of one encoded row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Bytes of one block (K and V of every head).
    pub fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// Byte offset of `slot` of `head`'s `part` rows inside block `block`.
    pub fn offset(&self, block: usize, part: KvPart, head: usize, slot: usize) -> usize {
        block * self.block_bytes
            + ((part as usize * self.n_kv_heads + head) * self.block_size + slot) * self.row_bytes
    }
}

/// A paged KV cache: a [`KvLayout`] and the pool of blocks, owned
/// (`Vec<u8>`) or borrowed (`&[u8]`, `&mut [u8]`).
#[derive(Debug, Clone)]
pub struct PagedKvCache<P = Vec<u8>> {
    layout: KvLayout,
    pool: P,
}

impl PagedKvCache<Vec<u8>> {
    /// A zero-filled pool of `n_blocks` blocks (zero bytes decode as 0.0 in
    /// every cache format).
    pub fn zeroed(layout: KvLayout, n_blocks: usize) -> Result<Self> {
        let len = check::product("kv_cache", &[n_blocks, layout.block_bytes])?;
        Ok(Self {
            layout,
            pool: vec![0u8; len],
        })
    }
}

impl<P: AsRef<[u8]>> PagedKvCache<P> {
    /// A cache over existing pool bytes, which must be a whole number of
    /// blocks.
    pub fn new(layout: KvLayout, pool: P) -> Result<Self> {
        let len = pool.as_ref().len();
        if !len.is_multiple_of(layout.block_bytes) {
            return Err(check::bad_shape(
                "kv_cache",
                format!(
                    "pool of {len} bytes is not a whole number of {}-byte blocks",
                    layout.block_bytes
                ),
            ));
        }
        Ok(Self { layout, pool })
    }

    /// The layout.
    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    /// Blocks in the pool.
    pub fn n_blocks(&self) -> usize {
        self.pool.as_ref().len() / self.layout.block_bytes
    }

    /// The pool bytes.
    pub fn pool(&self) -> &[u8] {
        self.pool.as_ref()
    }

    /// Give back the pool.
    pub fn into_pool(self) -> P {
        self.pool
    }

    /// A borrowed view, as the attention kernels read it.
    pub(crate) fn view(&self) -> KvView<'_> {
        KvView {
            layout: self.layout,
            pool: self.pool.as_ref(),
        }
    }

    /// Decode the `part` row of `head` at position `pos` of the sequence
    /// with `block_table` into `out` (`[head_dim]`): the row as stored,
    /// without adding back a centering it was written with.
    pub fn read_row(
        &self,
        block_table: &[u32],
        pos: usize,
        part: KvPart,
        head: usize,
        out: &mut [f32],
    ) -> Result<()> {
        const K: &str = "kv_cache.read_row";
        let l = &self.layout;
        check::index(K, "kv head", head, l.n_kv_heads)?;
        check::len(K, "out", out.len(), l.head_dim)?;
        let block = self.view().block_id(K, block_table, pos / l.block_size)?;
        let at = l.offset(block, part, head, pos % l.block_size);
        l.format
            .decode(SimdLevel::Scalar, &self.pool()[at..at + l.row_bytes], out)
    }
}

impl<P: AsRef<[u8]> + AsMut<[u8]>> PagedKvCache<P> {
    /// Quantize and store the K and V rows of `n_tokens` new tokens at
    /// positions `start_pos .. start_pos + n_tokens` of the sequence whose
    /// blocks are `block_table`.
    ///
    /// Shapes: `k`, `v`: `[n_tokens, n_kv_heads, head_dim]`. Everything is
    /// checked before the first byte is written, so an error leaves the
    /// cache as it was.
    pub fn write(
        &mut self,
        block_table: &[u32],
        start_pos: usize,
        k: &[f32],
        v: &[f32],
        n_tokens: usize,
    ) -> Result<()> {
        self.write_centered(block_table, start_pos, k, v, n_tokens, None)
    }

    /// [`write`](Self::write), storing each row minus its `centering`
    /// offset (see [`KvCentering`]); attention must then be given the same
    /// centering to add it back.
    pub fn write_centered(
        &mut self,
        block_table: &[u32],
        start_pos: usize,
        k: &[f32],
        v: &[f32],
        n_tokens: usize,
        centering: Option<&KvCentering<'_>>,
    ) -> Result<()> {
        const K: &str = "kv_cache.write";
        let l = self.layout;
        let n = check::product(K, &[n_tokens, l.n_kv_heads, l.head_dim])?;
        check::len(K, "k", k.len(), n)?;
        check::len(K, "v", v.len(), n)?;
        if n_tokens == 0 {
            return Ok(());
        }
        let end = start_pos
            .checked_add(n_tokens)
            .ok_or_else(|| check::bad_shape(K, "start_pos + n_tokens overflows"))?;
        if let Some(c) = centering {
            c.check_end(K, end)?;
        }
        let view = self.view();
        for logical in start_pos / l.block_size..end.div_ceil(l.block_size) {
            view.block_id(K, block_table, logical)?;
        }
        let row = l.n_kv_heads * l.head_dim;
        let pool = self.pool.as_mut();
        let mut centered = vec![0f32; if centering.is_some() { l.head_dim } else { 0 }];
        for t in 0..n_tokens {
            let pos = start_pos + t;
            let block = block_table[pos / l.block_size] as usize;
            for (part, src) in [(KvPart::Key, k), (KvPart::Value, v)] {
                for h in 0..l.n_kv_heads {
                    let at = l.offset(block, part, h, pos % l.block_size);
                    let mut values = &src[t * row + h * l.head_dim..][..l.head_dim];
                    if let Some(c) = centering {
                        centered.copy_from_slice(values);
                        match part {
                            KvPart::Key => c.shift_keys(cpu::active(), h, pos, &mut centered, -1.0),
                            KvPart::Value => c.shift_values(h, &mut centered, -1.0),
                        }
                        values = &centered;
                    }
                    l.format.encode(values, &mut pool[at..at + l.row_bytes])?;
                }
            }
        }
        Ok(())
    }
}

/// A borrowed cache: what the attention kernels and their worker threads
/// share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvView<'a> {
    pub(crate) layout: KvLayout,
    pub(crate) pool: &'a [u8],
}

impl KvView<'_> {
    /// Blocks in the pool.
    pub(crate) fn n_blocks(&self) -> usize {
        self.pool.len() / self.layout.block_bytes
    }

    /// The block id of logical block `logical` of `block_table`, checked
    /// against the table length and the pool.
    pub(crate) fn block_id(
        &self,
        kernel: &'static str,
        block_table: &[u32],
        logical: usize,
    ) -> Result<usize> {
        check::index(
            kernel,
            "logical block (block table too short)",
            logical,
            block_table.len(),
        )?;
        let id = block_table[logical] as usize;
        check::index(kernel, "block id", id, self.n_blocks())?;
        Ok(id)
    }

    /// Decode the first `n` rows of `head`'s `part` in block `block` into
    /// `out` (`[n, head_dim]`).
    pub(crate) fn decode_rows(
        &self,
        level: SimdLevel,
        block: usize,
        part: KvPart,
        head: usize,
        n: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let l = &self.layout;
        let at = l.offset(block, part, head, 0);
        l.format
            .decode(level, &self.pool[at..at + n * l.row_bytes], out)
    }
}
