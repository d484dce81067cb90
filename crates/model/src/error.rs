//! What can go wrong between a model file and a forward step.

use thiserror::Error;

/// Why a model could not be loaded or run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file is not a readable GGUF file.
    #[error(transparent)]
    Gguf(#[from] exodus_gguf::GgufError),
    /// The file is GGUF, but not a model this crate runs (or its
    /// hyperparameters do not fit together).
    #[error("model: {0}")]
    Unsupported(String),
    /// A tensor the architecture needs is missing or has the wrong shape.
    #[error("tensor '{name}': {reason}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph could not be built or run.
    #[error(transparent)]
    Graph(#[from] exodus_graph::GraphError),
    /// A run failed.
    #[error(transparent)]
    Exec(#[from] exodus_graph::ExecError),
    /// A request that does not fit the model (too many tokens, a token id
    /// outside the vocabulary).
    #[error("request: {0}")]
    Request(String),
    /// The tokenizer metadata of the file is missing a piece, is malformed
    /// or inconsistent (lengths that differ, merges naming tokens outside
    /// the vocabulary), or describes a tokenizer this crate does not build.
    #[error("tokenizer metadata `{key}`: {reason}")]
    Tokenizer {
        /// The metadata key at fault.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The chat template does not compile or failed while rendering: a
    /// syntax error, or a feature the template engine (minijinja, in the
    /// Hugging Face dialect this crate sets up) does not have.
    #[error("chat template{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Template {
        /// The template line, when the engine knows it.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The chat template refused the conversation with
    /// `raise_exception(message)` (for example, roles that do not
    /// alternate).
    #[error("chat template refused the conversation: {0}")]
    TemplateRaised(String),
}
