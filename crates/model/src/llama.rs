//! The Llama-family model as an exodus graph, written with the graph
//! builder the way model code reads: embedding, `layers` blocks (attention
//! with its KV cache, SwiGLU MLP, each after an RMS norm and added to the
//! residual stream), final norm, the rows a step needs, output projection.
//! The families differ only in switches of [`ModelConfig`]: q/k/v biases
//! (Qwen2), per-head q/k norms (Qwen3), the rotary style, a tied output
//! projection. Tensor names are GGUF's (`blk.N.attn_q.weight`, ...).
//!
//! Inputs of the graph: `ids: u32[tokens]` (the step's tokens), `pos:
//! u32[tokens]` (their positions), `table: u32[blocks]` (the sequence's
//! KV block table), `start: u32[1]` (the first token's position) and
//! `rows: u32[outputs]` (which of the step's tokens get logits: the last
//! one when generating, all of them for perplexity). Output:
//! `logits: f32[outputs, vocab]`.

use exodus_gguf::{Gguf, TensorInfo};
use exodus_graph::{DType, Dim, Graph, GraphBuilder, KvFormat, KvLayout, ValueId};
use exodus_numerics::{ElementFormat, Format};

use crate::config::ModelConfig;
use crate::error::ModelError;

/// Tokens per KV cache block.
pub const KV_BLOCK_TOKENS: usize = 16;

/// The graph's inputs, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// Token ids of the step.
    pub ids: ValueId,
    /// Their positions.
    pub pos: ValueId,
    /// The KV block table.
    pub table: ValueId,
    /// Position of the step's first token.
    pub start: ValueId,
    /// Rows (of the step) that get logits.
    pub rows: ValueId,
}

/// A model graph and where its weights come from.
#[derive(Debug, Clone)]
pub struct ModelGraph {
    /// The graph.
    pub graph: Graph,
    /// Its inputs.
    pub inputs: Inputs,
    /// Every weight value and the GGUF tensor that fills it.
    pub weights: Vec<(ValueId, String)>,
    /// KV cache blocks per layer.
    pub cache_blocks: usize,
}

/// The element type a weight tensor gets in the graph: f32 for vectors
/// (norms, biases: small, dequantized on load), its file format for
/// matrices (read in place by the matmul kernels).
fn weight_dtype(t: &TensorInfo, vector: bool) -> Result<DType, ModelError> {
    let format = t.format()?;
    Ok(if vector || format == Format::Element(ElementFormat::F32) {
        DType::F32
    } else {
        DType::Weights(format)
    })
}

struct Builder<'a, B: AsRef<[u8]>> {
    b: GraphBuilder,
    file: &'a Gguf<B>,
    weights: Vec<(ValueId, String)>,
}

impl<B: AsRef<[u8]>> Builder<'_, B> {
    /// The weight value of tensor `name`, checked to be `shape` (rows,
    /// then the row length: GGUF lists dims innermost first).
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<ValueId, ModelError> {
        let t = self.file.tensor(name).ok_or_else(|| ModelError::Tensor {
            name: name.into(),
            reason: "missing".into(),
        })?;
        let dims: Vec<usize> = t.dims().iter().rev().map(|&d| d as usize).collect();
        if dims != shape {
            return Err(ModelError::Tensor {
                name: name.into(),
                reason: format!("shape {dims:?}, expected {shape:?}"),
            });
        }
        let dtype = weight_dtype(t, shape.len() == 1)?;
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d)).collect();
        let v = self.b.weight(name, dtype, dims);
        self.weights.push((v, name.to_owned()));
        Ok(v)
    }
}

/// Builds the graph of the model in `file` with a KV cache of
/// `max_tokens` positions per layer in `kv_format`.
pub fn build<B: AsRef<[u8]>>(
    cfg: &ModelConfig,
    file: &Gguf<B>,
    max_tokens: usize,
    kv_format: KvFormat,
) -> Result<ModelGraph, ModelError> {
    let ModelConfig {
        layers,
        hidden,
        ffn,
        heads,
        kv_heads,
        head_dim,
        vocab,
        rms_eps: eps,
        rope_theta,
        rope_neox,
        ..
    } = *cfg;
    let blocks = max_tokens.div_ceil(KV_BLOCK_TOKENS).max(1);
    let layout = KvLayout::new(KV_BLOCK_TOKENS, kv_heads, head_dim, kv_format)
        .map_err(|e| ModelError::Unsupported(format!("KV cache layout: {e}")))?;
    let mut m = Builder {
        b: GraphBuilder::new(cfg.arch.name()),
        file,
        weights: Vec::new(),
    };
    let t = m.b.symbol("tokens");
    let n_out = m.b.symbol("outputs");
    let ids = m.b.input("ids", DType::U32, (t,));
    let pos = m.b.input("pos", DType::U32, (t,));
    let table = m.b.input("table", DType::U32, (blocks,));
    let start = m.b.input("start", DType::U32, (1,));
    let rows = m.b.input("rows", DType::U32, (n_out,));
    let (q_width, kv_width) = (heads * head_dim, kv_heads * head_dim);
    let embd = m.weight("token_embd.weight", &[vocab, hidden])?;
    let mut x = m.b.embedding("token_embd", embd, ids)?;
    for l in 0..layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        let norm = m.weight(&p("attn_norm.weight"), &[hidden])?;
        let h = m.b.rms_norm(p("attn_norm"), x, norm, eps)?;
        let proj = |m: &mut Builder<'_, B>, name: &str, width: usize| {
            let w = m.weight(&p(&format!("{name}.weight")), &[width, hidden])?;
            let mut y = m.b.matmul(p(name), h, w)?;
            if cfg.qkv_bias {
                let bias = m.weight(&p(&format!("{name}.bias")), &[width])?;
                y = m.b.add(p(&format!("{name}.bias")), y, bias)?;
            }
            Ok::<_, ModelError>(y)
        };
        let mut q = proj(&mut m, "attn_q", q_width)?;
        let mut k = proj(&mut m, "attn_k", kv_width)?;
        let v = proj(&mut m, "attn_v", kv_width)?;
        if cfg.qk_norm {
            for (x, name, n_heads) in [
                (&mut q, "attn_q_norm", heads),
                (&mut k, "attn_k_norm", kv_heads),
            ] {
                let w = m.weight(&p(&format!("{name}.weight")), &[head_dim])?;
                let per_head =
                    m.b.reshape(p(&format!("{name}.heads")), *x, (t, n_heads, head_dim))?;
                let normed = m.b.rms_norm(p(name), per_head, w, eps)?;
                let width = n_heads * head_dim;
                *x =
                    m.b.reshape(p(&format!("{name}.rows")), normed, (t, width))?;
            }
        }
        let q =
            m.b.rope(p("rope_q"), q, pos, head_dim, rope_neox, rope_theta)?;
        let k =
            m.b.rope(p("rope_k"), k, pos, head_dim, rope_neox, rope_theta)?;
        let cache = m.b.state(p("kv_cache"), DType::KvCache(layout), (blocks,));
        let a =
            m.b.attention(p("attention"), q, k, v, cache, table, start, heads)?;
        let wo = m.weight(&p("attn_output.weight"), &[hidden, q_width])?;
        let o = m.b.matmul(p("attn_output"), a, wo)?;
        x = m.b.add(p("attn_residual"), x, o)?;
        let norm = m.weight(&p("ffn_norm.weight"), &[hidden])?;
        let h = m.b.rms_norm(p("ffn_norm"), x, norm, eps)?;
        let wg = m.weight(&p("ffn_gate.weight"), &[ffn, hidden])?;
        let wu = m.weight(&p("ffn_up.weight"), &[ffn, hidden])?;
        let wd = m.weight(&p("ffn_down.weight"), &[hidden, ffn])?;
        let gate = m.b.matmul(p("ffn_gate"), h, wg)?;
        let up = m.b.matmul(p("ffn_up"), h, wu)?;
        let act = m.b.swiglu(p("ffn_swiglu"), gate, up)?;
        let down = m.b.matmul(p("ffn_down"), act, wd)?;
        x = m.b.add(p("ffn_residual"), x, down)?;
    }
    let norm = m.weight("output_norm.weight", &[hidden])?;
    let h = m.b.rms_norm("output_norm", x, norm, eps)?;
    let h = m.b.gather("output_rows", h, rows)?;
    let out_w = if cfg.tied_embeddings {
        embd
    } else {
        m.weight("output.weight", &[vocab, hidden])?
    };
    let logits = m.b.matmul("output", h, out_w)?;
    m.b.output(logits)?;
    Ok(ModelGraph {
        graph: m.b.finish()?,
        inputs: Inputs {
            ids,
            pos,
            table,
            start,
            rows,
        },
        weights: m.weights,
        cache_blocks: blocks,
    })
}
