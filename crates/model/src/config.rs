//! The hyperparameters of a Llama-family model, read from GGUF metadata
//! (`general.architecture` and the `{arch}.*` keys llama.cpp writes).

use exodus_gguf::Gguf;

use crate::error::ModelError;

/// The architectures this crate builds (Mistral files say `llama`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama, SmolLM2, Mistral: rotary pairs interleaved (the converter
    /// permuted q/k for it).
    Llama,
    /// Qwen2: q/k/v biases, NeoX rotary halves.
    Qwen2,
    /// Qwen3: RMS norms on q and k per head, NeoX rotary halves.
    Qwen3,
}

impl Arch {
    /// The `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// Everything the graph builder needs to know about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The family.
    pub arch: Arch,
    /// Transformer blocks.
    pub layers: usize,
    /// Model width.
    pub hidden: usize,
    /// MLP width.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding table).
    pub vocab: usize,
    /// Context length the model was trained for.
    pub context: usize,
    /// RMS norm epsilon.
    pub rms_eps: f32,
    /// Rotary frequency base.
    pub rope_theta: f32,
    /// NeoX rotary halves (`true`) or interleaved pairs.
    pub rope_neox: bool,
    /// q/k/v projections have biases.
    pub qkv_bias: bool,
    /// q and k are RMS-normalized per head before the rotary embedding.
    pub qk_norm: bool,
    /// The output projection is the embedding table (no `output.weight`).
    pub tied_embeddings: bool,
}

impl ModelConfig {
    /// Bytes of KV cache one token takes in `format`: a key and a value
    /// row of `head_dim` per KV head, in every layer.
    pub fn kv_bytes_per_token(&self, format: exodus_graph::KvFormat) -> Result<usize, ModelError> {
        let row = format
            .row_bytes(self.head_dim)
            .map_err(|e| ModelError::Unsupported(e.to_string()))?;
        Ok(self.layers * self.kv_heads * 2 * row)
    }

    /// Reads the hyperparameters of `file`, checking that they fit
    /// together.
    pub fn from_gguf<B: AsRef<[u8]>>(file: &Gguf<B>) -> Result<ModelConfig, ModelError> {
        let meta = file.metadata();
        let arch_name = meta.get_str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => {
                return Err(ModelError::Unsupported(format!(
                    "architecture '{other}' (supported: llama, qwen2, qwen3)"
                )))
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let count = |k: &str| -> Result<usize, ModelError> {
            let v = meta.get_count(&key(k))?;
            usize::try_from(v).map_err(|_| ModelError::Unsupported(format!("{} = {v}", key(k))))
        };
        let layers = count("block_count")?;
        let hidden = count("embedding_length")?;
        let ffn = count("feed_forward_length")?;
        let heads = count("attention.head_count")?;
        let kv_heads = match meta.get(&key("attention.head_count_kv")) {
            Some(_) => count("attention.head_count_kv")?,
            None => heads,
        };
        let head_dim = match meta.get(&key("attention.key_length")) {
            Some(_) => count("attention.key_length")?,
            None if heads > 0 => hidden / heads,
            None => 0,
        };
        let context = count("context_length")?;
        let rms_eps = meta.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let rope_theta = match meta.get(&key("rope.freq_base")) {
            Some(_) => meta.get_f32(&key("rope.freq_base"))?,
            None => 10_000.0,
        };
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::Tensor {
                name: "token_embd.weight".into(),
                reason: "missing".into(),
            })?;
        let vocab = usize::try_from(embd.rows())
            .map_err(|_| ModelError::Unsupported(format!("{} embedding rows", embd.rows())))?;
        let cfg = ModelConfig {
            arch,
            layers,
            hidden,
            ffn,
            heads,
            kv_heads,
            head_dim,
            vocab,
            context,
            rms_eps,
            rope_theta,
            rope_neox: arch != Arch::Llama,
            qkv_bias: file.tensor("blk.0.attn_q.bias").is_some(),
            qk_norm: file.tensor("blk.0.attn_q_norm.weight").is_some(),
            tied_embeddings: file.tensor("output.weight").is_none(),
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::Unsupported(what));
        if self.layers == 0 || self.hidden == 0 || self.ffn == 0 || self.vocab == 0 {
            return bad(format!("empty model: {self:?}"));
        }
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "{} query heads are not a multiple of {} KV heads",
                self.heads, self.kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head width {} must be even and > 0", self.head_dim));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(format!("rms epsilon {}", self.rms_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope base {}", self.rope_theta));
        }
        Ok(())
    }
}
