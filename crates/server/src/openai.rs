//! The OpenAI request bodies this server takes (`/v1/completions`,
//! `/v1/chat/completions`), checked field by field into what the engine
//! runs, with a 400 naming the field for anything out of range or not
//! supported. Unknown fields are ignored, as OpenAI-compatible servers do.

use serde::Deserialize;

use exodus_engine::text::SamplerConfig;

use crate::error::ApiError;

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// A string or a list of them (`stop`, and `prompt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// One.
    One(T),
    /// Several.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A completion prompt: text, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A list of prompts (only one is served: `n` = 1, one choice).
    Texts(Vec<String>),
    /// A list of token-id prompts.
    TokenLists(Vec<Vec<u32>>),
}

/// The settings both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    /// The model (must be the served one, if given).
    pub model: Option<String>,
    /// 0 to 2 (OpenAI's range); 0 picks the most likely token.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, (0, 1].
    pub top_p: Option<f32>,
    /// Keep the `top_k` most likely tokens (0 or -1: all); an extension.
    pub top_k: Option<i64>,
    /// Drop tokens below `min_p` times the most likely; an extension.
    pub min_p: Option<f32>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// Above 0 (1: off); an extension.
    pub repetition_penalty: Option<f32>,
    /// Same seed, same tokens.
    pub seed: Option<u64>,
    /// Choices: only 1.
    pub n: Option<u64>,
    /// Up to 4 stop strings.
    pub stop: Option<OneOrMany<String>>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options.
    pub stream_options: Option<StreamOptions>,
    /// Run to `max_tokens` past end-of-generation tokens (an extension of
    /// vLLM's and llama.cpp's servers, for benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Token biases: not supported (refused when not empty).
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `/v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// New tokens at most (OpenAI's default: 16).
    pub max_tokens: Option<u64>,
    /// Log-probabilities of this many top tokens per position (0 to 20).
    pub logprobs: Option<u64>,
    /// Echo the prompt: not supported (refused when true).
    #[serde(default)]
    pub echo: bool,
    /// Must be 1 if given.
    pub best_of: Option<u64>,
    /// The shared settings.
    #[serde(flatten)]
    pub common: Common,
}

/// A chat message's content: text or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Text.
    Text(String),
    /// Parts (only `text` parts are supported).
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text` (others are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The text (null is empty).
    pub content: Option<Content>,
}

/// `/v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// New tokens at most (the older name).
    pub max_tokens: Option<u64>,
    /// New tokens at most.
    pub max_completion_tokens: Option<u64>,
    /// Return log-probabilities of the chosen tokens.
    #[serde(default)]
    pub logprobs: bool,
    /// And of this many top tokens (0 to 20; needs `logprobs`).
    pub top_logprobs: Option<u64>,
    /// The shared settings.
    #[serde(flatten)]
    pub common: Common,
}

impl ChatMessage {
    /// The message's text.
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(t)) => Ok(t.clone()),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                "messages",
                                format!(
                                    "content parts of type `{kind}` are not supported (text only)"
                                ),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// The one prompt a request may carry.
#[derive(Debug, Clone)]
pub enum OnePrompt {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
}

impl Prompt {
    /// The one prompt of the request (a list of one is that one; more are
    /// refused: `n` = 1, one choice).
    pub fn single(self) -> Result<OnePrompt, ApiError> {
        let many = |n: usize| {
            ApiError::invalid_param(
                "prompt",
                format!("{n} prompts in one request; this server takes one (n = 1)"),
            )
        };
        match self {
            Prompt::Text(t) => Ok(OnePrompt::Text(t)),
            Prompt::Tokens(ids) => Ok(OnePrompt::Tokens(ids)),
            Prompt::Texts(mut v) if v.len() == 1 => Ok(OnePrompt::Text(v.remove(0))),
            Prompt::TokenLists(mut v) if v.len() == 1 => Ok(OnePrompt::Tokens(v.remove(0))),
            Prompt::Texts(v) => Err(many(v.len())),
            Prompt::TokenLists(v) => Err(many(v.len())),
        }
    }
}

/// What the endpoints hand the engine, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Sampling.
    pub sampler: SamplerConfig,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Stream or not.
    pub stream: bool,
    /// A usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Ignore end-of-generation tokens.
    pub ignore_eos: bool,
}

fn in_range(
    param: &'static str,
    v: Option<f32>,
    lo: f32,
    hi: f32,
    default: f32,
) -> Result<f32, ApiError> {
    let v = v.unwrap_or(default);
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(ApiError::invalid_param(
            param,
            format!("{param} = {v} is outside {lo}..={hi}"),
        ))
    }
}

impl Common {
    /// Checks the shared settings. `seed` is the request's own when it
    /// gives none (so unseeded requests differ, as with OpenAI).
    pub fn check(&self, fallback_seed: u64) -> Result<Checked, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n = {n}: only n = 1 is supported"),
                ));
            }
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(ApiError::invalid_param(
                "logit_bias",
                "logit_bias is not supported",
            ));
        }
        let stop = self
            .stop
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        if stop.len() > 4 {
            return Err(ApiError::invalid_param(
                "stop",
                format!("{} stop strings; at most 4", stop.len()),
            ));
        }
        let top_k = match self.top_k.unwrap_or(0) {
            -1 | 0 => 0,
            k if k > 0 => k as usize,
            k => {
                return Err(ApiError::invalid_param(
                    "top_k",
                    format!("top_k = {k} (-1, 0 or positive)"),
                ))
            }
        };
        let top_p = in_range("top_p", self.top_p, 0.0, 1.0, 1.0)?;
        if top_p == 0.0 {
            return Err(ApiError::invalid_param("top_p", "top_p must be above 0"));
        }
        let repetition_penalty = in_range(
            "repetition_penalty",
            self.repetition_penalty,
            0.0,
            100.0,
            1.0,
        )?;
        if repetition_penalty == 0.0 {
            return Err(ApiError::invalid_param(
                "repetition_penalty",
                "repetition_penalty must be above 0",
            ));
        }
        let sampler = SamplerConfig {
            temperature: in_range("temperature", self.temperature, 0.0, 2.0, 1.0)?,
            top_k,
            top_p,
            min_p: in_range("min_p", self.min_p, 0.0, 1.0, 0.0)?,
            repetition_penalty,
            frequency_penalty: in_range(
                "frequency_penalty",
                self.frequency_penalty,
                -2.0,
                2.0,
                0.0,
            )?,
            presence_penalty: in_range("presence_penalty", self.presence_penalty, -2.0, 2.0, 0.0)?,
            seed: self.seed.unwrap_or(fallback_seed),
            ..SamplerConfig::default()
        };
        Ok(Checked {
            sampler,
            stop,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            ignore_eos: self.ignore_eos,
        })
    }
}

/// Checks a top-logprobs count (OpenAI allows 0 to 20).
pub fn check_top_logprobs(param: &'static str, n: u64) -> Result<usize, ApiError> {
    if n > 20 {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} = {n}; at most 20"),
        ));
    }
    Ok(n as usize)
}

/// Parses a JSON body into `T`, with a 400 that quotes serde's message.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}
