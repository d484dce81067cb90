//! The one error type of the graph crate: every message names the node or
//! value it is about, so a malformed model file points at its bad layer.

use thiserror::Error;

/// Why a graph (or one node being added to it) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GraphError {
    /// A node's inputs, attributes or recorded outputs do not fit its op.
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        /// The node's name.
        node: String,
        /// The op's name.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A value is defined twice, never, or refers to what does not exist.
    #[error("value '{value}': {reason}")]
    Value {
        /// The value's name.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Something about the graph as a whole (outputs, symbols).
    #[error("graph '{graph}': {reason}")]
    Graph {
        /// The graph's name.
        graph: String,
        /// What is wrong.
        reason: String,
    },
}
