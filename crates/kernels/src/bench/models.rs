//! The model shapes the kernel benchmark runs at: SmolLM2-135M (the
//! default model of exodus) and a 7B-class Llama/Mistral model.

use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::Format;

/// The dimensions of a decoder-only transformer that set kernel shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShape {
    /// Model id shown in the `model` column (`smollm2-135m`, `7b`).
    pub id: &'static str,
    /// Short prefix of case names (`smollm2`, `7b`).
    pub prefix: &'static str,
    /// Hidden size.
    pub hidden: usize,
    /// MLP intermediate sizes (one case set each).
    pub intermediate: &'static [usize],
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub n_kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Decoder layers (reported, not benchmarked per layer).
    pub layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The weight format the model ships in (embedding table format).
    pub weight_format: Format,
    /// Whether `lm_head` is benchmarked (the 7B one is left out: it would
    /// dominate the run and its shape is the `up` projection's, transposed).
    pub lm_head: bool,
}

/// SmolLM2-135M: hidden 576, intermediate 1536, 9 heads, 3 KV heads,
/// head_dim 64, 30 layers, vocab 49152, shipped as Q4_1 (GGUF).
pub const SMOLLM2_135M: ModelShape = ModelShape {
    id: "smollm2-135m",
    prefix: "smollm2",
    hidden: 576,
    intermediate: &[1536],
    n_heads: 9,
    n_kv_heads: 3,
    head_dim: 64,
    layers: 30,
    vocab: 49152,
    weight_format: Format::Gguf(GgufBlockType::Q4_1),
    lm_head: true,
};

/// A 7B-class model: hidden 4096, intermediate 11008 (Llama 2) and 14336
/// (Mistral / Llama 3), 32 heads, 8 KV heads, head_dim 128, 32 layers,
/// vocab 32000, Q4_K weights.
pub const MODEL_7B: ModelShape = ModelShape {
    id: "7b",
    prefix: "7b",
    hidden: 4096,
    intermediate: &[11008, 14336],
    n_heads: 32,
    n_kv_heads: 8,
    head_dim: 128,
    layers: 32,
    vocab: 32000,
    weight_format: Format::Gguf(GgufBlockType::Q4K),
    lm_head: false,
};

/// Both benchmarked models.
pub const MODELS: [ModelShape; 2] = [SMOLLM2_135M, MODEL_7B];
