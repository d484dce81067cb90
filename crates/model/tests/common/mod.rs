//! What the integration tests share: where the real model file is.

#![allow(dead_code)]

use std::path::PathBuf;

/// SmolLM2-135M-Instruct.Q4_1.gguf ([`exodus_model::fetch::test_model_path`]).
pub fn default_model_path() -> PathBuf {
    exodus_model::fetch::test_model_path()
}
