//! Captured launch graphs. A stream in capture mode appends its launches
//! to a [`Graph`] instead of running them; [`Graph::instantiate`] turns it
//! into a [`GraphExec`] (one buffer table, every lock plan precomputed),
//! which `Stream::replay` submits as a single queue entry. Graphs hold
//! their buffers weakly: replay refuses with a typed error when one was
//! freed or resized since capture.
//!
//! A graph is a DAG: every node keeps its predecessors. On one stream
//! these are just "the previous launch"; a capture that forks onto other
//! streams through events (see `Stream::begin_capture`) adds event edges,
//! and each node remembers its *lane*, the captured stream it came from
//! (lane 0: the stream that began the capture). Nodes are numbered in
//! capture order, and a node's predecessors always come before it, so the
//! graph is acyclic by construction.
//!
//! A replay takes locks per *segment*, not per launch: a run of launches
//! of one lane between host callbacks is one segment, and its buffers are
//! locked once (in buffer-id order, for writing if any launch of the run
//! writes them) before its first launch and released after its last.
//! Host callbacks (launches without buffers) run with nothing held, so a
//! callback may read a buffer of the graph from the host. A task must not
//! reach other buffers of its own graph from the host side: they are
//! held. A graph with several lanes replays them concurrently on lane
//! threads (see `graph::lanes`); segments are also cut at every
//! cross-lane edge, so no lane waits for another while holding locks.

mod exec;
mod lanes;

use std::borrow::Cow;
use std::sync::{Arc, Weak};

use crate::buffer::ErasedBuffer;
use crate::error::RuntimeError;
use crate::launch::{Launch, Task};

pub(crate) use exec::ExecInner;
pub use exec::GraphExec;
pub(crate) use lanes::LaneCounts;

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

/// One captured launch with its place in the DAG.
pub(crate) struct CapturedNode {
    name: Cow<'static, str>,
    category: &'static str,
    task: Task,
    inputs: Vec<BufRef>,
    outputs: Vec<BufRef>,
    /// The lane (captured stream) the launch was made on.
    lane: usize,
    /// The nodes it depends on, by capture index (sorted, each once).
    preds: Vec<usize>,
}

impl CapturedNode {
    /// A launch as captured (already validated by `Launch::plan`) on
    /// `lane`, after `preds`.
    pub(crate) fn new(launch: Launch, lane: usize, preds: Vec<usize>) -> Self {
        CapturedNode {
            inputs: launch.inputs.iter().map(BufRef::new).collect(),
            outputs: launch.outputs.iter().map(BufRef::new).collect(),
            name: launch.name,
            category: launch.category,
            task: launch.task,
            lane,
            preds,
        }
    }

    /// The nodes this one depends on (capture indices).
    pub(crate) fn preds(&self) -> &[usize] {
        &self.preds
    }

    /// The lane the node was captured on.
    pub(crate) fn lane(&self) -> usize {
        self.lane
    }
}

/// The launches captured between `begin_capture` and `end_capture`, in
/// capture order, with their dependencies: a DAG whose lanes are the
/// streams that took part in the capture.
pub struct Graph {
    pub(crate) nodes: Vec<CapturedNode>,
    /// The stream id of each lane (lane 0: the stream that began it).
    pub(crate) streams: Vec<u64>,
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

    /// The names of the captured launches, in capture order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_ref())
    }

    /// Number of lanes: the streams that took part in the capture (1 for
    /// a single-stream capture).
    pub fn lanes(&self) -> usize {
        self.streams.len()
    }

    /// The id of the stream that lane `lane` was captured on.
    pub fn lane_stream(&self, lane: usize) -> Option<u64> {
        self.streams.get(lane).copied()
    }

    /// The lane of node `node` (capture index).
    pub fn node_lane(&self, node: usize) -> Option<usize> {
        self.nodes.get(node).map(CapturedNode::lane)
    }

    /// The nodes that node `node` depends on (capture indices, sorted):
    /// the previous launch of its lane and the launches behind the events
    /// its lane waited on since.
    pub fn dependencies(&self, node: usize) -> Option<&[usize]> {
        self.nodes.get(node).map(CapturedNode::preds)
    }

    /// An executable graph: one table of distinct buffers, one lock plan
    /// per launch, segments per lane, and one lane thread per lane beyond
    /// the first. Fails if a captured buffer is already gone or resized,
    /// or a lane thread cannot be started.
    pub fn instantiate(&self) -> Result<GraphExec, RuntimeError> {
        exec::instantiate(self)
    }
}
