//! [`Graph::verify`]: the checks a graph must pass before anything runs it.
//! A graph from the builder passes by construction; one from a file or
//! written by hand may not, and every refusal names the node or value.

use crate::builder::check_constant;
use crate::error::GraphError;
use crate::infer::infer;
use crate::ir::{Def, Graph, NodeId};

impl Graph {
    /// Checks that:
    /// - every symbol a shape uses is declared;
    /// - every value is defined exactly once (input, weight, constant of
    ///   the right size, or the output of the one node that lists it);
    /// - every node reads only values defined before it (so the graph is
    ///   acyclic and its node order runs) and its recorded outputs are the
    ///   ones its op's type and shape rules give;
    /// - the graph returns at least one existing value.
    pub fn verify(&self) -> Result<(), GraphError> {
        let graph_err = |reason: String| GraphError::Graph {
            graph: self.name.clone(),
            reason,
        };
        for (id, info) in self.values.iter().enumerate() {
            let value_err = |reason: String| GraphError::Value {
                value: info.name.clone(),
                reason,
            };
            if let Some(s) = info
                .shape
                .symbols()
                .find(|s| s.0 as usize >= self.symbols.len())
            {
                return Err(value_err(format!(
                    "uses symbol {} that is not declared",
                    s.0
                )));
            }
            match &info.def {
                Def::Input | Def::Weight | Def::Removed => {}
                Def::State => {
                    if !matches!(info.dtype, crate::types::DType::KvCache(_)) {
                        return Err(value_err(format!(
                            "state of type {} (only KV caches are)",
                            info.dtype
                        )));
                    }
                    if !matches!(info.shape.0[..], [crate::types::Dim::Fixed(_)]) {
                        return Err(value_err("a KV cache's shape is (blocks,), fixed".into()));
                    }
                }
                Def::Const(data) => check_constant(&info.name, &info.shape, data.len())?,
                Def::Node { node, index } => {
                    let listed = self
                        .nodes
                        .get(node.0 as usize)
                        .and_then(|n| n.outputs.get(*index));
                    if listed.map(|v| v.0 as usize) != Some(id) {
                        return Err(value_err(format!(
                            "claims to be output {index} of node {}, which does not list it",
                            node.0
                        )));
                    }
                }
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let err = |reason: String| GraphError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                reason,
            };
            let mut operands = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                let info = self
                    .value(v)
                    .ok_or_else(|| err(format!("input {} does not exist", v.0)))?;
                if info.def == Def::Removed {
                    return Err(err(format!(
                        "reads value {} ({}), which a pass removed",
                        v.0, info.name
                    )));
                }
                if let Def::Node { node: producer, .. } = info.def {
                    if producer.0 as usize >= i {
                        return Err(err(format!(
                            "reads '{}' before node {} defines it (a cycle or a node out of order)",
                            info.name, producer.0
                        )));
                    }
                }
                operands.push((&info.dtype, &info.shape));
            }
            let want = infer(&node.op, &operands, &self.symbols).map_err(err)?;
            if want.len() != node.outputs.len() {
                return Err(err(format!(
                    "has {} outputs, its op gives {}",
                    node.outputs.len(),
                    want.len()
                )));
            }
            for (index, (&v, (dtype, shape))) in node.outputs.iter().zip(&want).enumerate() {
                let info = self
                    .value(v)
                    .ok_or_else(|| err(format!("output {} does not exist", v.0)))?;
                if info.def
                    != (Def::Node {
                        node: NodeId(i as u32),
                        index,
                    })
                {
                    return Err(err(format!(
                        "output '{}' is defined elsewhere ({:?})",
                        info.name, info.def
                    )));
                }
                if (&info.dtype, &info.shape) != (dtype, shape) {
                    return Err(err(format!(
                        "output '{}' is recorded as {}{}, the op gives {}{}",
                        info.name,
                        info.dtype,
                        info.shape.display(&self.symbols),
                        dtype,
                        shape.display(&self.symbols)
                    )));
                }
            }
        }
        if self.outputs.is_empty() {
            return Err(graph_err("returns nothing".into()));
        }
        if let Some(v) = self.outputs.iter().find(|v| self.value(**v).is_none()) {
            return Err(graph_err(format!("output {} does not exist", v.0)));
        }
        Ok(())
    }
}
