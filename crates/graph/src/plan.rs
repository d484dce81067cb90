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
//! arena; u32 intermediates (argmax results) keep their own buffers and are
//! listed apart.

use std::collections::HashMap;

use crate::error::GraphError;
use crate::ir::{Def, Epilogue, Graph, Node, Op, ValueId};
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
    /// u32 intermediates, each in its own buffer: bytes by value.
    pub separate: HashMap<ValueId, usize>,
    /// Sum of every intermediate's (aligned) size, u32 ones included.
    pub total_bytes: usize,
}

impl MemoryPlan {
    /// Bytes graph mode holds for intermediates: the arena plus the
    /// separate u32 buffers.
    pub fn planned_bytes(&self) -> usize {
        self.arena_bytes + self.separate.values().sum::<usize>()
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
        Op::Rope { .. } | Op::Softmax | Op::Unary(_) | Op::Reshape(_) => Some(0),
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

/// Best-fit allocator over `[0, end)` with a sorted, merged free list.
#[derive(Default)]
struct Arena {
    free: Vec<(usize, usize)>,
    end: usize,
}

impl Arena {
    fn alloc(&mut self, size: usize) -> usize {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &(_, len))| len >= size)
            .min_by_key(|(_, &(_, len))| len)
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let (at, len) = self.free[i];
                if len == size {
                    self.free.remove(i);
                } else {
                    self.free[i] = (at + size, len - size);
                }
                at
            }
            None => {
                // Grow: reuse a free extent that ends at the top.
                if let Some(&(at, len)) = self.free.last() {
                    if at + len == self.end {
                        self.free.pop();
                        self.end = at + size;
                        return at;
                    }
                }
                let at = self.end;
                self.end += size;
                at
            }
        }
    }

    fn release(&mut self, at: usize, size: usize) {
        let i = self.free.partition_point(|&(o, _)| o < at);
        self.free.insert(i, (at, size));
        // Merge with the next, then with the previous.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }
}

impl Graph {
    /// Plans the intermediates' memory with every symbol bound by name
    /// (all of them must be).
    pub fn plan_memory(&self, sizes: &[(&str, usize)]) -> Result<MemoryPlan, GraphError> {
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
        let mut arena = Arena::default();
        let mut slots: HashMap<ValueId, Slot> = HashMap::new();
        let mut separate = HashMap::new();
        // Inputs whose extent an output took over (not freed again).
        let mut handed_over: Vec<ValueId> = Vec::new();
        let mut total = 0usize;
        for (n, node) in self.nodes.iter().enumerate() {
            // An in-place output takes its input's extent when this node is
            // the input's last reader and reads it only once.
            let in_place = in_place_input(self, node)
                .map(|i| node.inputs[i])
                .filter(|v| {
                    slots.get(v).is_some_and(|s| s.last == n)
                        && node.inputs.iter().filter(|&u| u == v).count() == 1
                });
            for &v in &node.outputs {
                let bytes = bytes_of(v)?;
                let size = align(bytes.max(1));
                total += size;
                let last = last.get(&v).copied().unwrap_or(n);
                if self.values[v.0 as usize].dtype != DType::F32 {
                    separate.insert(v, size);
                    continue;
                }
                let (offset, in_place_of) = match in_place {
                    Some(input) => {
                        handed_over.push(input);
                        (slots[&input].offset, Some(input))
                    }
                    None => (arena.alloc(size), None),
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
                arena.release(s.offset, align(s.bytes.max(1)));
            }
        }
        Ok(MemoryPlan {
            slots,
            arena_bytes: arena.end,
            separate,
            total_bytes: total,
        })
    }
}
