//! exodus-graph: the compilation rung. A model is written once as a graph
//! (through [`GraphBuilder`], which reads like the model code it serves),
//! checked by [`Graph::verify`], printed by [`Graph::dump`], and run by a
//! [`Session`]: eagerly ([`Session::run_eager`], one runtime launch per
//! node with exodus-kernels' kernels) or in graph mode
//! ([`Session::run_graph`]: compiled once per binding of the symbols,
//! captured and replayed as one submission). Passes so far: constant
//! folding, dead-code and common-subexpression elimination and elementwise
//! fusion ([`run_passes`] with statistics), and memory planning
//! ([`Graph::plan_memory`]: one arena, offsets reused by lifetime). Matmul
//! epilogues, norm fusion, stream assignment, running the memory plan, and
//! attention over the paged KV cache come next.
//!
//! # The IR in one paragraph
//!
//! A [`Graph`] holds *values* and *nodes*. A value has an element type
//! ([`DType`]: f32, u32, or weights stored in an exodus-numerics format)
//! and a [`Shape`] whose dims are fixed sizes or named symbols such as
//! `tokens` ([`Dim`]), so one graph serves every prompt length. A value is
//! defined exactly once: as a graph input, a weight, a constant, or an
//! output of one node. A node applies one typed [`Op`] (with its
//! attributes) to earlier values, so node order is a topological order and
//! the graph is acyclic by construction. The builder infers every output
//! type and shape when a node is added and refuses a mismatch at that call;
//! the verifier re-checks a graph that did not come from the builder.

mod args;
pub mod bench;
mod builder;
mod collective;
mod dump;
mod error;
pub mod examples;
mod exec;
mod fused;
mod infer;
mod ir;
mod linear;
mod lower;
mod passes;
mod plan;
mod streams;
mod types;
mod verify;

pub use builder::{AttentionCentering, GraphBuilder};
pub use collective::Collective;
pub use error::GraphError;
pub use exec::{ExecError, Session, Tensor};
/// The KV cache types a graph's state values use (from exodus-kernels).
pub use exodus_kernels::attention::{rope_table, KvFormat, KvLayout, KvPart, PagedKvCache};
/// The RoPE pair layouts (from exodus-kernels), as [`rope_table`] takes them.
pub use exodus_kernels::ops::RopeStyle;
pub use ir::{
    Binary, Def, Epilogue, Graph, KvCentered, Linear, Node, NodeId, Op, Program, Step, Unary,
    ValueId, ValueInfo,
};
pub use passes::{
    default_passes, run_passes, CommonSubexpressions, ConstantFolding, DeadCodeElimination,
    ElementwiseFusion, MatMulEpilogues, MatMulGroups, NormPrologue, Pass, PassStats,
    SwiGluEpilogue,
};
pub use plan::{MemoryPlan, Slot, ALIGN};
pub use streams::{Order, StreamPlan};
pub use types::{DType, Dim, Shape, Sym};
