//! Captured launch graphs. A stream in capture mode appends its launches
//! to a [`Graph`] instead of running them; [`Graph::instantiate`] turns it
//! into a [`GraphExec`] (one buffer table, every lock plan precomputed),
//! which `Stream::replay` submits as a single queue entry. Graphs hold
//! their buffers weakly: replay refuses with a typed error when one was
//! freed or resized since capture.
//!
//! A replay takes locks per *segment*, not per launch: a run of launches
//! between host callbacks is one segment, and its buffers are locked once
//! (in buffer-id order, for writing if any launch of the run writes them)
//! before its first launch and released after its last. Host callbacks
//! (launches without buffers) run with nothing held, so a callback may read
//! a buffer of the graph from the host. A task must not reach other
//! buffers of its own graph from the host side: they are held.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Weak};

use crate::buffer::ErasedBuffer;
use crate::error::RuntimeError;
use crate::launch::{Launch, Node, Plan, Task};

/// A buffer as a graph remembers it.
#[derive(Clone)]
pub(crate) struct BufRef {
    weak: Weak<dyn ErasedBuffer>,
    id: u64,
    len: usize,
}

impl BufRef {
    fn new(buffer: &Arc<dyn ErasedBuffer>) -> Self {
        BufRef {
            weak: Arc::downgrade(buffer),
            id: buffer.id(),
            len: buffer.len(),
        }
    }

    /// The buffer, if it is still alive and has its captured length.
    fn get(&self, task: &str) -> Result<Arc<dyn ErasedBuffer>, RuntimeError> {
        let buffer = self
            .weak
            .upgrade()
            .ok_or_else(|| RuntimeError::BufferFreed {
                task: task.to_owned(),
                buffer: self.id,
            })?;
        let now = buffer.len();
        if now != self.len {
            return Err(RuntimeError::BufferResized {
                task: task.to_owned(),
                buffer: self.id,
                captured: self.len,
                now,
            });
        }
        Ok(buffer)
    }
}

pub(crate) struct CapturedNode {
    name: Cow<'static, str>,
    category: &'static str,
    task: Task,
    inputs: Vec<BufRef>,
    outputs: Vec<BufRef>,
}

impl CapturedNode {
    /// A launch as captured (already validated by `Launch::into_node`).
    pub(crate) fn new(launch: Launch) -> Self {
        CapturedNode {
            inputs: launch.inputs.iter().map(BufRef::new).collect(),
            outputs: launch.outputs.iter().map(BufRef::new).collect(),
            name: launch.name,
            category: launch.category,
            task: launch.task,
        }
    }
}

/// The launches captured on a stream between `begin_capture` and
/// `end_capture`, in order.
pub struct Graph {
    pub(crate) nodes: Vec<CapturedNode>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.node_names()).finish()
    }
}

impl Graph {
    /// Number of captured launches.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The names of the captured launches, in order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_ref())
    }

    /// An executable graph: one table of distinct buffers, one lock plan
    /// per launch. Fails if a captured buffer is already gone or resized.
    pub fn instantiate(&self) -> Result<GraphExec, RuntimeError> {
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut buffers: Vec<BufRef> = Vec::new();
        let mut users: Vec<usize> = Vec::new();
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (n, node) in self.nodes.iter().enumerate() {
            let mut slot = |b: &BufRef| {
                *index.entry(b.id).or_insert_with(|| {
                    buffers.push(b.clone());
                    users.push(n);
                    buffers.len() - 1
                })
            };
            let inputs: Vec<usize> = node.inputs.iter().map(&mut slot).collect();
            let outputs: Vec<usize> = node.outputs.iter().map(&mut slot).collect();
            let ids: Vec<u64> = buffers.iter().map(|b| b.id).collect();
            nodes.push(Node {
                plan: Plan::new(&node.name, &ids, &inputs, &outputs)?,
                name: node.name.clone(),
                category: node.category,
                task: Arc::clone(&node.task),
            });
        }
        let (segments, slot_maps) = segments(&nodes, &buffers);
        let exec = ExecInner {
            nodes,
            buffers,
            users,
            segments,
            slot_maps,
        };
        exec.buffers()?;
        Ok(GraphExec {
            inner: Arc::new(exec),
        })
    }
}

/// Consecutive nodes replayed under one set of locks.
pub(crate) struct Segment {
    /// The nodes, by index.
    pub(crate) nodes: Range<usize>,
    /// `(table index, write)`, sorted by buffer id, each buffer once.
    pub(crate) locks: Vec<(usize, bool)>,
}

/// Cuts `nodes` into segments at every node without buffers (a host
/// callback: a segment of its own, with no locks) and returns them with,
/// per node, where each lock of its plan is in its segment's `locks`.
fn segments(nodes: &[Node], buffers: &[BufRef]) -> (Vec<Segment>, Vec<Vec<usize>>) {
    let mut segments = Vec::new();
    let mut start = 0;
    for (i, node) in nodes.iter().enumerate() {
        if node.plan.locks.is_empty() {
            if start < i {
                segments.push(start..i);
            }
            segments.push(i..i + 1);
            start = i + 1;
        }
    }
    if start < nodes.len() {
        segments.push(start..nodes.len());
    }
    let mut maps = vec![Vec::new(); nodes.len()];
    let segments = segments
        .into_iter()
        .map(|range| {
            let mut write: HashMap<usize, bool> = HashMap::new();
            for node in &nodes[range.clone()] {
                for &(t, w) in &node.plan.locks {
                    *write.entry(t).or_insert(false) |= w;
                }
            }
            let mut locks: Vec<(usize, bool)> = write.into_iter().collect();
            locks.sort_unstable_by_key(|&(t, _)| buffers[t].id);
            let at: HashMap<usize, usize> = locks
                .iter()
                .enumerate()
                .map(|(i, &(t, _))| (t, i))
                .collect();
            for n in range.clone() {
                maps[n] = nodes[n].plan.locks.iter().map(|(t, _)| at[t]).collect();
            }
            Segment {
                nodes: range,
                locks,
            }
        })
        .collect();
    (segments, maps)
}

pub(crate) struct ExecInner {
    pub(crate) nodes: Vec<Node>,
    buffers: Vec<BufRef>,
    /// For each buffer, the first node that uses it (for error messages).
    users: Vec<usize>,
    /// The nodes cut into runs that replay under one set of locks.
    pub(crate) segments: Vec<Segment>,
    /// Per node: where lock `i` of its plan is in its segment's locks.
    pub(crate) slot_maps: Vec<Vec<usize>>,
}

impl ExecInner {
    /// Strong handles to every buffer, checked against capture.
    pub(crate) fn buffers(&self) -> Result<Vec<Arc<dyn ErasedBuffer>>, RuntimeError> {
        self.buffers
            .iter()
            .zip(&self.users)
            .map(|(b, &user)| b.get(&self.nodes[user].name))
            .collect()
    }
}

/// An instantiated graph, replayed with `Stream::replay` as one queue
/// entry. Cheap to clone.
#[derive(Clone)]
pub struct GraphExec {
    pub(crate) inner: Arc<ExecInner>,
}

impl std::fmt::Debug for GraphExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GraphExec({} launches, {} buffers)",
            self.inner.nodes.len(),
            self.inner.buffers.len()
        )
    }
}

impl GraphExec {
    /// Number of launches replayed per submission.
    pub fn len(&self) -> usize {
        self.inner.nodes.len()
    }

    /// Whether the graph has no launches.
    pub fn is_empty(&self) -> bool {
        self.inner.nodes.is_empty()
    }
}
