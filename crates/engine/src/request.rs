//! What a client asks the engine for, and what comes back: a request's
//! settings, the events of its stream (tokens, then one `Finished`), and
//! the reasons a request is refused at the door.

use std::time::Duration;

use exodus_model::SamplerConfig;

/// Identifier of a request, unique within one engine.
pub type RequestId = u64;

/// One generation request, already tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The prompt's token ids (at least one).
    pub prompt: Vec<u32>,
    /// How to pick tokens (the same sampler as `exodus run`, so the same
    /// seed gives the same tokens).
    pub sampler: SamplerConfig,
    /// New tokens at most (the context's end may stop it sooner).
    pub max_new_tokens: usize,
    /// Tokens that end the generation (not sent as tokens).
    pub stop_tokens: Vec<u32>,
    /// `Some(n)`: report each token's log-probability and the `n` most
    /// likely alternatives (OpenAI's `logprobs` / `top_logprobs`).
    pub logprobs: Option<usize>,
}

/// Log-probabilities of one generated token, from the model's logits
/// (before penalties and temperature).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// The chosen token's log-probability.
    pub logprob: f32,
    /// The most likely tokens and theirs, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Why a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token (or the client's stop string, reported by the caller).
    Stop,
    /// `max_new_tokens`, or the context is full.
    Length,
    /// The client cancelled it or went away.
    Cancelled,
    /// The engine failed to run it (the message says why); other requests
    /// go on.
    Error(String),
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Error(_) => "error",
        }
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (sent as [`Event::Token`]).
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache at the first
    /// admission.
    pub cached_tokens: usize,
}

/// Where a request's time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// From arrival to its first scheduled step.
    pub queued: Duration,
    /// From arrival to its first token (`None`: no token came).
    pub first_token: Option<Duration>,
    /// From arrival to the end.
    pub total: Duration,
    /// Times it was preempted (its KV freed and recomputed later).
    pub preemptions: u32,
}

/// One event of a request's stream: tokens as they come, then exactly one
/// `Finished`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token.
    Token {
        /// Its id.
        token: u32,
        /// Its log-probabilities, if the request asked.
        logprobs: Option<TokenLogprobs>,
    },
    /// The end.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Token counts.
        usage: Usage,
        /// Timings.
        timing: Timing,
    },
}

/// Why a request was refused at submission (nothing of it was kept).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// The waiting queue is full (by requests or by queued prompt tokens):
    /// fail fast rather than pile up.
    #[error("the queue is full ({waiting} requests, {queued_tokens} prompt tokens waiting); retry later")]
    QueueFull {
        /// Requests waiting.
        waiting: usize,
        /// Prompt tokens waiting.
        queued_tokens: usize,
        /// A suggested wait before retrying.
        retry_after: Duration,
    },
    /// The prompt leaves no room to generate within the context.
    #[error("the prompt has {prompt} tokens; this model's context holds {context} (prompt plus at least one new token)")]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context of the model.
        context: usize,
    },
    /// The prompt is longer than the whole KV pool could ever hold.
    #[error("the prompt needs {needed} KV blocks; the pool has {pool}")]
    TooLargeForPool {
        /// Blocks it needs.
        needed: usize,
        /// Blocks in the pool.
        pool: usize,
    },
    /// The request itself is malformed (empty prompt, bad sampler setting,
    /// token id outside the vocabulary).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The engine is shutting down and takes no new requests.
    #[error("the engine is shutting down")]
    ShuttingDown,
}
