//! `exodus-engine`: the serving engine of exodus, the rung that knows
//! requests (and nothing of HTTP, which is `exodus-server`'s).
//!
//! - [`engine`]: the engine thread that owns the model and runs steps back
//!   to back, and the handles to submit requests and stream their tokens
//!   (cancelled when dropped);
//! - [`scheduler`]: continuous batching with chunked prefill under a
//!   per-step token budget, decode first, preemption by recompute when the
//!   KV pool runs out, and admission control (its module docs give the
//!   policy and its reasons);
//! - [`request`]: requests, their events and the typed refusals;
//! - [`kv_blocks`]: a shared pool of fixed-size KV blocks, a block table per
//!   sequence, reference-counted blocks, automatic prefix caching by chained
//!   hashes of full blocks, LRU eviction of unreferenced cached blocks, and
//!   an all-or-nothing [`KvBlockError::OutOfBlocks`] that lets the scheduler
//!   preempt a sequence and retry. It moves no tensors: the model's paged
//!   attention reads and writes the blocks whose ids it hands out.
//!
//! ```
//! use exodus_engine::BlockManager;
//!
//! let mut kv = BlockManager::new(8, 4)?; // 8 blocks of 4 tokens
//! let system = [1, 2, 3, 4, 5, 6, 7, 8];
//! let first = kv.admit(1, &[&system[..], &[10, 11]].concat())?;
//! assert_eq!(first.cached_tokens, 0);
//! kv.mark_computed(1, 10)?; // the prefill wrote the KV of all 10 tokens
//! let second = kv.admit(2, &[&system[..], &[20]].concat())?;
//! assert_eq!(second.cached_tokens, 8); // the system prompt is computed once
//! assert_eq!(second.table[..2], first.table[..2]);
//! kv.free(1)?;
//! kv.free(2)?;
//! assert_eq!(kv.used_blocks(), 0);
//! # Ok::<(), exodus_engine::KvBlockError>(())
//! ```

pub mod engine;
pub mod kv_blocks;
pub mod request;
pub mod scheduler;
pub mod tensor_parallel;

pub use engine::{Engine, RequestStream, Shutdown, StepModel};
pub use kv_blocks::{Admission, BlockHash, BlockId, BlockManager, KvBlockError, SeqId};
pub use request::{
    Event, FinishReason, GenerationRequest, RequestId, SubmitError, Timing, TokenLogprobs, Usage,
};
pub use scheduler::{Scheduler, SchedulerConfig, SchedulerStats, StepPlan, Work};

/// What a front end needs next to the engine, which runs token ids: the
/// model's tokenizer and chat template, and the sampling settings of a
/// request (the model rung's types, so a server depends on the engine
/// alone).
pub mod text {
    pub use exodus_model::{ChatTemplate, Message, SamplerConfig, StreamDecoder, Tokenizer};
}
