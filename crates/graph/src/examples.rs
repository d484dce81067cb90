//! Built-in example graphs for inspection and benchmarks until model files
//! (issue 5) provide real ones: a Llama-family block at given sizes (with
//! attention over a paged KV cache, or without), built with
//! [`GraphBuilder`] as the model layer will build them.

use exodus_kernels::attention::{KvFormat, KvLayout};
use exodus_numerics::Format;

use crate::builder::GraphBuilder;
use crate::error::GraphError;
use crate::ir::Graph;
use crate::types::DType;

/// Sizes of a Llama-family block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDims {
    /// Model width.
    pub hidden: usize,
    /// MLP width.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl BlockDims {
    /// SmolLM2-135M (the default model).
    pub const SMOLLM2_135M: BlockDims = BlockDims {
        hidden: 576,
        ffn: 1536,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
    };
}

/// One block without the attention core: norm, q/k/v projections with
/// rope, o projection (of the rotated queries, standing in for attention's
/// output) and residual, norm, SwiGLU MLP and residual, over `tokens` rows,
/// with every matmul weight in `format`. Inputs: `x[tokens, hidden]`,
/// `pos[tokens]`; output: the block's residual stream. (The k and v
/// projections have no reader, so dead-code elimination removes them.)
pub fn block_without_attention(dims: BlockDims, format: Format) -> Result<Graph, GraphError> {
    build_block(dims, format, None)
}

/// KV cache blocks of the example [`block`] (16 tokens each: 1024 tokens).
pub const CACHE_BLOCKS: usize = 64;

/// One full Llama-family block over `tokens` rows of one sequence: norm,
/// q/k/v projections, rope on q and k, attention over a paged KV cache
/// (state, `kv_format`, 64 blocks of 16 tokens), o projection and
/// residual, norm, SwiGLU MLP and residual. Inputs: `x[tokens, hidden]`,
/// `pos[tokens]`, `table[64]` (the sequence's block table), `start[1]`
/// (position of the first token).
pub fn block(dims: BlockDims, format: Format, kv_format: KvFormat) -> Result<Graph, GraphError> {
    build_block(dims, format, Some(kv_format))
}

/// The block, with attention over a cache in `kv` or without attention.
fn build_block(dims: BlockDims, format: Format, kv: Option<KvFormat>) -> Result<Graph, GraphError> {
    let BlockDims {
        hidden,
        ffn,
        heads,
        kv_heads,
        head_dim,
    } = dims;
    let w = DType::Weights(format);
    let mut b = GraphBuilder::new("block");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, hidden));
    let pos = b.input("pos", DType::U32, (t,));
    let cache = match kv {
        Some(kv_format) => {
            let layout = KvLayout::new(16, kv_heads, head_dim, kv_format).map_err(|e| {
                GraphError::Graph {
                    graph: "block".into(),
                    reason: e.to_string(),
                }
            })?;
            let table = b.input("table", DType::U32, (CACHE_BLOCKS,));
            let start = b.input("start", DType::U32, (1,));
            let cache = b.state("kv_cache", DType::KvCache(layout), (CACHE_BLOCKS,));
            Some((cache, table, start))
        }
        None => None,
    };
    let attn_norm = b.weight("attn_norm.weight", DType::F32, (hidden,));
    let wq = b.weight("attn_q.weight", w, (heads * head_dim, hidden));
    let wk = b.weight("attn_k.weight", w, (kv_heads * head_dim, hidden));
    let wv = b.weight("attn_v.weight", w, (kv_heads * head_dim, hidden));
    let wo = b.weight("attn_output.weight", w, (hidden, heads * head_dim));
    let ffn_norm = b.weight("ffn_norm.weight", DType::F32, (hidden,));
    let w_gate = b.weight("ffn_gate.weight", w, (ffn, hidden));
    let w_up = b.weight("ffn_up.weight", w, (ffn, hidden));
    let w_down = b.weight("ffn_down.weight", w, (hidden, ffn));
    let h = b.rms_norm("attn_norm", x, attn_norm, 1e-5)?;
    let q = b.matmul("attn_q", h, wq)?;
    let q = b.rope("rope_q", q, pos, head_dim, true, 100_000.0)?;
    let k = b.matmul("attn_k", h, wk)?;
    let k = b.rope("rope_k", k, pos, head_dim, true, 100_000.0)?;
    let v = b.matmul("attn_v", h, wv)?;
    let a = match cache {
        Some((cache, table, start)) => {
            b.attention("attention", q, k, v, cache, table, start, heads)?
        }
        None => q,
    };
    let o = b.matmul("attn_output", a, wo)?;
    let x = b.add("attn_residual", x, o)?;
    let h = b.rms_norm("ffn_norm", x, ffn_norm, 1e-5)?;
    let gate = b.matmul("ffn_gate", h, w_gate)?;
    let up = b.matmul("ffn_up", h, w_up)?;
    let act = b.swiglu("ffn_swiglu", gate, up)?;
    let down = b.matmul("ffn_down", act, w_down)?;
    let y = b.add("ffn_residual", x, down)?;
    b.output(y)?;
    b.finish()
}
