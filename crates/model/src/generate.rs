//! Generation: the prompt runs as one prefill step, then one decode step
//! per new token, each token chosen by a [`Sampler`], until a stop token,
//! the token limit, the KV cache's end, or the caller says stop (stop
//! strings are the caller's: it sees each token as it comes). Timings are
//! kept the way users quote them: time to first token, prefill and decode
//! tokens per second.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::error::ModelError;
use crate::model::Model;
use crate::sample::{Sampler, SamplerConfig};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// New tokens at most.
    pub max_new_tokens: usize,
    /// How to pick them.
    pub sampler: SamplerConfig,
    /// Tokens that end the generation (end-of-generation ids); not
    /// included in the result.
    pub stop_tokens: Vec<u32>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token, or the caller stopped it (a stop string).
    Stop,
    /// `max_new_tokens`, or the KV cache is full.
    Length,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens (without the stop token).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: Finish,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens whose keys and values were already in the KV cache
    /// (not run again).
    pub reused_tokens: usize,
    /// Positions `0 ..` whose keys and values the KV cache holds at the
    /// end: the prompt and every new token that was run (all but a last
    /// token nothing followed).
    pub cached_positions: usize,
    /// From the start to the first new token (the prefill step and one
    /// sampling).
    pub time_to_first_token: Duration,
    /// Time of the decode steps after the first token.
    pub decode_time: Duration,
}

impl Generation {
    /// Prompt tokens per second of the prefill (time to first token).
    pub fn prefill_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.time_to_first_token.as_secs_f64().max(1e-9)
    }

    /// New tokens per second after the first.
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        n as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// Generates from `prompt` (run from position 0, so the model's KV cache
/// is this sequence's); `on_token` sees each new token (not stop tokens)
/// and may end the generation with `ControlFlow::Break`.
pub fn generate(
    model: &Model,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation, ModelError> {
    generate_reusing(model, prompt, 0, opts, on_token)
}

/// [`generate`] when the KV cache already holds the first `reused` tokens
/// of `prompt` at positions `0 ..` (a conversation's earlier turns): only
/// the rest is run. `reused` must leave at least one token to run.
pub fn generate_reusing(
    model: &Model,
    prompt: &[u32],
    reused: usize,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation, ModelError> {
    if reused >= prompt.len() {
        return Err(ModelError::Request(format!(
            "{reused} cached tokens leave none of the {}-token prompt to run",
            prompt.len()
        )));
    }
    let mut sampler = Sampler::new(opts.sampler.clone()).map_err(ModelError::Request)?;
    sampler.observe(prompt);
    let start = Instant::now();
    let mut logits = model.forward(&prompt[reused..], reused, false)?;
    let mut tokens = Vec::new();
    let mut first_token_at = None;
    let mut finish = Finish::Length;
    let mut pos = prompt.len();
    while tokens.len() < opts.max_new_tokens {
        let token = sampler.sample(&logits);
        first_token_at.get_or_insert_with(|| start.elapsed());
        if opts.stop_tokens.contains(&token) {
            finish = Finish::Stop;
            break;
        }
        tokens.push(token);
        if on_token(token).is_break() {
            finish = Finish::Stop;
            break;
        }
        if tokens.len() == opts.max_new_tokens || pos + 1 > model.max_tokens() {
            break;
        }
        logits = model.forward(&[token], pos, false)?;
        pos += 1;
    }
    let time_to_first_token = first_token_at.unwrap_or_else(|| start.elapsed());
    Ok(Generation {
        cached_positions: pos,
        tokens,
        finish,
        prompt_tokens: prompt.len(),
        reused_tokens: reused,
        time_to_first_token,
        decode_time: start.elapsed().saturating_sub(time_to_first_token),
    })
}
