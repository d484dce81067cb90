//! Graph passes: named units that rewrite a graph and report what they
//! changed. [`run_passes`] runs a list in the order given and verifies the
//! graph after each, so a pass that breaks an invariant is caught at the
//! pass, not three passes later.
//!
//! So far: [`ConstantFolding`], [`DeadCodeElimination`],
//! [`CommonSubexpressions`], [`MatMulEpilogues`], [`MatMulGroups`],
//! [`SwiGluEpilogue`], [`NormPrologue`] and [`ElementwiseFusion`]. All keep
//! the graph's interface (inputs, weights, outputs) as it is.

use std::collections::HashMap;

use crate::error::GraphError;
use crate::ir::{Binary, Def, Epilogue, Graph, Linear, Node, NodeId, Op, Program, Step, ValueId};

/// What one pass changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassStats {
    /// The pass.
    pub pass: &'static str,
    /// Nodes before and after.
    pub nodes: (usize, usize),
    /// Values before and after.
    pub values: (usize, usize),
    /// A one-line account of the changes.
    pub detail: String,
}

/// A graph rewrite.
pub trait Pass {
    /// The pass's name, as statistics and logs print it.
    fn name(&self) -> &'static str;
    /// Rewrites `graph`, returning a one-line account of what changed.
    fn run(&self, graph: &mut Graph) -> Result<String, GraphError>;
}

/// The default pipeline, in its stated order: constant folding, common
/// subexpressions, dead code, matmul epilogues, matmul groups, the SwiGLU
/// epilogue, the norm prologue, elementwise fusion. Folding and CSE come
/// first so the later passes see the fewest nodes; a residual add goes to
/// its matmul before the matmuls that share an x are grouped (a group has
/// no residual); SwiGLU needs the gate/up group; the norm folds into
/// whatever linear layer reads it last; elementwise fusion takes what is
/// left, so an add or SwiGLU goes to its matmul rather than into a chain.
pub fn default_passes() -> [&'static dyn Pass; 8] {
    [
        &ConstantFolding,
        &CommonSubexpressions,
        &DeadCodeElimination,
        &MatMulEpilogues,
        &MatMulGroups,
        &SwiGluEpilogue,
        &NormPrologue,
        &ElementwiseFusion,
    ]
}

/// The layer a node computes, if it is a linear one: a plain matmul as a
/// one-weight [`Linear`].
fn linear_of(op: &Op) -> Option<Linear> {
    match op {
        Op::MatMul => Some(Linear::MATMUL),
        Op::Linear(l) => Some(*l),
        _ => None,
    }
}

/// The node that defines `v`, if a node does.
fn producer(graph: &Graph, v: ValueId) -> Option<usize> {
    match graph.values[v.0 as usize].def {
        Def::Node { node, .. } => Some(node.0 as usize),
        _ => None,
    }
}

/// Runs `passes` in order on `graph`, verifying after each one.
pub fn run_passes(graph: &mut Graph, passes: &[&dyn Pass]) -> Result<Vec<PassStats>, GraphError> {
    let mut stats = Vec::with_capacity(passes.len());
    for pass in passes {
        let before = (graph.nodes.len(), graph.live_values());
        let detail = pass.run(graph)?;
        graph.verify().map_err(|e| GraphError::Graph {
            graph: graph.name.clone(),
            reason: format!("pass {} left an invalid graph: {e}", pass.name()),
        })?;
        stats.push(PassStats {
            pass: pass.name(),
            nodes: (before.0, graph.nodes.len()),
            values: (before.1, graph.live_values()),
            detail,
        });
    }
    Ok(stats)
}

impl Graph {
    /// Keeps the nodes marked in `keep` (in order), with every read of a
    /// value in `replace` redirected to its replacement first. Every value
    /// keeps its id: the outputs of kept nodes point at their node's new
    /// index, values no kept node defines any more become
    /// [`Def::Removed`], and inputs, weights and constants stay as they
    /// are.
    pub(crate) fn compact(&mut self, keep: &[bool], replace: &HashMap<ValueId, ValueId>) {
        let resolve = |v: ValueId| *replace.get(&v).unwrap_or(&v);
        for info in &mut self.values {
            if matches!(info.def, Def::Node { .. }) {
                info.def = Def::Removed;
            }
        }
        let nodes = std::mem::take(&mut self.nodes);
        for (node, _) in nodes.into_iter().zip(keep).filter(|(_, k)| **k) {
            let id = NodeId(self.nodes.len() as u32);
            for (index, &v) in node.outputs.iter().enumerate() {
                self.values[v.0 as usize].def = Def::Node { node: id, index };
            }
            let inputs = node.inputs.iter().map(|&v| resolve(v)).collect();
            self.nodes.push(Node { inputs, ..node });
        }
        for v in &mut self.outputs {
            *v = resolve(*v);
        }
    }

    /// Values that are not [`Def::Removed`].
    pub fn live_values(&self) -> usize {
        self.values.iter().filter(|i| i.def != Def::Removed).count()
    }
}

/// Removes nodes none of whose outputs reach a graph output.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeadCodeElimination;

impl Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dead-code-elimination"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let mut live = vec![false; graph.values.len()];
        for v in &graph.outputs {
            if let Some(l) = live.get_mut(v.0 as usize) {
                *l = true;
            }
        }
        let mut keep = vec![false; graph.nodes.len()];
        for (n, node) in graph.nodes.iter().enumerate().rev() {
            if node.op.has_side_effects() || node.outputs.iter().any(|v| live[v.0 as usize]) {
                keep[n] = true;
                for v in &node.inputs {
                    live[v.0 as usize] = true;
                }
            }
        }
        let removed = keep.iter().filter(|k| !**k).count();
        if removed > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!(
            "removed {removed} nodes whose results nothing reads"
        ))
    }
}

/// Merges nodes that apply the same op (same attributes) to the same
/// inputs: later ones read the first one's outputs instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommonSubexpressions;

impl Pass for CommonSubexpressions {
    fn name(&self) -> &'static str {
        "common-subexpression-elimination"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let mut replace: HashMap<ValueId, ValueId> = HashMap::new();
        // Key: the op with its attributes (Debug prints every field) and
        // the inputs after earlier merges.
        let mut seen: HashMap<(String, Vec<ValueId>), usize> = HashMap::new();
        let mut keep = vec![true; graph.nodes.len()];
        for (n, node) in graph.nodes.iter().enumerate() {
            let inputs: Vec<ValueId> = node
                .inputs
                .iter()
                .map(|v| *replace.get(v).unwrap_or(v))
                .collect();
            if node.op.has_side_effects() {
                continue;
            }
            let key = (format!("{:?}", node.op), inputs);
            match seen.get(&key) {
                Some(&first) => {
                    keep[n] = false;
                    for (&mine, &theirs) in node.outputs.iter().zip(&graph.nodes[first].outputs) {
                        replace.insert(mine, theirs);
                    }
                }
                None => {
                    seen.insert(key, n);
                }
            }
        }
        let merged = keep.iter().filter(|k| !**k).count();
        if merged > 0 {
            graph.compact(&keep, &replace);
        }
        Ok(format!("merged {merged} nodes into identical earlier ones"))
    }
}

/// Folds chains of elementwise nodes (add, sub, mul, div, unary functions,
/// swiglu) and the row norms among them (rms_norm, layer_norm: a norm and
/// the elementwise ops that follow it, as a decomposed LayerNorm's scale
/// and shift are) into single [`Op::Fused`] nodes: a producer joins its
/// consumer's group when the consumer is its only reader, it is not a graph
/// output, and it has the consumer's output shape. The fused node runs in
/// one launch and keeps the intermediates in cache-sized chunks (whole rows
/// when it normalizes).
#[derive(Debug, Default, Clone, Copy)]
pub struct ElementwiseFusion;

/// The step an elementwise op becomes, with its operand registers.
fn as_step(op: &Op, regs: &[usize]) -> Option<Step> {
    let bin = |b: Binary| Some(Step::Binary(b, regs[0], regs[1]));
    match op {
        Op::Add => bin(Binary::Add),
        Op::Sub => bin(Binary::Sub),
        Op::Mul => bin(Binary::Mul),
        Op::Div => bin(Binary::Div),
        Op::SwiGlu => bin(Binary::SwiGlu),
        Op::Unary(u) => Some(Step::Unary(*u, regs[0])),
        Op::RmsNorm { eps } => Some(Step::Norm {
            layer: false,
            x: regs[0],
            weight: regs[1],
            bias: None,
            eps: *eps,
        }),
        Op::LayerNorm { eps } => Some(Step::Norm {
            layer: true,
            x: regs[0],
            weight: regs[1],
            bias: Some(regs[2]),
            eps: *eps,
        }),
        _ => None,
    }
}

impl Pass for ElementwiseFusion {
    fn name(&self) -> &'static str {
        "elementwise-fusion"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let fusable = |op: &Op| as_step(op, &[0, 0, 0]).is_some();
        let uses = graph.use_counts();
        // group[n]: the root (last node) of node n's group.
        let mut group: Vec<usize> = (0..graph.nodes.len()).collect();
        for (n, node) in graph.nodes.iter().enumerate() {
            if !fusable(&node.op) {
                continue;
            }
            let out_shape = &graph.values[node.outputs[0].0 as usize].shape;
            for v in &node.inputs {
                let info = &graph.values[v.0 as usize];
                if let Def::Node { node: p, .. } = info.def {
                    let p = p.0 as usize;
                    let joins = fusable(&graph.nodes[p].op)
                        && uses[v.0 as usize] == 1
                        && info.shape == *out_shape
                        && group[p] == p;
                    if joins {
                        for g in group.iter_mut() {
                            if *g == p {
                                *g = n;
                            }
                        }
                    }
                }
            }
        }
        let mut keep = vec![true; graph.nodes.len()];
        let mut fused_groups = 0;
        let mut fused_nodes = 0;
        for root in 0..graph.nodes.len() {
            let members: Vec<usize> = (0..=root).filter(|&m| group[m] == root).collect();
            if members.len() < 2 {
                continue;
            }
            let mut reg: HashMap<ValueId, usize> = HashMap::new();
            let mut externals: Vec<ValueId> = Vec::new();
            let inside: Vec<ValueId> = members.iter().map(|&m| graph.nodes[m].outputs[0]).collect();
            for &m in &members {
                for &v in &graph.nodes[m].inputs {
                    if !inside.contains(&v) && !reg.contains_key(&v) {
                        reg.insert(v, externals.len());
                        externals.push(v);
                    }
                }
            }
            let mut steps = Vec::with_capacity(members.len());
            for &m in &members {
                let node = &graph.nodes[m];
                let regs: Vec<usize> = node.inputs.iter().map(|v| reg[v]).collect();
                let step = as_step(&node.op, &regs).ok_or_else(|| GraphError::Node {
                    node: node.name.clone(),
                    op: node.op.name(),
                    reason: "fusion grouped a node that is not elementwise".into(),
                })?;
                steps.push(step);
                reg.insert(node.outputs[0], externals.len() + steps.len() - 1);
            }
            for &m in &members[..members.len() - 1] {
                keep[m] = false;
            }
            let name = members
                .iter()
                .map(|&m| graph.nodes[m].name.as_str())
                .collect::<Vec<_>>()
                .join("+");
            let root_node = &mut graph.nodes[root];
            root_node.name = name;
            root_node.op = Op::Fused(Program { steps });
            root_node.inputs = externals;
            fused_groups += 1;
            fused_nodes += members.len();
        }
        if fused_groups > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!(
            "fused {fused_nodes} elementwise nodes into {fused_groups}"
        ))
    }
}

/// Computes nodes whose inputs are all constants once, at compile time,
/// and replaces them by constants. It runs them with the executor (the
/// same kernels), so the folded values are bit for bit what a run would
/// compute. Nodes with a `u32` result are left alone (constants are f32).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConstantFolding;

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant-folding"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        use crate::builder::GraphBuilder;
        use crate::exec::{Session, Tensor};
        use crate::types::DType;
        let mut keep = vec![true; graph.nodes.len()];
        for (n, kept) in keep.iter_mut().enumerate() {
            let node = &graph.nodes[n];
            let out = node.outputs[0];
            let consts: Option<Vec<Vec<f32>>> = node
                .inputs
                .iter()
                .map(|v| match &graph.values[v.0 as usize].def {
                    Def::Const(data) => Some(data.clone()),
                    _ => None,
                })
                .collect();
            let (Some(consts), DType::F32) = (consts, graph.values[out.0 as usize].dtype) else {
                continue;
            };
            // The node alone, its constant operands as inputs.
            let mut b = GraphBuilder::new("fold");
            let ins: Vec<ValueId> = node
                .inputs
                .iter()
                .map(|v| {
                    let info = &graph.values[v.0 as usize];
                    b.input(info.name.clone(), info.dtype, info.shape.clone())
                })
                .collect();
            let fail = |reason: String| GraphError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                reason: format!("constant folding: {reason}"),
            };
            let y = b.node(node.name.clone(), node.op.clone(), &ins)?;
            b.output(y)?;
            let session = Session::new(b.finish()?, []).map_err(|e| fail(e.to_string()))?;
            let feed: Vec<(ValueId, Tensor)> = ins
                .into_iter()
                .zip(consts)
                .map(|(v, d)| (v, Tensor::F32(d)))
                .collect();
            let result = session
                .run_eager(&[], &feed)
                .map_err(|e| fail(e.to_string()))?;
            let Some(Tensor::F32(data)) = result.into_iter().next() else {
                return Err(fail("no f32 result".into()));
            };
            graph.values[out.0 as usize].def = Def::Const(data);
            *kept = false;
        }
        let folded = keep.iter().filter(|k| !**k).count();
        if folded > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!("folded {folded} nodes into constants"))
    }
}

/// Folds a residual addition into the matmul that feeds it: `add(r,
/// matmul(x, W))` (either order) becomes one [`Op::Linear`] launch with a
/// residual epilogue when the matmul's output has no other reader and is
/// not a graph output. The intermediate disappears and the sum is the same
/// single f32 addition.
#[derive(Debug, Default, Clone, Copy)]
pub struct MatMulEpilogues;

impl Pass for MatMulEpilogues {
    fn name(&self) -> &'static str {
        "matmul-epilogues"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let uses = graph.use_counts();
        let mut keep = vec![true; graph.nodes.len()];
        let (mut folded, mut biases) = (0, 0);
        for n in 0..graph.nodes.len() {
            if graph.nodes[n].op != Op::Add {
                continue;
            }
            let (a, b) = (graph.nodes[n].inputs[0], graph.nodes[n].inputs[1]);
            let out_shape = graph.values[graph.nodes[n].outputs[0].0 as usize]
                .shape
                .clone();
            // The operand that is the result of a one-weight layer with no
            // epilogue that only this add reads; the other operand is a
            // residual of the output's shape, or a bias of its last axis
            // (only onto a layer without one yet).
            let pick = [(b, a), (a, b)].into_iter().find_map(|(mm, other)| {
                let p = producer(graph, mm)?;
                let l = linear_of(&graph.nodes[p].op)?;
                let other_shape = &graph.values[other.0 as usize].shape;
                let as_bias = !l.bias
                    && other_shape.rank() == 1
                    && other_shape.last() == out_shape.last()
                    && out_shape.rank() == 2;
                let fits = keep[p]
                    && l.weights == 1
                    && l.epilogue == Epilogue::None
                    && uses[mm.0 as usize] == 1
                    && graph.values[mm.0 as usize].shape == out_shape
                    && (*other_shape == out_shape || as_bias);
                fits.then_some((p, l, other, *other_shape != out_shape))
            });
            let Some((p, l, other, is_bias)) = pick else {
                continue;
            };
            let mut inputs = graph.nodes[p].inputs.clone();
            inputs.push(other);
            let name = format!("{}+{}", graph.nodes[p].name, graph.nodes[n].name);
            let node = &mut graph.nodes[n];
            node.op = Op::Linear(if is_bias {
                Linear { bias: true, ..l }
            } else {
                Linear {
                    epilogue: Epilogue::Residual,
                    ..l
                }
            });
            node.inputs = inputs;
            node.name = name;
            keep[p] = false;
            folded += 1;
            biases += usize::from(is_bias);
        }
        if folded > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!(
            "folded {biases} bias and {} residual additions into their matmuls",
            folded - biases
        ))
    }
}

/// Groups the plain matmuls (or matmuls with a bias) that read the same x
/// with weights of one type (a layer's q/k/v projections, its gate and up
/// projections) into one
/// [`Op::Linear`] node with an output per weight, placed where the first
/// of them was. In the decode regime the group runs as one job: x is
/// quantized once and one fork/join covers every output.
#[derive(Debug, Default, Clone, Copy)]
pub struct MatMulGroups;

impl Pass for MatMulGroups {
    fn name(&self) -> &'static str {
        "matmul-groups"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        // One-weight layers without norm or epilogue by (x, weight type,
        // bias or not), in node order.
        let mut groups: Vec<((ValueId, String, bool), Vec<usize>)> = Vec::new();
        for (n, node) in graph.nodes.iter().enumerate() {
            let bias = match linear_of(&node.op) {
                Some(Linear {
                    rms_norm: None,
                    weights: 1,
                    bias,
                    epilogue: Epilogue::None,
                }) => bias,
                _ => continue,
            };
            // Weights and biases must exist before any member (they are
            // weights or constants), so the group can sit at the first.
            if node.inputs[1..]
                .iter()
                .any(|v| producer(graph, *v).is_some())
            {
                continue;
            }
            let w_type = graph.values[node.inputs[1].0 as usize].dtype.to_string();
            let key = (node.inputs[0], w_type, bias);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(n),
                None => groups.push((key, vec![n])),
            }
        }
        let mut keep = vec![true; graph.nodes.len()];
        let (mut made, mut merged) = (0, 0);
        for ((_, _, bias), members) in groups.iter().filter(|(_, m)| m.len() > 1) {
            let first = members[0];
            let mut inputs = vec![graph.nodes[first].inputs[0]];
            let mut biases = Vec::new();
            let mut outputs = Vec::with_capacity(members.len());
            let mut names = Vec::with_capacity(members.len());
            for &m in members {
                inputs.push(graph.nodes[m].inputs[1]);
                if *bias {
                    biases.push(graph.nodes[m].inputs[2]);
                }
                outputs.push(graph.nodes[m].outputs[0]);
                names.push(graph.nodes[m].name.clone());
                keep[m] = m == first;
            }
            inputs.extend(biases);
            let node = &mut graph.nodes[first];
            node.op = Op::Linear(Linear {
                weights: members.len(),
                bias: *bias,
                ..Linear::MATMUL
            });
            node.inputs = inputs;
            node.outputs = outputs;
            node.name = names.join("+");
            made += 1;
            merged += members.len();
        }
        if made > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!("grouped {merged} matmuls into {made} launches"))
    }
}

/// Folds `swiglu(a, b)` into the two-weight group that computes `a` and `b`
/// when nothing else reads them: the group's epilogue becomes SwiGLU and
/// its one output the activation, so the gate and up results never exist
/// as whole tensors.
#[derive(Debug, Default, Clone, Copy)]
pub struct SwiGluEpilogue;

impl Pass for SwiGluEpilogue {
    fn name(&self) -> &'static str {
        "swiglu-epilogue"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let uses = graph.use_counts();
        let mut keep = vec![true; graph.nodes.len()];
        let mut folded = 0;
        for n in 0..graph.nodes.len() {
            if graph.nodes[n].op != Op::SwiGlu {
                continue;
            }
            let (gate, up) = (graph.nodes[n].inputs[0], graph.nodes[n].inputs[1]);
            let Some(p) = producer(graph, gate) else {
                continue;
            };
            let fits = keep[p]
                && gate != up
                && producer(graph, up) == Some(p)
                && uses[gate.0 as usize] == 1
                && uses[up.0 as usize] == 1
                && matches!(graph.nodes[p].op, Op::Linear(l) if l.weights == 2 && !l.bias && l.epilogue == Epilogue::None);
            let Op::Linear(l) = graph.nodes[p].op else {
                continue;
            };
            if !fits {
                continue;
            }
            // Weights in (gate, up) order.
            let first = l.first_weight();
            let weight_of = |v: ValueId| {
                let i = graph.nodes[p].outputs.iter().position(|&o| o == v)?;
                Some(graph.nodes[p].inputs[first + i])
            };
            let (Some(wg), Some(wu)) = (weight_of(gate), weight_of(up)) else {
                continue;
            };
            let act = graph.nodes[n].outputs[0];
            let name = format!("{}+{}", graph.nodes[p].name, graph.nodes[n].name);
            let node = &mut graph.nodes[p];
            node.inputs.truncate(first);
            node.inputs.extend([wg, wu]);
            node.op = Op::Linear(Linear {
                epilogue: Epilogue::SwiGlu,
                ..l
            });
            node.outputs = vec![act];
            node.name = name;
            keep[n] = false;
            folded += 1;
        }
        if folded > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!(
            "folded {folded} swiglu activations into their matmuls"
        ))
    }
}

/// Folds an RMS norm into the linear layer that is its only reader: the
/// layer normalizes its x rows itself (a chunk at a time in the prefill
/// regime), so the normalized tensor never exists whole and the norm costs
/// no launch of its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct NormPrologue;

impl Pass for NormPrologue {
    fn name(&self) -> &'static str {
        "norm-prologue"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let uses = graph.use_counts();
        let mut keep = vec![true; graph.nodes.len()];
        let mut folded = 0;
        for n in 0..graph.nodes.len() {
            let Some(l) = linear_of(&graph.nodes[n].op) else {
                continue;
            };
            let h = graph.nodes[n].inputs[0];
            let Some(p) = producer(graph, h) else {
                continue;
            };
            let Op::RmsNorm { eps } = graph.nodes[p].op else {
                continue;
            };
            if l.rms_norm.is_some() || !keep[p] || uses[h.0 as usize] != 1 {
                continue;
            }
            let (x, w) = (graph.nodes[p].inputs[0], graph.nodes[p].inputs[1]);
            let name = format!("{}+{}", graph.nodes[p].name, graph.nodes[n].name);
            let node = &mut graph.nodes[n];
            let mut inputs = vec![x, w];
            inputs.extend_from_slice(&node.inputs[1..]);
            node.inputs = inputs;
            node.op = Op::Linear(Linear {
                rms_norm: Some(eps),
                ..l
            });
            node.name = name;
            keep[p] = false;
            folded += 1;
        }
        if folded > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!("folded {folded} rms norms into their matmuls"))
    }
}
