//! The graph itself: values, nodes and the ops they apply.

use std::collections::HashMap;

use exodus_kernels::ops::RopeStyle;

use crate::types::{DType, Shape};

/// A value of a graph (an index into its value table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub u32);

/// A node of a graph (an index into its node list, which is in execution
/// order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    /// Fed by the caller on every run.
    Input,
    /// A model weight, bound once.
    Weight,
    /// Values known when the graph is built (f32, row-major).
    Const(Vec<f32>),
    /// State the session keeps across runs (a KV cache), zeroed when the
    /// session is made; nodes with side effects write it.
    State,
    /// Was the output of a node a pass removed; nothing reads it. Passes
    /// leave it in place so that every other value keeps its id (weights
    /// and inputs are bound by id).
    Removed,
    /// Output `index` of a node.
    Node {
        /// The node.
        node: NodeId,
        /// Which of its outputs.
        index: usize,
    },
}

/// Everything known about a value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// Name for dumps and errors (unique names are not required).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape, possibly symbolic.
    pub shape: Shape,
    /// Definition.
    pub def: Def,
}

/// A unary elementwise function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    /// `x * sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation (`true`) or exact erf (`false`).
    Gelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// `x * factor`.
    Scale(f32),
}

/// A binary elementwise function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `silu(a) * b`.
    SwiGlu,
}

/// One step of a fused elementwise program. Registers `0..inputs` hold the
/// fused node's inputs; step `i` writes register `inputs + i`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// A unary function of a register.
    Unary(Unary, usize),
    /// A binary function of two registers.
    Binary(Binary, usize, usize),
    /// A norm over each row (the output's last axis) of register `x`, with
    /// the weight (and, for a layer norm, the bias) in input registers of
    /// the row's width. A program with a norm runs in chunks of whole
    /// rows.
    Norm {
        /// Layer norm (mean and variance) or RMS norm.
        layer: bool,
        /// The normalized register.
        x: usize,
        /// The weight's input register.
        weight: usize,
        /// The bias's input register (layer norm).
        bias: Option<usize>,
        /// Added to the mean square (variance).
        eps: f32,
    },
}

impl Program {
    /// Whether a step normalizes rows (so chunks must be whole rows).
    pub fn has_norm(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Norm { .. }))
    }
}

/// The elementwise chain a fusion pass folded into one node: run in one
/// launch, chunk by chunk, with the intermediates in cache-sized scratch
/// instead of whole tensors. The last step's register is the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// What an [`Op::Linear`] does with its matmul results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// Nothing: one output per weight.
    None,
    /// `+ residual` (one weight; the residual is the last input).
    Residual,
    /// `silu(x · W_0ᵀ) * (x · W_1ᵀ)` (two weights, one output).
    SwiGlu,
}

/// A linear layer as the fusion passes assemble it, run as one launch:
/// optionally an RMS norm of x first, then the matmuls of one or more
/// weights against the (normalized) x, each plus its bias if it has one,
/// then an epilogue. Inputs: `[x, norm weight (if rms_norm), W_0, ..,
/// W_{weights-1}, b_0, .., b_{weights-1} (if bias), residual (if
/// Epilogue::Residual)]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    /// RMS-normalize x over its last axis first, with this epsilon.
    pub rms_norm: Option<f32>,
    /// How many weights read x (each `[n_i, k]`, all of one `k`).
    pub weights: usize,
    /// Each weight's product gets a bias `[n_i]` added (Qwen2's q/k/v).
    pub bias: bool,
    /// What follows the matmuls.
    pub epilogue: Epilogue,
}

impl Linear {
    /// A plain matmul of one weight, as a `Linear`.
    pub const MATMUL: Linear = Linear {
        rms_norm: None,
        weights: 1,
        bias: false,
        epilogue: Epilogue::None,
    };

    /// Index of the first weight among the inputs.
    pub fn first_weight(&self) -> usize {
        1 + usize::from(self.rms_norm.is_some())
    }

    /// Index of the first bias among the inputs (when there are biases).
    pub fn first_bias(&self) -> usize {
        self.first_weight() + self.weights
    }

    /// How many inputs the node takes.
    pub fn arity(&self) -> usize {
        self.first_bias()
            + if self.bias { self.weights } else { 0 }
            + usize::from(self.epilogue == Epilogue::Residual)
    }
}

/// The operation a node applies, with its attributes. Inputs are listed in
/// the order each variant documents.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `a + b` (b may broadcast over a's leading dims: its shape is a
    /// suffix of a's).
    Add,
    /// `a - b` (broadcast as [`Op::Add`]).
    Sub,
    /// `a * b` (broadcast as [`Op::Add`]).
    Mul,
    /// `a / b` (broadcast as [`Op::Add`]).
    Div,
    /// A unary function of one input.
    Unary(Unary),
    /// `silu(gate) * up`, inputs `[gate, up]` of one shape.
    SwiGlu,
    /// RMS norm over the last axis; inputs `[x, weight[d]]`.
    RmsNorm {
        /// Added to the mean square.
        eps: f32,
    },
    /// Layer norm over the last axis; inputs `[x, weight[d], bias[d]]`.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// Softmax over the last axis.
    Softmax,
    /// `x[m, k] · W[n, k]ᵀ -> [m, n]`; inputs `[x (f32), W (weights or
    /// f32)]`.
    MatMul,
    /// Rotary position embedding on `x[tokens, heads * head_dim]`, inputs
    /// `[x, positions (u32[tokens])]`.
    Rope {
        /// Width of one head.
        head_dim: usize,
        /// NeoX rotate-half (`true`) or interleaved pairs (`false`).
        neox: bool,
        /// Frequency base.
        theta: f32,
    },
    /// Rows of a table: inputs `[table[vocab, d] (weights or f32), ids
    /// (u32[..])]`, output `f32[.., d]`.
    Embedding,
    /// Same elements, another shape (same volume for every binding of
    /// the symbols).
    Reshape(Shape),
    /// Index of the largest value along the last axis (`u32`, last axis
    /// removed).
    Argmax,
    /// The `k` largest values along the last axis and their indices: two
    /// outputs, `f32[.., k]` values (largest first) and `u32[.., k]`
    /// indices.
    TopK {
        /// How many to keep (at most the axis length).
        k: usize,
    },
    /// Causal grouped-query attention of a batch of sequences over one
    /// paged KV cache (the serving engine's step: decode tokens and prefill
    /// chunks of several requests together): inputs `[q[t, heads *
    /// head_dim], k[t, kv_heads * head_dim], v[t, ..], cache (state),
    /// tables (u32[seqs, blocks]), starts (u32[seqs]), lens (u32[seqs])]`.
    /// The `t` rows are the sequences' tokens one sequence after the other
    /// (`lens` of them each, summing to `t`); sequence `i` first writes its
    /// rows at `starts[i] ..` through block table row `i`, then attends
    /// each of its queries to its own positions `0 ..= its own`.
    AttentionBatch {
        /// Query heads (a multiple of the cache's KV heads).
        heads: usize,
        /// Softmax scale (`None`: `1 / sqrt(head_dim)`).
        scale: Option<f32>,
        /// Whether the cache rows are centered (see [`KvCentered`]).
        centered: Option<KvCentered>,
    },
    /// Rows of an f32 matrix by index: inputs `[x[m, d], rows (u32[n])]`,
    /// output `[n, d]` (the positions a step needs logits for).
    Gather,
    /// `x` cut along `axis` (a fixed-size axis) into consecutive parts of
    /// the given sizes, one output each.
    Split {
        /// The axis.
        axis: usize,
        /// Size of each part along the axis (they sum to its length).
        sizes: Vec<usize>,
    },
    /// A fused elementwise chain over any number of inputs (each the
    /// output's shape, or a suffix of it that broadcasts).
    Fused(Program),
    /// Axes permuted: output axis `i` is input axis `perm[i]`.
    Transpose(Vec<usize>),
    /// `x[.., start..end, ..]` along `axis` (a fixed-size axis).
    Slice {
        /// The axis.
        axis: usize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// The inputs joined along `axis` (fixed sizes there; every other
    /// axis equal).
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Sum (or mean) over the last axis, which is removed.
    Reduce {
        /// Divide by the axis length.
        mean: bool,
    },
    /// A fused linear layer (norm prologue, several weights, epilogue),
    /// made by the fusion passes; see [`Linear`].
    Linear(Linear),
    /// Causal grouped-query attention of one sequence over a paged KV
    /// cache: inputs `[q[t, heads * head_dim], k[t, kv_heads * head_dim],
    /// v[t, kv_heads * head_dim], cache (state), block_table (u32[blocks]),
    /// start_pos (u32[1])]`. It first writes the `t` new K/V rows at
    /// positions `start_pos ..` (a side effect on the cache), then attends
    /// each query to positions `0 ..= its own`; output `[t, heads *
    /// head_dim]`.
    Attention {
        /// Query heads (a multiple of the cache's KV heads).
        heads: usize,
        /// Softmax scale (`None`: `1 / sqrt(head_dim)`).
        scale: Option<f32>,
        /// Whether the cache rows are centered (see [`KvCentered`]).
        centered: Option<KvCentered>,
    },
    /// The element-wise sum of `x` over every rank of the job (each rank
    /// runs its shard of the model), by the session's
    /// [`Collective`](crate::Collective); the identity without one.
    AllReduce,
    /// Every rank's columns of one tensor, side by side: `x` (`[.., w]`) is
    /// this rank's columns `offset .. offset + w` of a `[.., total]`
    /// result, and the other ranks hold the rest. It runs as an AllReduce
    /// of `x` placed among zeros, which adds nothing but zeros to any value
    /// (a value keeps its bits, up to the sign of a zero). Without a
    /// collective (a job of one rank) the other columns stay zero.
    AllGather {
        /// The first column this rank holds.
        offset: usize,
        /// Columns of the result.
        total: usize,
    },
}

/// An attention op whose KV cache stores rows relative to fixed offsets
/// (exodus-kernels' `KvCentering`: a coarse cache format then rounds only
/// how a row differs from the usual one). The op takes three more inputs
/// after its own: `k_mean` and `v_mean` (`f32[kv_heads * head_dim]`, the
/// key offset before RoPE) and `rope` (`f32[positions, 2 * head_dim]`,
/// the cosines and sines of [`rope_table`](crate::rope_table) in the
/// model's pair style), and
/// writes and reads the cache through them; its result is the uncentered
/// attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCentered {
    /// The model's RoPE pairs are NeoX-style (`i`, `i + head_dim / 2`)
    /// rather than interleaved (`2i`, `2i + 1`).
    pub neox: bool,
}

impl KvCentered {
    /// The RoPE pair layout, as the kernels name it.
    pub fn style(&self) -> RopeStyle {
        if self.neox {
            RopeStyle::NeoX
        } else {
            RopeStyle::Interleaved
        }
    }

    /// Extra inputs an attention op with `centered` takes.
    pub fn inputs(centered: &Option<KvCentered>) -> usize {
        if centered.is_some() {
            3
        } else {
            0
        }
    }
}

impl Op {
    /// The op's name, as dumps and errors print it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Unary(Unary::Silu) => "silu",
            Op::Unary(Unary::Gelu { .. }) => "gelu",
            Op::Unary(Unary::Scale(_)) => "scale",
            Op::SwiGlu => "swiglu",
            Op::RmsNorm { .. } => "rms_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Softmax => "softmax",
            Op::MatMul => "matmul",
            Op::Rope { .. } => "rope",
            Op::Embedding => "embedding",
            Op::Reshape(_) => "reshape",
            Op::Argmax => "argmax",
            Op::TopK { .. } => "top_k",
            Op::Gather => "gather",
            Op::Split { .. } => "split",
            Op::Fused(_) => "fused",
            Op::Transpose(_) => "transpose",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Reduce { mean: false } => "reduce_sum",
            Op::Reduce { mean: true } => "reduce_mean",
            Op::Attention { .. } => "attention",
            Op::AttentionBatch { .. } => "attention_batch",
            Op::Linear(_) => "linear",
            Op::AllReduce => "all_reduce",
            Op::AllGather { .. } => "all_gather",
        }
    }

    /// Whether the op changes state besides its outputs (so passes must
    /// neither drop it when its output is unread nor merge two of them).
    pub fn has_side_effects(&self) -> bool {
        // An AllReduce meets the other ranks' calls: every rank must make
        // the same ones, in the same order.
        matches!(
            self,
            Op::Attention { .. } | Op::AttentionBatch { .. } | Op::AllReduce | Op::AllGather { .. }
        )
    }

    /// How many inputs the op takes (`None`: any number, for
    /// [`Op::Fused`]).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Unary(_)
            | Op::Softmax
            | Op::Reshape(_)
            | Op::Argmax
            | Op::TopK { .. }
            | Op::Split { .. }
            | Op::Transpose(_)
            | Op::Slice { .. }
            | Op::Reduce { .. }
            | Op::AllReduce
            | Op::AllGather { .. } => Some(1),
            Op::LayerNorm { .. } => Some(3),
            Op::Attention { centered, .. } => Some(6 + KvCentered::inputs(centered)),
            Op::AttentionBatch { centered, .. } => Some(7 + KvCentered::inputs(centered)),
            Op::Linear(l) => Some(l.arity()),
            Op::Fused(_) | Op::Concat { .. } => None,
            _ => Some(2),
        }
    }
}

/// One operation applied to earlier values.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Name for dumps, errors and trace spans (e.g. `layer3.attn_norm`).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Its operands.
    pub inputs: Vec<ValueId>,
    /// The values it defines (one for every op so far).
    pub outputs: Vec<ValueId>,
}

/// A verified-or-not computation graph (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub(crate) name: String,
    pub(crate) symbols: Vec<String>,
    pub(crate) values: Vec<ValueInfo>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<ValueId>,
}

impl Graph {
    /// A graph from its parts, *not* checked: for graphs that come from
    /// outside the builder (files, tests). Call [`Graph::verify`] before
    /// using it.
    pub fn from_parts(
        name: impl Into<String>,
        symbols: Vec<String>,
        values: Vec<ValueInfo>,
        nodes: Vec<Node>,
        outputs: Vec<ValueId>,
    ) -> Graph {
        Graph {
            name: name.into(),
            symbols,
            values,
            nodes,
            outputs,
        }
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names of the symbolic dims, indexed by [`crate::Sym`].
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Every value, indexed by [`ValueId`].
    pub fn values(&self) -> &[ValueInfo] {
        &self.values
    }

    /// Every node, in execution order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The values the graph returns.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// One value's info, if the id exists.
    pub fn value(&self, v: ValueId) -> Option<&ValueInfo> {
        self.values.get(v.0 as usize)
    }

    /// For every value some node reads or the graph returns, the index of
    /// the last node that reads it; `usize::MAX` for a graph output (it
    /// lives to the end). Lifetimes in the executor, the memory plan and
    /// the benchmark come from here.
    pub fn last_readers(&self) -> HashMap<ValueId, usize> {
        let mut last = HashMap::new();
        for (n, node) in self.nodes.iter().enumerate() {
            for &v in &node.inputs {
                last.insert(v, n);
            }
        }
        for &v in &self.outputs {
            last.insert(v, usize::MAX);
        }
        last
    }

    /// How many times each value (indexed by id) is read, a graph output
    /// counting as one read.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0usize; self.values.len()];
        for v in self
            .nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .chain(&self.outputs)
        {
            if let Some(u) = uses.get_mut(v.0 as usize) {
                *u += 1;
            }
        }
        uses
    }
}
