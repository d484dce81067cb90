//! Memory planning: for one binding of the symbols (a shape bucket), give
//! every intermediate value an offset in one arena so that values whose
//! lifetimes overlap never share bytes, and report the arena's size (the
//! planned peak) against the sum of all intermediates (what allocating
//! each one separately and never freeing would take).
//!
//! A value lives from the node that defines it to the last node that reads
//! it (graph outputs to the end). Nodes are visited in order; a node's
//! outputs are placed while its inputs are still live, then the values it
//! read for the last time are freed. Placement is best-fit over a free list
//! of 64-byte-aligned extents, merged with their neighbours when freed.
//!
//! In place: an op that can compute its output over one of its inputs
//! ([`in_place_input`]: rope, softmax, unary ops, reshape, add/sub/mul/div
//! over their first operand, a fused chain over an input of its shape, a
//! linear layer over its residual) takes that input's extent when this
//! node is the input's last reader and reads it nowhere else; the executor
//! then runs the kernel in place.
//!
//! The plan covers the f32 intermediates, which graph mode keeps in one
//! arena; u32 intermediates (argmax results) and the graph's outputs (the
//! results handed back, alive to the end) keep their own buffers and are
//! listed apart.

use std::collections::HashMap;

use crate::error::GraphError;
use crate::ir::{Def, Epilogue, Graph, Node, Op, ValueId};
use crate::streams::Order;
use crate::types::{DType, Dim};

/// Alignment of every offset (a cache line, and any SIMD vector).
pub const ALIGN: usize = 64;

/// Where one intermediate lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Byte offset in the arena (a multiple of [`ALIGN`]).
    pub offset: usize,
    /// Bytes the value takes (before rounding up to [`ALIGN`]).
    pub bytes: usize,
    /// Index of the node that defines it.
    pub first: usize,
    /// Index of the last node that reads it (`usize::MAX` for a graph
    /// output).
    pub last: usize,
    /// The input whose extent it took over (computed in place).
    pub in_place_of: Option<ValueId>,
}

/// The plan for one shape bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Every f32 intermediate (node-defined value).
    pub slots: HashMap<ValueId, Slot>,
    /// Arena size: the planned peak of the f32 intermediates.
    pub arena_bytes: usize,
    /// Values in their own buffers (u32 intermediates, graph outputs):
    /// bytes by value.
    pub separate: HashMap<ValueId, usize>,
    /// Bytes of the graph's outputs (among `separate`).
    pub output_bytes: usize,
    /// Sum of every node-defined value's (aligned) size, outputs included.
    pub total_bytes: usize,
}

impl MemoryPlan {
    /// Bytes graph mode holds for node-defined values: the arena plus the
    /// separate buffers (graph outputs included).
    pub fn planned_bytes(&self) -> usize {
        self.arena_bytes + self.separate.values().sum::<usize>()
    }

    /// Bytes of intermediates proper: everything planned but the graph's
    /// outputs (the results, which any mode must hand back).
    pub fn intermediate_bytes(&self) -> usize {
        self.planned_bytes() - self.output_bytes
    }
}

/// The input (by position) an op can compute its output over, in place:
/// the kernel reads every element of it before writing the same element.
pub fn in_place_input(graph: &Graph, node: &Node) -> Option<usize> {
    let out = graph.values.get(node.outputs.first()?.0 as usize)?;
    let same_shape = |i: usize| {
        node.inputs
            .get(i)
            .and_then(|v| graph.values.get(v.0 as usize))
            .is_some_and(|info| info.shape == out.shape && info.dtype == DType::F32)
    };
    let candidate = match &node.op {
        Op::Rope { .. } | Op::Softmax | Op::Unary(_) | Op::Reshape(_) | Op::AllReduce => Some(0),
        Op::Add | Op::Sub | Op::Mul | Op::Div => Some(0),
        Op::Fused(_) => (0..node.inputs.len()).find(|&i| same_shape(i)),
        Op::Linear(l) if l.epilogue == Epilogue::Residual => Some(node.inputs.len() - 1),
        _ => None,
    }?;
    (node.outputs.len() == 1 && out.dtype == DType::F32 && same_shape(candidate))
        .then_some(candidate)
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A free piece of the arena and the nodes that must have finished before
/// a node may take it (its last value's producer and readers).
#[derive(Debug, Clone)]
struct Piece {
    at: usize,
    len: usize,
    after: Vec<usize>,
}

/// Best-fit allocator over `[0, end)`. Free pieces are kept apart, each
/// with the nodes it waits for: a node may take only pieces whose nodes
/// all happen before it (adjacent ones merge into one run), so with
/// several streams a reused byte is never touched by two unordered nodes.
#[derive(Default)]
struct Arena {
    /// Sorted by offset, disjoint.
    free: Vec<Piece>,
    end: usize,
}

impl Arena {
    /// An extent of `size` bytes for node `n`.
    fn alloc(&mut self, size: usize, n: usize, order: &Order) -> usize {
        let ready = |p: &Piece| p.after.iter().all(|&t| order.happens_before(t, n));
        // Runs of adjacent ready pieces: (start, len, first piece, pieces).
        let mut runs: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (i, p) in self.free.iter().enumerate() {
            if !ready(p) {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == p.at && r.2 + r.3 == i => {
                    r.1 += p.len;
                    r.3 += 1;
                }
                _ => runs.push((p.at, p.len, i, 1)),
            }
        }
        let best = runs
            .iter()
            .filter(|r| r.1 >= size)
            .min_by_key(|r| r.1)
            .copied();
        let at = match best {
            Some((at, ..)) => at,
            None => match runs.last() {
                // Grow: a ready run that ends at the top is reused.
                Some(&(at, len, ..)) if at + len == self.end => {
                    self.end = at + size;
                    at
                }
                _ => {
                    self.end += size;
                    self.end - size
                }
            },
        };
        self.take(at, size);
        at
    }

    /// Removes `[at, at + size)` from the free pieces.
    fn take(&mut self, at: usize, size: usize) {
        let end = at + size;
        let mut kept = Vec::with_capacity(self.free.len() + 1);
        for p in self.free.drain(..) {
            let p_end = p.at + p.len;
            if p_end <= at || p.at >= end {
                kept.push(p);
                continue;
            }
            if p.at < at {
                kept.push(Piece {
                    at: p.at,
                    len: at - p.at,
                    after: p.after.clone(),
                });
            }
            if p_end > end {
                kept.push(Piece {
                    at: end,
                    len: p_end - end,
                    after: p.after,
                });
            }
        }
        self.free = kept;
    }

    /// Frees `[at, at + size)` once every node of `after` has finished.
    fn release(&mut self, at: usize, size: usize, after: Vec<usize>) {
        let i = self.free.partition_point(|p| p.at < at);
        self.free.insert(
            i,
            Piece {
                at,
                len: size,
                after,
            },
        );
    }
}

impl Graph {
    /// Plans the intermediates' memory with every symbol bound by name
    /// (all of them must be), for the nodes running one after the other.
    pub fn plan_memory(&self, sizes: &[(&str, usize)]) -> Result<MemoryPlan, GraphError> {
        self.plan_memory_ordered(sizes, &self.assign_streams(1).order())
    }

    /// [`Graph::plan_memory`] for nodes spread over streams: bytes a value
    /// leaves are reused only by a node that every reader of the value (and
    /// its producer) happens before in `order`, and an op runs in place only
    /// if every other reader of its input happens before it.
    pub fn plan_memory_ordered(
        &self,
        sizes: &[(&str, usize)],
        order: &Order,
    ) -> Result<MemoryPlan, GraphError> {
        let graph_err = |reason: String| GraphError::Graph {
            graph: self.name.clone(),
            reason,
        };
        let mut bound = vec![None; self.symbols.len()];
        for (name, size) in sizes {
            let at = self
                .symbols
                .iter()
                .position(|s| s == name)
                .ok_or_else(|| graph_err(format!("no symbol '{name}'")))?;
            bound[at] = Some(*size);
        }
        let bytes_of = |v: ValueId| -> Result<usize, GraphError> {
            let info = &self.values[v.0 as usize];
            let elem = match info.dtype {
                DType::F32 | DType::U32 => 4,
                DType::Weights(_) | DType::KvCache(_) => {
                    return Err(graph_err(format!(
                        "'{}' is {}, not an intermediate",
                        info.name, info.dtype
                    )))
                }
            };
            info.shape.0.iter().try_fold(elem, |acc: usize, d| {
                let n = match *d {
                    Dim::Fixed(n) => n,
                    Dim::Sym(s) => bound[s.0 as usize].ok_or_else(|| {
                        graph_err(format!("symbol '{}' not bound", self.symbols[s.0 as usize]))
                    })?,
                };
                Ok(acc.saturating_mul(n))
            })
        };
        let last = self.last_readers();
        // Every node that reads each value.
        let mut readers: HashMap<ValueId, Vec<usize>> = HashMap::new();
        for (n, node) in self.nodes.iter().enumerate() {
            for &v in &node.inputs {
                readers.entry(v).or_default().push(n);
            }
        }
        let mut arena = Arena::default();
        let mut slots: HashMap<ValueId, Slot> = HashMap::new();
        let mut separate = HashMap::new();
        let mut output_bytes = 0;
        // Inputs whose extent an output took over (not freed again).
        let mut handed_over: Vec<ValueId> = Vec::new();
        let mut total = 0usize;
        for (n, node) in self.nodes.iter().enumerate() {
            // An in-place output takes its input's extent when this node is
            // the input's last reader, reads it only once, and every other
            // reader happens before it.
            let in_place = in_place_input(self, node)
                .map(|i| node.inputs[i])
                .filter(|v| {
                    slots.get(v).is_some_and(|s| s.last == n)
                        && node.inputs.iter().filter(|&u| u == v).count() == 1
                        && readers[v]
                            .iter()
                            .all(|&r| r == n || order.happens_before(r, n))
                });
            for &v in &node.outputs {
                let bytes = bytes_of(v)?;
                let size = align(bytes.max(1));
                total += size;
                let last = last.get(&v).copied().unwrap_or(n);
                if self.outputs.contains(&v) {
                    output_bytes += size;
                    separate.insert(v, size);
                    continue;
                }
                if self.values[v.0 as usize].dtype != DType::F32 {
                    separate.insert(v, size);
                    continue;
                }
                let (offset, in_place_of) = match in_place {
                    Some(input) => {
                        handed_over.push(input);
                        (slots[&input].offset, Some(input))
                    }
                    None => (arena.alloc(size, n, order), None),
                };
                slots.insert(
                    v,
                    Slot {
                        offset,
                        bytes,
                        first: n,
                        last,
                        in_place_of,
                    },
                );
            }
            // Values read for the last time here, and outputs nobody reads.
            let done = node.inputs.iter().chain(&node.outputs).filter(|v| {
                matches!(self.values[v.0 as usize].def, Def::Node { .. })
                    && slots.get(v).is_some_and(|s| s.last == n)
                    && !handed_over.contains(v)
            });
            let mut freed: Vec<ValueId> = done.copied().collect();
            freed.sort_unstable();
            freed.dedup();
            for v in freed {
                let s = slots[&v];
                let mut touched = readers.get(&v).cloned().unwrap_or_default();
                touched.push(s.first);
                arena.release(s.offset, align(s.bytes.max(1)), touched);
            }
        }
        Ok(MemoryPlan {
            slots,
            arena_bytes: arena.end,
            separate,
            output_bytes,
            total_bytes: total,
        })
    }
}
