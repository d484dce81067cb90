//! Causal grouped-query attention over a paged KV cache.
//!
//! - [`KvFormat`]: the cache's row format (bf16, f16, FP8 E4M3/E5M2,
//!   MXFP8 E4M3, MXFP4);
//! - [`KvLayout`] / [`PagedKvCache`]: blocks of `block_size` tokens in a
//!   pool, addressed through per-sequence block tables, with
//!   [`PagedKvCache::write`] to quantize new K/V rows in;
//! - [`KvCentering`]: rows stored relative to per-head offsets (the key's
//!   turned by RoPE), which a coarse format rounds far less;
//! - [`paged_attention`] (a batch of sequences, each a decode token or a
//!   prefill chunk), [`attention_decode`], [`attention_prefill`]: one pass
//!   over each sequence's keys with an online softmax (running max and
//!   sum, as in FlashAttention), decoding each block's rows into a small
//!   f32 scratch; tasks are (sequence, KV head) pairs on the thread pool.
//!
//! The scalar fold is the reference; the AVX2 and NEON folds are tested
//! against a naive f64 attention in `tests/attention*.rs`.

mod cache;
mod centering;
mod format;
mod kernel;
#[cfg(target_arch = "aarch64")]
mod neon;
mod online;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use cache::{KvLayout, KvPart, PagedKvCache};
pub use centering::{rope_table, KvCentering};
pub use format::KvFormat;
pub use kernel::{
    attention_decode, attention_prefill, paged_attention, paged_attention_centered,
    paged_attention_with, AttentionParams, SeqSpan,
};
