//! Graph passes: named units that rewrite a graph and report what they
//! changed. [`run_passes`] runs a list in the order given and verifies the
//! graph after each, so a pass that breaks an invariant is caught at the
//! pass, not three passes later.
//!
//! So far: [`ConstantFolding`], [`DeadCodeElimination`],
//! [`CommonSubexpressions`], [`ElementwiseFusion`] and
//! [`MatMulEpilogues`]. All keep the graph's
//! interface (inputs, weights, outputs) as it is.

use std::collections::HashMap;

use crate::error::GraphError;
use crate::ir::{Binary, Def, Graph, Node, NodeId, Op, Program, Step, ValueId, ValueInfo};

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
/// subexpressions, dead code, matmul epilogues, elementwise fusion (folding
/// and CSE first so the later passes see the fewest nodes; epilogues before
/// fusion so a residual add goes to its matmul rather than into a chain).
pub fn default_passes() -> [&'static dyn Pass; 5] {
    [
        &ConstantFolding,
        &CommonSubexpressions,
        &DeadCodeElimination,
        &MatMulEpilogues,
        &ElementwiseFusion,
    ]
}

/// Runs `passes` in order on `graph`, verifying after each one.
pub fn run_passes(graph: &mut Graph, passes: &[&dyn Pass]) -> Result<Vec<PassStats>, GraphError> {
    let mut stats = Vec::with_capacity(passes.len());
    for pass in passes {
        let before = (graph.nodes.len(), graph.values.len());
        let detail = pass.run(graph)?;
        graph.verify().map_err(|e| GraphError::Graph {
            graph: graph.name.clone(),
            reason: format!("pass {} left an invalid graph: {e}", pass.name()),
        })?;
        stats.push(PassStats {
            pass: pass.name(),
            nodes: (before.0, graph.nodes.len()),
            values: (before.1, graph.values.len()),
            detail,
        });
    }
    Ok(stats)
}

impl Graph {
    /// Rebuilds the graph keeping the nodes marked in `keep` (in order),
    /// with every read of a value in `replace` redirected to its
    /// replacement first. Inputs, weights and constants stay; values of
    /// dropped nodes go; ids are renumbered densely.
    pub(crate) fn compact(&mut self, keep: &[bool], replace: &HashMap<ValueId, ValueId>) {
        let resolve = |v: ValueId| *replace.get(&v).unwrap_or(&v);
        let mut new_id: HashMap<ValueId, ValueId> = HashMap::new();
        let mut values: Vec<ValueInfo> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        for (i, info) in self.values.iter().enumerate() {
            if !matches!(info.def, Def::Node { .. }) {
                new_id.insert(ValueId(i as u32), ValueId(values.len() as u32));
                values.push(info.clone());
            }
        }
        for (n, node) in self.nodes.iter().enumerate() {
            if !keep[n] {
                continue;
            }
            let id = NodeId(nodes.len() as u32);
            let outputs = node
                .outputs
                .iter()
                .enumerate()
                .map(|(index, &v)| {
                    let fresh = ValueId(values.len() as u32);
                    let mut info = self.values[v.0 as usize].clone();
                    info.def = Def::Node { node: id, index };
                    values.push(info);
                    new_id.insert(v, fresh);
                    fresh
                })
                .collect();
            let inputs = node
                .inputs
                .iter()
                .map(|&v| new_id.get(&resolve(v)).copied().unwrap_or(v))
                .collect();
            nodes.push(Node {
                name: node.name.clone(),
                op: node.op.clone(),
                inputs,
                outputs,
            });
        }
        self.outputs = self
            .outputs
            .iter()
            .map(|&v| new_id.get(&resolve(v)).copied().unwrap_or(v))
            .collect();
        self.values = values;
        self.nodes = nodes;
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
/// swiglu) into single [`Op::Fused`] nodes: a producer joins its consumer's
/// group when the consumer is its only reader, it is not a graph output,
/// and it has the consumer's output shape. The fused node runs in one
/// launch and keeps the intermediates in cache-sized chunks.
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
        _ => None,
    }
}

impl Pass for ElementwiseFusion {
    fn name(&self) -> &'static str {
        "elementwise-fusion"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let fusable = |op: &Op| as_step(op, &[0, 0]).is_some();
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
/// matmul(x, W))` (either order) becomes one [`Op::MatMulAdd`] launch when
/// the matmul's output has no other reader and is not a graph output. The
/// intermediate disappears and the sum is the same single f32 addition.
#[derive(Debug, Default, Clone, Copy)]
pub struct MatMulEpilogues;

impl Pass for MatMulEpilogues {
    fn name(&self) -> &'static str {
        "matmul-epilogues"
    }

    fn run(&self, graph: &mut Graph) -> Result<String, GraphError> {
        let uses = graph.use_counts();
        let mut keep = vec![true; graph.nodes.len()];
        let mut folded = 0;
        for n in 0..graph.nodes.len() {
            if graph.nodes[n].op != Op::Add {
                continue;
            }
            let (a, b) = (graph.nodes[n].inputs[0], graph.nodes[n].inputs[1]);
            let out_shape = graph.values[graph.nodes[n].outputs[0].0 as usize]
                .shape
                .clone();
            let producer = |v: ValueId| match graph.values[v.0 as usize].def {
                Def::Node { node, .. } => Some(node.0 as usize),
                _ => None,
            };
            // The operand that is a matmul result only this add reads.
            let pick = [(b, a), (a, b)].into_iter().find_map(|(mm, res)| {
                let p = producer(mm)?;
                let fits = keep[p]
                    && graph.nodes[p].op == Op::MatMul
                    && uses[mm.0 as usize] == 1
                    && graph.values[res.0 as usize].shape == out_shape
                    && graph.values[mm.0 as usize].shape == out_shape;
                fits.then_some((p, res))
            });
            let Some((p, residual)) = pick else {
                continue;
            };
            let (x, w) = (graph.nodes[p].inputs[0], graph.nodes[p].inputs[1]);
            let name = format!("{}+{}", graph.nodes[p].name, graph.nodes[n].name);
            let node = &mut graph.nodes[n];
            node.op = Op::MatMulAdd;
            node.inputs = vec![x, w, residual];
            node.name = name;
            keep[p] = false;
            folded += 1;
        }
        if folded > 0 {
            graph.compact(&keep, &HashMap::new());
        }
        Ok(format!(
            "folded {folded} residual additions into their matmuls"
        ))
    }
}
