//! The Llama-family model as an exodus graph, written with the graph
//! builder the way model code reads: embedding, `layers` blocks (attention
//! with its KV cache, SwiGLU MLP, each after an RMS norm and added to the
//! residual stream), final norm, the rows a step needs, output projection.
//! The families differ only in switches of [`ModelConfig`]: q/k/v biases
//! (Qwen2), per-head q/k norms (Qwen3), the rotary style, a tied output
//! projection. Tensor names are GGUF's (`blk.N.attn_q.weight`, ...).
//!
//! Inputs of the graph: `ids: u32[tokens]` (the step's tokens), `pos:
//! u32[tokens]` (their positions), where their keys and values go in the
//! paged KV cache, and `rows: u32[outputs]` (which of the step's tokens get
//! logits: the last one when generating, all of them for perplexity).
//! Output: `logits: f32[outputs, vocab]`. The cache is either one
//! sequence's ([`Cache::One`]: `table: u32[blocks]`, `start: u32[1]`) or a
//! pool shared by a batch of sequences ([`Cache::Pool`]: `tables:
//! u32[seqs, blocks_per_seq]`, `starts: u32[seqs]`, `lens: u32[seqs]`, the
//! step's tokens one sequence after the other: the serving engine's step).

use exodus_gguf::{Gguf, TensorInfo};
use exodus_graph::{
    rope_table, AttentionCentering, DType, Dim, Graph, GraphBuilder, KvCentered, KvFormat,
    KvLayout, ValueId,
};
use exodus_numerics::{ElementFormat, Format};

use crate::centering::{is_coarse, KvOffsets};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::shard::Shard;

/// Tokens per KV cache block.
pub const KV_BLOCK_TOKENS: usize = 16;

/// The KV cache a model graph gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// One sequence of up to `max_tokens` positions.
    One {
        /// Positions it holds.
        max_tokens: usize,
    },
    /// A pool of `blocks` blocks shared by a batch of sequences, each with
    /// a table of `blocks_per_seq` entries.
    Pool {
        /// Blocks in the pool.
        blocks: usize,
        /// Entries of a sequence's block table.
        blocks_per_seq: usize,
    },
}

/// Where a step's keys and values go, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqInputs {
    /// One sequence.
    One {
        /// Its block table.
        table: ValueId,
        /// Position of the step's first token.
        start: ValueId,
    },
    /// A batch of sequences.
    Batch {
        /// Their block tables, one row each.
        tables: ValueId,
        /// Position of each one's first token in the step.
        starts: ValueId,
        /// Tokens of each one in the step.
        lens: ValueId,
    },
}

/// The graph's inputs, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// Token ids of the step.
    pub ids: ValueId,
    /// Their positions.
    pub pos: ValueId,
    /// Where their keys and values go.
    pub seqs: SeqInputs,
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
    /// Every weight value and the part of the GGUF tensor that fills it.
    pub weights: Vec<(ValueId, WeightPart)>,
    /// KV cache blocks per layer (the pool's, or the one sequence's).
    pub cache_blocks: usize,
    /// Weight values the build computed rather than read from the file
    /// (the KV centering offsets and RoPE table), with their data.
    pub computed: Vec<(ValueId, Vec<f32>)>,
}

/// The part of a GGUF tensor a weight value holds: all of it, or (on a
/// rank of a tensor-parallel job) some of its rows and some of its
/// columns (the row length; a column range starts and ends on a block of
/// the tensor's format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightPart {
    /// The GGUF tensor.
    pub name: String,
    /// Its full shape (rows, then the row length).
    pub shape: Vec<usize>,
    /// The rows taken (all: `0..rows`).
    pub rows: std::ops::Range<usize>,
    /// The columns taken (all: `0..row length`; vectors: unused).
    pub cols: std::ops::Range<usize>,
}

impl WeightPart {
    /// Whether it is the whole tensor.
    pub fn is_whole(&self) -> bool {
        self.rows == (0..self.shape[0]) && (self.shape.len() < 2 || self.cols == (0..self.shape[1]))
    }
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
    weights: Vec<(ValueId, WeightPart)>,
}

impl<B: AsRef<[u8]>> Builder<'_, B> {
    /// The weight value of tensor `name`, checked to be `shape` (rows,
    /// then the row length: GGUF lists dims innermost first).
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<ValueId, ModelError> {
        let cols = 0..shape.get(1).copied().unwrap_or(0);
        self.weight_part(name, shape, 0..shape[0], cols)
    }

    /// The block of tensor `name` (of full `shape`) at `rows` and `cols`
    /// (a vector's `cols` are ignored); columns start and end on a block
    /// of the tensor's format.
    fn weight_part(
        &mut self,
        name: &str,
        shape: &[usize],
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) -> Result<ValueId, ModelError> {
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
        let block = t.format()?.block_elems().max(1);
        let bad = |reason: String| ModelError::Tensor {
            name: name.into(),
            reason,
        };
        if rows.end > shape[0] || rows.is_empty() {
            return Err(bad(format!("rows {rows:?} of {}", shape[0])));
        }
        let mut part_dims = vec![rows.len()];
        if let Some(&len) = shape.get(1) {
            if cols.end > len || cols.is_empty() {
                return Err(bad(format!("columns {cols:?} of {len}")));
            }
            let whole = cols == (0..len);
            let on_blocks = cols.start.is_multiple_of(block) && cols.end.is_multiple_of(block);
            if !whole && !on_blocks {
                return Err(bad(format!(
                    "columns {cols:?} do not start and end on blocks of {block}"
                )));
            }
            part_dims.push(cols.len());
        }
        let dims: Vec<Dim> = part_dims.iter().map(|&d| Dim::Fixed(d)).collect();
        let v = self.b.weight(name, dtype, dims);
        self.weights.push((
            v,
            WeightPart {
                name: name.to_owned(),
                shape: shape.to_vec(),
                rows,
                cols,
            },
        ));
        Ok(v)
    }
}

/// Builds the graph of the model in `file` with a KV cache per layer of
/// the shape `cache`, layer `l`'s in `kv_format(l)`: the whole model, or
/// `shard`'s part of it (see [`crate::shard`]). With `offsets`, the layers
/// whose format is coarse store their K/V rows centered on them (see
/// [`crate::centering`]).
pub fn build<B: AsRef<[u8]>>(
    cfg: &ModelConfig,
    file: &Gguf<B>,
    cache: Cache,
    kv_format: impl Fn(usize) -> KvFormat,
    shard: Shard,
    offsets: Option<&KvOffsets>,
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
    let blocks = match cache {
        Cache::One { max_tokens } => max_tokens.div_ceil(KV_BLOCK_TOKENS).max(1),
        Cache::Pool { blocks, .. } => blocks.max(1),
    };
    // Positions one sequence can reach: the RoPE table of a centered cache.
    let seq_positions = KV_BLOCK_TOKENS
        * match cache {
            Cache::One { .. } => blocks,
            Cache::Pool { blocks_per_seq, .. } => blocks_per_seq.max(1),
        };
    // This rank's KV heads, their query heads, and its MLP units.
    let my_kv = shard.part(kv_heads, 1, "KV heads")?;
    let group = heads / kv_heads.max(1);
    let my_q = my_kv.start * group..my_kv.end * group;
    let (q_rows, kv_rows) = (
        my_q.start * head_dim..my_q.end * head_dim,
        my_kv.start * head_dim..my_kv.end * head_dim,
    );
    // This rank's hidden features: its rows of `attn_output` and
    // `ffn_down` (in groups of 16 rows where they divide, whole groups of
    // the decode kernels' row tiles).
    let hidden_unit = if hidden.is_multiple_of(16) && hidden / 16 >= shard.ranks {
        16
    } else {
        1
    };
    let my_hidden = shard.part(hidden, hidden_unit, "hidden features")?;
    let layout = |l: usize| {
        KvLayout::new(KV_BLOCK_TOKENS, my_kv.len(), head_dim, kv_format(l))
            .map_err(|e| ModelError::Unsupported(format!("KV cache layout of layer {l}: {e}")))
    };
    let mut m = Builder {
        b: GraphBuilder::new(cfg.arch.name()),
        file,
        weights: Vec::new(),
    };
    let mut computed = Vec::new();
    let mut rope = None;
    let t = m.b.symbol("tokens");
    let n_out = m.b.symbol("outputs");
    let ids = m.b.input("ids", DType::U32, (t,));
    let pos = m.b.input("pos", DType::U32, (t,));
    let seqs = match cache {
        Cache::One { .. } => SeqInputs::One {
            table: m.b.input("table", DType::U32, (blocks,)),
            start: m.b.input("start", DType::U32, (1,)),
        },
        Cache::Pool { blocks_per_seq, .. } => {
            let s = m.b.symbol("seqs");
            SeqInputs::Batch {
                tables: m.b.input("tables", DType::U32, (s, blocks_per_seq.max(1))),
                starts: m.b.input("starts", DType::U32, (s,)),
                lens: m.b.input("lens", DType::U32, (s,)),
            }
        }
    };
    let rows = m.b.input("rows", DType::U32, (n_out,));
    let (q_width, kv_width) = (heads * head_dim, kv_heads * head_dim);
    let embd = m.weight("token_embd.weight", &[vocab, hidden])?;
    let mut x = m.b.embedding("token_embd", embd, ids)?;
    for l in 0..layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        let norm = m.weight(&p("attn_norm.weight"), &[hidden])?;
        let h = m.b.rms_norm(p("attn_norm"), x, norm, eps)?;
        let proj =
            |m: &mut Builder<'_, B>, name: &str, width: usize, rows: std::ops::Range<usize>| {
                let w = m.weight_part(
                    &p(&format!("{name}.weight")),
                    &[width, hidden],
                    rows.clone(),
                    0..hidden,
                )?;
                let mut y = m.b.matmul(p(name), h, w)?;
                if cfg.qkv_bias {
                    let bias = m.weight_part(&p(&format!("{name}.bias")), &[width], rows, 0..0)?;
                    y = m.b.add(p(&format!("{name}.bias")), y, bias)?;
                }
                Ok::<_, ModelError>(y)
            };
        let mut q = proj(&mut m, "attn_q", q_width, q_rows.clone())?;
        let mut k = proj(&mut m, "attn_k", kv_width, kv_rows.clone())?;
        let v = proj(&mut m, "attn_v", kv_width, kv_rows.clone())?;
        if cfg.qk_norm {
            for (x, name, n_heads) in [
                (&mut q, "attn_q_norm", my_q.len()),
                (&mut k, "attn_k_norm", my_kv.len()),
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
        let cache =
            m.b.state(p("kv_cache"), DType::KvCache(layout(l)?), (blocks,));
        let centering = match offsets {
            Some(o) if is_coarse(kv_format(l)) => {
                let mut mean = |name: String, all: &[Vec<f32>]| {
                    let mine = all.get(l).and_then(|m| m.get(kv_rows.clone()));
                    let mine = mine.ok_or_else(|| ModelError::Tensor {
                        name: name.clone(),
                        reason: format!("no offsets for layer {l}'s KV heads"),
                    })?;
                    let v = m.b.weight(name, DType::F32, (kv_rows.len(),));
                    computed.push((v, mine.to_vec()));
                    Ok::<_, ModelError>(v)
                };
                let k_mean = mean(p("kv_centering.k_mean"), &o.k_mean)?;
                let v_mean = mean(p("kv_centering.v_mean"), &o.v_mean)?;
                let how = KvCentered { neox: rope_neox };
                let rope = *rope.get_or_insert_with(|| {
                    let shape = (seq_positions, 2 * head_dim);
                    let v = m.b.weight("kv_centering.rope", DType::F32, shape);
                    let table = rope_table(rope_theta, head_dim, seq_positions, how.style());
                    computed.push((v, table));
                    v
                });
                Some(AttentionCentering {
                    k_mean,
                    v_mean,
                    rope,
                    how,
                })
            }
            _ => None,
        };
        let a = match seqs {
            SeqInputs::One { table, start } => m.b.attention(
                p("attention"),
                q,
                k,
                v,
                cache,
                table,
                start,
                my_q.len(),
                centering,
            )?,
            SeqInputs::Batch {
                tables,
                starts,
                lens,
            } => m.b.attention_batch(
                p("attention"),
                q,
                k,
                v,
                cache,
                tables,
                starts,
                lens,
                my_q.len(),
                centering,
            )?,
        };
        // A split model gathers the heads' outputs, and each rank computes
        // its rows of `attn_output` (its part of the hidden features) over
        // all of them: every output is the whole model's dot, so the
        // gathered result is the whole model's bits.
        let a = if shard.is_split() {
            m.b.all_gather(p("attention.all_gather"), a, q_rows.start, q_width)?
        } else {
            a
        };
        let wo = m.weight_part(
            &p("attn_output.weight"),
            &[hidden, q_width],
            my_hidden.clone(),
            0..q_width,
        )?;
        let mut o = m.b.matmul(p("attn_output"), a, wo)?;
        if shard.is_split() {
            o =
                m.b.all_gather(p("attn_output.all_gather"), o, my_hidden.start, hidden)?;
        }
        x = m.b.add(p("attn_residual"), x, o)?;
        let norm = m.weight(&p("ffn_norm.weight"), &[hidden])?;
        let h = m.b.rms_norm(p("ffn_norm"), x, norm, eps)?;
        // The MLP's units split in blocks of ffn_down's format (its
        // columns).
        let down_block = file
            .require_tensor(&p("ffn_down.weight"))?
            .format()?
            .block_elems();
        let units = shard.part(ffn, down_block, "MLP units")?;
        let wg = m.weight_part(
            &p("ffn_gate.weight"),
            &[ffn, hidden],
            units.clone(),
            0..hidden,
        )?;
        let wu = m.weight_part(
            &p("ffn_up.weight"),
            &[ffn, hidden],
            units.clone(),
            0..hidden,
        )?;
        let gate = m.b.matmul(p("ffn_gate"), h, wg)?;
        let up = m.b.matmul(p("ffn_up"), h, wu)?;
        let mut act = m.b.swiglu(p("ffn_swiglu"), gate, up)?;
        if shard.is_split() {
            act =
                m.b.all_gather(p("ffn_swiglu.all_gather"), act, units.start, ffn)?;
        }
        let wd = m.weight_part(
            &p("ffn_down.weight"),
            &[hidden, ffn],
            my_hidden.clone(),
            0..ffn,
        )?;
        let mut down = m.b.matmul(p("ffn_down"), act, wd)?;
        if shard.is_split() {
            down =
                m.b.all_gather(p("ffn_down.all_gather"), down, my_hidden.start, hidden)?;
        }
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
            seqs,
            rows,
        },
        weights: m.weights,
        cache_blocks: blocks,
        computed,
    })
}
