//! Built-in example graphs for inspection and benchmarks until model files
//! (issue 5) provide real ones: a Llama-family block at given sizes (with
//! attention over a paged KV cache, or without) and a whole small decoder
//! (embedding, blocks, final norm, lm head), built with [`GraphBuilder`] as
//! the model layer will build them.

use exodus_kernels::attention::{KvFormat, KvLayout};
use exodus_numerics::Format;

use crate::builder::GraphBuilder;
use crate::error::GraphError;
use crate::ir::{Graph, ValueId};
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

/// Blocks of SmolLM2-135M.
pub const SMOLLM2_135M_LAYERS: usize = 30;

/// Vocabulary size of SmolLM2-135M.
pub const SMOLLM2_135M_VOCAB: usize = 49152;

/// One block without the attention core: norm, q/k/v projections with
/// rope, o projection (of the rotated queries, standing in for attention's
/// output) and residual, norm, SwiGLU MLP and residual, over `tokens` rows,
/// with every matmul weight in `format`. Inputs: `x[tokens, hidden]`,
/// `pos[tokens]`; output: the block's residual stream. (The k and v
/// projections have no reader, so dead-code elimination removes them.)
pub fn block_without_attention(dims: BlockDims, format: Format) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("block");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, dims.hidden));
    let pos = b.input("pos", DType::U32, (t,));
    let y = build_block(&mut b, dims, format, None, x, pos, None)?;
    b.output(y)?;
    b.finish()
}

/// KV cache blocks of the example [`block`] and of each layer of the
/// example [`decoder`] (16 tokens each: 1024 tokens).
pub const CACHE_BLOCKS: usize = 64;

/// Tokens per KV cache block of the examples.
pub const CACHE_BLOCK_TOKENS: usize = 16;

/// One full Llama-family block over `tokens` rows of one sequence: norm,
/// q/k/v projections, rope on q and k, attention over a paged KV cache
/// (state, `kv_format`, 64 blocks of 16 tokens), o projection and
/// residual, norm, SwiGLU MLP and residual. Inputs: `x[tokens, hidden]`,
/// `pos[tokens]`, `table[64]` (the sequence's block table), `start[1]`
/// (position of the first token).
pub fn block(dims: BlockDims, format: Format, kv_format: KvFormat) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("block");
    let t = b.symbol("tokens");
    let x = b.input("x", DType::F32, (t, dims.hidden));
    let pos = b.input("pos", DType::U32, (t,));
    let table = b.input("table", DType::U32, (CACHE_BLOCKS,));
    let start = b.input("start", DType::U32, (1,));
    let attn = Attn {
        kv_format,
        table,
        start,
    };
    let y = build_block(&mut b, dims, format, None, x, pos, Some(attn))?;
    b.output(y)?;
    b.finish()
}

/// A whole Llama-family decoder over `tokens` rows of one sequence: token
/// embedding (`token_embd.weight[vocab, hidden]` in `format`; the
/// matmuls need `format`'s block to divide `hidden`, and so does a row of
/// the table), `layers` blocks like [`block`]
/// (names prefixed `blk.{i}.` as in GGUF: `blk.0.attn_q.weight`, ...;
/// each with its own KV cache state `blk.{i}.kv_cache` in `kv_format`),
/// the final norm (`output_norm.weight`) and the lm head
/// (`output.weight[vocab, hidden]` in `format`). Inputs: `ids[tokens]`
/// (token ids, below `vocab`), `pos[tokens]`, `table[64]` and `start[1]`,
/// shared by every layer; output: `logits[tokens, vocab]` (f32).
pub fn decoder(
    dims: BlockDims,
    layers: usize,
    vocab: usize,
    format: Format,
    kv_format: KvFormat,
) -> Result<Graph, GraphError> {
    let hidden = dims.hidden;
    let mut b = GraphBuilder::new("decoder");
    let t = b.symbol("tokens");
    let ids = b.input("ids", DType::U32, (t,));
    let pos = b.input("pos", DType::U32, (t,));
    let table = b.input("table", DType::U32, (CACHE_BLOCKS,));
    let start = b.input("start", DType::U32, (1,));
    let w = DType::Weights(format);
    let token_embd = b.weight("token_embd.weight", w, (vocab, hidden));
    let mut x = b.embedding("token_embd", token_embd, ids)?;
    for layer in 0..layers {
        let attn = Attn {
            kv_format,
            table,
            start,
        };
        x = build_block(&mut b, dims, format, Some(layer), x, pos, Some(attn))?;
    }
    let output_norm = b.weight("output_norm.weight", DType::F32, (hidden,));
    let w_out = b.weight("output.weight", w, (vocab, hidden));
    let h = b.rms_norm("output_norm", x, output_norm, 1e-5)?;
    let logits = b.matmul("output", h, w_out)?;
    b.output(logits)?;
    b.finish()
}

/// What a block's attention reads besides q, k and v: the cache format and
/// the sequence's block table and start position (shared by every layer).
struct Attn {
    kv_format: KvFormat,
    table: ValueId,
    start: ValueId,
}

/// Adds one block to `b` over the residual stream `x` at positions `pos`,
/// and returns the block's residual output. With `layer`, every weight,
/// state and node name is prefixed `blk.{layer}.`; with `attn`, attention
/// runs over a new KV cache state, otherwise the rotated queries stand in
/// for its output.
fn build_block(
    b: &mut GraphBuilder,
    dims: BlockDims,
    format: Format,
    layer: Option<usize>,
    x: ValueId,
    pos: ValueId,
    attn: Option<Attn>,
) -> Result<ValueId, GraphError> {
    let BlockDims {
        hidden,
        ffn,
        heads,
        kv_heads,
        head_dim,
    } = dims;
    let prefix = layer.map_or_else(String::new, |i| format!("blk.{i}."));
    let n = |name: &str| format!("{prefix}{name}");
    let w = DType::Weights(format);
    let cache =
        match attn {
            Some(Attn {
                kv_format,
                table,
                start,
            }) => {
                let layout = KvLayout::new(CACHE_BLOCK_TOKENS, kv_heads, head_dim, kv_format)
                    .map_err(|e| GraphError::Graph {
                        graph: n("block"),
                        reason: e.to_string(),
                    })?;
                let cache = b.state(n("kv_cache"), DType::KvCache(layout), (CACHE_BLOCKS,));
                Some((cache, table, start))
            }
            None => None,
        };
    let attn_norm = b.weight(n("attn_norm.weight"), DType::F32, (hidden,));
    let wq = b.weight(n("attn_q.weight"), w, (heads * head_dim, hidden));
    let wk = b.weight(n("attn_k.weight"), w, (kv_heads * head_dim, hidden));
    let wv = b.weight(n("attn_v.weight"), w, (kv_heads * head_dim, hidden));
    let wo = b.weight(n("attn_output.weight"), w, (hidden, heads * head_dim));
    let ffn_norm = b.weight(n("ffn_norm.weight"), DType::F32, (hidden,));
    let w_gate = b.weight(n("ffn_gate.weight"), w, (ffn, hidden));
    let w_up = b.weight(n("ffn_up.weight"), w, (ffn, hidden));
    let w_down = b.weight(n("ffn_down.weight"), w, (hidden, ffn));
    let h = b.rms_norm(n("attn_norm"), x, attn_norm, 1e-5)?;
    let q = b.matmul(n("attn_q"), h, wq)?;
    let q = b.rope(n("rope_q"), q, pos, head_dim, true, 100_000.0)?;
    let k = b.matmul(n("attn_k"), h, wk)?;
    let k = b.rope(n("rope_k"), k, pos, head_dim, true, 100_000.0)?;
    let v = b.matmul(n("attn_v"), h, wv)?;
    let a = match cache {
        Some((cache, table, start)) => {
            b.attention(n("attention"), q, k, v, cache, table, start, heads, None)?
        }
        None => q,
    };
    let o = b.matmul(n("attn_output"), a, wo)?;
    let x = b.add(n("attn_residual"), x, o)?;
    let h = b.rms_norm(n("ffn_norm"), x, ffn_norm, 1e-5)?;
    let gate = b.matmul(n("ffn_gate"), h, w_gate)?;
    let up = b.matmul(n("ffn_up"), h, w_up)?;
    let act = b.swiglu(n("ffn_swiglu"), gate, up)?;
    let down = b.matmul(n("ffn_down"), act, w_down)?;
    b.add(n("ffn_residual"), x, down)
}
