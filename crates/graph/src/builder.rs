//! [`GraphBuilder`]: the programming surface the model layer writes graphs
//! with. Every op method infers its output's type and shape on the spot and
//! refuses a mismatch with an error naming the node, so a model written
//! against the wrong weight shapes fails where it is built, not when it
//! runs.

use crate::error::GraphError;
use crate::infer::infer;
use crate::ir::{Def, Graph, KvCentered, Node, NodeId, Op, Unary, ValueId, ValueInfo};
use crate::types::{DType, Shape, Sym};

/// Builds a [`Graph`] node by node (see the crate docs for an example).
///
/// ```
/// use exodus_graph::{DType, GraphBuilder};
///
/// let mut b = GraphBuilder::new("mlp");
/// let tokens = b.symbol("tokens");
/// let x = b.input("x", DType::F32, (tokens, 576));
/// let w_up = b.weight("w_up", DType::F32, (1536, 576));
/// let w_down = b.weight("w_down", DType::F32, (576, 1536));
/// let h = b.matmul("up", x, w_up)?;
/// let h = b.silu("act", h)?;
/// let y = b.matmul("down", h, w_down)?;
/// let y = b.add("residual", y, x)?;
/// b.output(y)?;
/// let graph = b.finish()?;
/// assert_eq!(graph.nodes().len(), 4);
/// # Ok::<(), exodus_graph::GraphError>(())
/// ```
#[derive(Debug)]
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: impl Into<String>) -> GraphBuilder {
        GraphBuilder {
            graph: Graph::from_parts(name, Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        }
    }

    /// The symbolic dim called `name` (the same one on every call).
    pub fn symbol(&mut self, name: &str) -> Sym {
        let symbols = &mut self.graph.symbols;
        let at = symbols.iter().position(|s| s == name).unwrap_or_else(|| {
            symbols.push(name.to_owned());
            symbols.len() - 1
        });
        Sym(at as u32)
    }

    fn push_value(&mut self, name: String, dtype: DType, shape: Shape, def: Def) -> ValueId {
        self.graph.values.push(ValueInfo {
            name,
            dtype,
            shape,
            def,
        });
        ValueId(self.graph.values.len() as u32 - 1)
    }

    /// A graph input, fed on every run.
    pub fn input(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: impl Into<Shape>,
    ) -> ValueId {
        self.push_value(name.into(), dtype, shape.into(), Def::Input)
    }

    /// A weight, bound once.
    pub fn weight(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: impl Into<Shape>,
    ) -> ValueId {
        self.push_value(name.into(), dtype, shape.into(), Def::Weight)
    }

    /// State the session keeps across runs (a KV cache: `DType::KvCache`
    /// with shape `(blocks,)`), zeroed when a session is made.
    pub fn state(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: impl Into<Shape>,
    ) -> ValueId {
        self.push_value(name.into(), dtype, shape.into(), Def::State)
    }

    /// An f32 constant of a fixed shape.
    pub fn constant(
        &mut self,
        name: impl Into<String>,
        shape: impl Into<Shape>,
        data: Vec<f32>,
    ) -> Result<ValueId, GraphError> {
        let (name, shape) = (name.into(), shape.into());
        check_constant(&name, &shape, data.len())?;
        Ok(self.push_value(name, DType::F32, shape, Def::Const(data)))
    }

    /// Adds a node applying `op` to `inputs`; its first output is named like
    /// the node (see [`GraphBuilder::node_outputs`] for all of them).
    /// Refuses inputs that do not exist or do not fit the op.
    pub fn node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[ValueId],
    ) -> Result<ValueId, GraphError> {
        Ok(self.node_outputs(name, op, inputs)?[0])
    }

    /// [`GraphBuilder::node`] returning every output (top-k's values and
    /// indices, split's parts, a linear group's projections).
    pub fn node_outputs(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[ValueId],
    ) -> Result<Vec<ValueId>, GraphError> {
        let name = name.into();
        let err = |reason: String| GraphError::Node {
            node: name.clone(),
            op: op.name(),
            reason,
        };
        let operands = inputs
            .iter()
            .map(|&v| {
                self.graph
                    .value(v)
                    .map(|info| (&info.dtype, &info.shape))
                    .ok_or_else(|| err(format!("input {} does not exist", v.0)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outs = infer(&op, &operands, &self.graph.symbols).map_err(err)?;
        let node = NodeId(self.graph.nodes.len() as u32);
        let outputs: Vec<ValueId> = outs
            .into_iter()
            .enumerate()
            .map(|(index, (dtype, shape))| {
                self.push_value(name.clone(), dtype, shape, Def::Node { node, index })
            })
            .collect();
        self.graph.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
        });
        Ok(outputs)
    }

    /// Marks `v` as a graph output.
    pub fn output(&mut self, v: ValueId) -> Result<(), GraphError> {
        if self.graph.value(v).is_none() {
            return Err(GraphError::Graph {
                graph: self.graph.name.clone(),
                reason: format!("output {} does not exist", v.0),
            });
        }
        self.graph.outputs.push(v);
        Ok(())
    }

    /// The shape of a value built so far.
    pub fn shape(&self, v: ValueId) -> Option<&Shape> {
        self.graph.value(v).map(|i| &i.shape)
    }

    /// The element type of a value built so far.
    pub fn dtype(&self, v: ValueId) -> Option<DType> {
        self.graph.value(v).map(|i| i.dtype)
    }

    /// The finished graph, verified.
    pub fn finish(self) -> Result<Graph, GraphError> {
        self.graph.verify()?;
        Ok(self.graph)
    }

    /// `a + b`.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        a: ValueId,
        b: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Add, &[a, b])
    }

    /// `a - b`.
    pub fn sub(
        &mut self,
        name: impl Into<String>,
        a: ValueId,
        b: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Sub, &[a, b])
    }

    /// `a * b`.
    pub fn mul(
        &mut self,
        name: impl Into<String>,
        a: ValueId,
        b: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Mul, &[a, b])
    }

    /// `a / b`.
    pub fn div(
        &mut self,
        name: impl Into<String>,
        a: ValueId,
        b: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Div, &[a, b])
    }

    /// `silu(x)`.
    pub fn silu(&mut self, name: impl Into<String>, x: ValueId) -> Result<ValueId, GraphError> {
        self.node(name, Op::Unary(Unary::Silu), &[x])
    }

    /// `gelu(x)` (tanh approximation or exact).
    pub fn gelu(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        tanh: bool,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Unary(Unary::Gelu { tanh }), &[x])
    }

    /// `x * factor`.
    pub fn scale(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        factor: f32,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Unary(Unary::Scale(factor)), &[x])
    }

    /// `silu(gate) * up`.
    pub fn swiglu(
        &mut self,
        name: impl Into<String>,
        gate: ValueId,
        up: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::SwiGlu, &[gate, up])
    }

    /// RMS norm of `x` over its last axis, times `weight`.
    pub fn rms_norm(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        weight: ValueId,
        eps: f32,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::RmsNorm { eps }, &[x, weight])
    }

    /// Layer norm of `x` over its last axis, times `weight` plus `bias`.
    pub fn layer_norm(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        weight: ValueId,
        bias: ValueId,
        eps: f32,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::LayerNorm { eps }, &[x, weight, bias])
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self, name: impl Into<String>, x: ValueId) -> Result<ValueId, GraphError> {
        self.node(name, Op::Softmax, &[x])
    }

    /// `x[m, k] · W[n, k]ᵀ`.
    pub fn matmul(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        w: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::MatMul, &[x, w])
    }

    /// Rotary embedding of `x[tokens, heads * head_dim]` at `positions`.
    pub fn rope(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        positions: ValueId,
        head_dim: usize,
        neox: bool,
        theta: f32,
    ) -> Result<ValueId, GraphError> {
        let op = Op::Rope {
            head_dim,
            neox,
            theta,
        };
        self.node(name, op, &[x, positions])
    }

    /// The rows of `table` at `ids`.
    pub fn embedding(
        &mut self,
        name: impl Into<String>,
        table: ValueId,
        ids: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Embedding, &[table, ids])
    }

    /// `x` with another shape of the same size.
    pub fn reshape(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        shape: impl Into<Shape>,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Reshape(shape.into()), &[x])
    }

    /// `x` with its axes permuted.
    pub fn transpose(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        perm: &[usize],
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Transpose(perm.to_vec()), &[x])
    }

    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        axis: usize,
        start: usize,
        end: usize,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Slice { axis, start, end }, &[x])
    }

    /// `parts` joined along `axis`.
    pub fn concat(
        &mut self,
        name: impl Into<String>,
        parts: &[ValueId],
        axis: usize,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Concat { axis }, parts)
    }

    /// Sum (or mean) over the last axis.
    pub fn reduce(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        mean: bool,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Reduce { mean }, &[x])
    }

    /// Attention of one sequence's `q` over `cache`, after writing this
    /// step's `k`/`v` at `start_pos` (see [`Op::Attention`]), the cache
    /// rows centered when `centering` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        name: impl Into<String>,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        cache: ValueId,
        block_table: ValueId,
        start_pos: ValueId,
        heads: usize,
        centering: Option<AttentionCentering>,
    ) -> Result<ValueId, GraphError> {
        let centered = centering.map(|c| c.how);
        let op = Op::Attention {
            heads,
            scale: None,
            centered,
        };
        let mut inputs = vec![q, k, v, cache, block_table, start_pos];
        inputs.extend(centering.iter().flat_map(|c| c.inputs()));
        self.node(name, op, &inputs)
    }

    /// Attention of a batch of sequences over `cache` (see
    /// [`Op::AttentionBatch`]): `tables` u32[seqs, blocks], `starts` and
    /// `lens` u32[seqs]; the cache rows centered when `centering` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_batch(
        &mut self,
        name: impl Into<String>,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        cache: ValueId,
        tables: ValueId,
        starts: ValueId,
        lens: ValueId,
        heads: usize,
        centering: Option<AttentionCentering>,
    ) -> Result<ValueId, GraphError> {
        let centered = centering.map(|c| c.how);
        let op = Op::AttentionBatch {
            heads,
            scale: None,
            centered,
        };
        let mut inputs = vec![q, k, v, cache, tables, starts, lens];
        inputs.extend(centering.iter().flat_map(|c| c.inputs()));
        self.node(name, op, &inputs)
    }

    /// The element-wise sum of `x` over every rank of the job (see
    /// [`Op::AllReduce`]).
    pub fn all_reduce(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::AllReduce, &[x])
    }

    /// Every rank's columns side by side: `x` holds this rank's columns
    /// `offset ..` of a result `total` columns wide (see
    /// [`Op::AllGather`]).
    pub fn all_gather(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        offset: usize,
        total: usize,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::AllGather { offset, total }, &[x])
    }

    /// Index of the largest value along the last axis.
    pub fn argmax(&mut self, name: impl Into<String>, x: ValueId) -> Result<ValueId, GraphError> {
        self.node(name, Op::Argmax, &[x])
    }

    /// Rows `rows` (u32 indices) of the matrix `x`.
    pub fn gather(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        rows: ValueId,
    ) -> Result<ValueId, GraphError> {
        self.node(name, Op::Gather, &[x, rows])
    }

    /// The `k` largest values along the last axis and their indices
    /// (`(values, indices)`, largest first).
    pub fn top_k(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        k: usize,
    ) -> Result<(ValueId, ValueId), GraphError> {
        let outs = self.node_outputs(name, Op::TopK { k }, &[x])?;
        Ok((outs[0], outs[1]))
    }

    /// `x` cut along `axis` into consecutive parts of `sizes`.
    pub fn split(
        &mut self,
        name: impl Into<String>,
        x: ValueId,
        axis: usize,
        sizes: &[usize],
    ) -> Result<Vec<ValueId>, GraphError> {
        let op = Op::Split {
            axis,
            sizes: sizes.to_vec(),
        };
        self.node_outputs(name, op, &[x])
    }
}

/// A constant needs a fixed shape whose size matches its data.
pub(crate) fn check_constant(name: &str, shape: &Shape, len: usize) -> Result<(), GraphError> {
    let err = |reason: String| GraphError::Value {
        value: name.to_owned(),
        reason,
    };
    let (volume, syms) = shape.volume();
    if !syms.is_empty() {
        return Err(err("a constant's shape must be fixed".into()));
    }
    if volume != len {
        return Err(err(format!("shape holds {volume} values, data has {len}")));
    }
    Ok(())
}

/// The values an attention op centers its cache rows on (see
/// [`KvCentered`]): `k_mean`, `v_mean` (`f32[kv_heads * head_dim]`) and
/// the `rope` table (`f32[positions, 2 * head_dim]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionCentering {
    /// Key offsets, before RoPE.
    pub k_mean: ValueId,
    /// Value offsets.
    pub v_mean: ValueId,
    /// RoPE's cosines and sines.
    pub rope: ValueId,
    /// The RoPE pair style.
    pub how: KvCentered,
}

impl AttentionCentering {
    fn inputs(&self) -> [ValueId; 3] {
        [self.k_mean, self.v_mean, self.rope]
    }
}
