//! Instantiation: a [`Graph`] becomes a [`Program`] (nodes in lane-major
//! order, one buffer table, lock plans, segments with their cross-lane
//! waits) and, when it has more than one lane, a [`LanePool`] of threads
//! to replay the other lanes on.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::lanes::LanePool;
use super::{BufRef, Graph};
use crate::buffer::ErasedBuffer;
use crate::error::RuntimeError;
use crate::launch::{Node, Plan};

/// Consecutive nodes of one lane replayed under one set of locks.
pub(crate) struct Segment {
    /// The nodes, by index into [`Program::nodes`].
    pub(crate) nodes: Range<usize>,
    /// `(table index, write)`, sorted by buffer id, each buffer once.
    pub(crate) locks: Vec<(usize, bool)>,
    /// Before it starts: `(lane, n)`, lane `lane` has finished its first
    /// `n` nodes (at most one entry per lane; empty on a single lane).
    pub(crate) waits: Vec<(usize, usize)>,
    /// Whether another lane waits for this segment's last node.
    pub(crate) signals: bool,
    /// Nodes of its lane finished once this segment is done.
    pub(crate) done: usize,
}

/// What a replay runs: everything but the lane threads.
pub(crate) struct Program {
    /// The nodes, lane by lane, each lane in capture order (for a
    /// single-lane graph: capture order).
    pub(crate) nodes: Vec<Node>,
    buffers: Vec<BufRef>,
    /// For each buffer, the first node (in capture order) that uses it,
    /// for error messages.
    users: Vec<usize>,
    /// The nodes cut into runs that replay under one set of locks, lane
    /// by lane.
    pub(crate) segments: Vec<Segment>,
    /// Per lane: its segments, as a range of `segments`.
    pub(crate) lanes: Vec<Range<usize>>,
    /// Per node: where lock `i` of its plan is in its segment's locks.
    pub(crate) slot_maps: Vec<Vec<usize>>,
}

impl Program {
    /// Strong handles to every buffer, checked against capture.
    pub(crate) fn buffers(&self) -> Result<Vec<Arc<dyn ErasedBuffer>>, RuntimeError> {
        self.buffers
            .iter()
            .zip(&self.users)
            .map(|(b, &user)| b.get(&self.nodes[user].name))
            .collect()
    }
}

pub(crate) struct ExecInner {
    pub(crate) program: Arc<Program>,
    /// Threads for lanes 1..; `None` for a single-lane graph, which
    /// replays entirely on the replaying stream's worker.
    pub(crate) pool: Option<LanePool>,
}

/// Where each node of `graph` goes in lane-major order: per lane, its
/// nodes' capture indices in order.
fn lane_order(graph: &Graph) -> Vec<Vec<usize>> {
    let mut lanes = vec![Vec::new(); graph.lanes().max(1)];
    for (c, node) in graph.nodes.iter().enumerate() {
        lanes[node.lane].push(c);
    }
    lanes
}

/// The distinct buffers of `graph` (in order of first use), the first
/// user of each, and per node the table slots of its inputs and outputs.
type Table = (Vec<BufRef>, Vec<usize>, Vec<(Vec<usize>, Vec<usize>)>);

fn buffer_table(graph: &Graph) -> Table {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut buffers: Vec<BufRef> = Vec::new();
    let mut users: Vec<usize> = Vec::new();
    let mut args = Vec::with_capacity(graph.nodes.len());
    for (c, node) in graph.nodes.iter().enumerate() {
        let mut slot = |b: &BufRef| {
            *index.entry(b.id).or_insert_with(|| {
                buffers.push(b.clone());
                users.push(c);
                buffers.len() - 1
            })
        };
        let inputs: Vec<usize> = node.inputs.iter().map(&mut slot).collect();
        let outputs: Vec<usize> = node.outputs.iter().map(&mut slot).collect();
        args.push((inputs, outputs));
    }
    (buffers, users, args)
}

/// Cross-lane edges, per node by capture index: what it must wait for
/// (`(lane, nodes of that lane finished)`, one entry per lane) and
/// whether another lane waits for it.
fn cross_lane_edges(graph: &Graph, position: &[usize]) -> (Vec<Vec<(usize, usize)>>, Vec<bool>) {
    let n = graph.nodes.len();
    let mut waits = vec![Vec::new(); n];
    let mut signals = vec![false; n];
    for (c, node) in graph.nodes.iter().enumerate() {
        let mut need: Vec<(usize, usize)> = Vec::new();
        for &p in &node.preds {
            let lane = graph.nodes[p].lane;
            if lane == node.lane {
                continue;
            }
            signals[p] = true;
            let count = position[p] + 1;
            match need.iter_mut().find(|(l, _)| *l == lane) {
                Some((_, c)) => *c = (*c).max(count),
                None => need.push((lane, count)),
            }
        }
        need.sort_unstable();
        waits[c] = need;
    }
    (waits, signals)
}

pub(crate) fn instantiate(graph: &Graph) -> Result<GraphExec, RuntimeError> {
    let order = lane_order(graph);
    // Position of each node within its lane, by capture index.
    let mut position = vec![0; graph.nodes.len()];
    for lane in &order {
        for (i, &c) in lane.iter().enumerate() {
            position[c] = i;
        }
    }
    let (buffers, users, args) = buffer_table(graph);
    let ids: Vec<u64> = buffers.iter().map(|b| b.id).collect();
    let (waits, signals) = cross_lane_edges(graph, &position);
    let mut exec_index = vec![0; graph.nodes.len()];
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    let mut cuts = Vec::with_capacity(graph.nodes.len());
    let mut lane_nodes = Vec::with_capacity(order.len());
    for lane in &order {
        let start = nodes.len();
        for &c in lane {
            let node = &graph.nodes[c];
            let (inputs, outputs) = &args[c];
            exec_index[c] = nodes.len();
            nodes.push(Node {
                plan: Plan::new(&node.name, &ids, inputs, outputs)?,
                name: node.name.clone(),
                category: node.category,
                task: Arc::clone(&node.task),
            });
            cuts.push(Cut {
                waits: waits[c].clone(),
                signals: signals[c],
            });
        }
        lane_nodes.push(start..nodes.len());
    }
    let users = users.into_iter().map(|c| exec_index[c]).collect();
    let (segments, lanes, slot_maps) = segments(&nodes, &ids, &lane_nodes, &cuts);
    let program = Arc::new(Program {
        nodes,
        buffers,
        users,
        segments,
        lanes,
        slot_maps,
    });
    program.buffers()?;
    let pool = LanePool::start(&program, &graph.streams)?;
    Ok(GraphExec {
        inner: Arc::new(ExecInner { program, pool }),
    })
}

/// What ties a node to other lanes.
struct Cut {
    waits: Vec<(usize, usize)>,
    signals: bool,
}

impl Cut {
    /// Starts a segment: a host callback, or a node waiting on another
    /// lane (it must not wait while the lane holds locks).
    fn before(&self, node: &Node) -> bool {
        node.plan.locks.is_empty() || !self.waits.is_empty()
    }

    /// Ends a segment: a host callback, or a node another lane waits for
    /// (it is reported done when its segment releases its locks).
    fn after(&self, node: &Node) -> bool {
        node.plan.locks.is_empty() || self.signals
    }
}

/// The node ranges of the segments of one lane (`lane`, a range of
/// `nodes`): cut before and after every node whose [`Cut`] says so.
fn lane_ranges(nodes: &[Node], cuts: &[Cut], lane: Range<usize>) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = lane.start;
    for i in lane.clone() {
        if cuts[i].before(&nodes[i]) && start < i {
            ranges.push(start..i);
            start = i;
        }
        if cuts[i].after(&nodes[i]) {
            ranges.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < lane.end {
        ranges.push(start..lane.end);
    }
    ranges
}

/// Cuts each lane's nodes into segments and returns them (lane by lane),
/// each lane's range of segments, and, per node, where each lock of its
/// plan is in its segment's `locks`.
fn segments(
    nodes: &[Node],
    ids: &[u64],
    lane_nodes: &[Range<usize>],
    cuts: &[Cut],
) -> (Vec<Segment>, Vec<Range<usize>>, Vec<Vec<usize>>) {
    let mut segments = Vec::new();
    let mut lanes = Vec::with_capacity(lane_nodes.len());
    let mut maps = vec![Vec::new(); nodes.len()];
    for lane in lane_nodes {
        let first = segments.len();
        for range in lane_ranges(nodes, cuts, lane.clone()) {
            let locks = segment_locks(&nodes[range.clone()], ids);
            let at: HashMap<usize, usize> = locks
                .iter()
                .enumerate()
                .map(|(i, &(t, _))| (t, i))
                .collect();
            for n in range.clone() {
                maps[n] = nodes[n].plan.locks.iter().map(|(t, _)| at[t]).collect();
            }
            segments.push(Segment {
                waits: cuts[range.start].waits.clone(),
                signals: cuts[range.end - 1].signals,
                done: range.end - lane.start,
                nodes: range,
                locks,
            });
        }
        lanes.push(first..segments.len());
    }
    (segments, lanes, maps)
}

/// The locks of a run of nodes: every buffer once, for writing if any
/// node writes it, sorted by buffer id.
fn segment_locks(nodes: &[Node], ids: &[u64]) -> Vec<(usize, bool)> {
    let mut write: HashMap<usize, bool> = HashMap::new();
    for node in nodes {
        for &(t, w) in &node.plan.locks {
            *write.entry(t).or_insert(false) |= w;
        }
    }
    let mut locks: Vec<(usize, bool)> = write.into_iter().collect();
    locks.sort_unstable_by_key(|&(t, _)| ids[t]);
    locks
}

/// An instantiated graph, replayed with `Stream::replay` as one queue
/// entry. Cheap to clone (clones share the lane threads, so replays of
/// one multi-lane graph take turns).
#[derive(Clone)]
pub struct GraphExec {
    pub(crate) inner: Arc<ExecInner>,
}

impl std::fmt::Debug for GraphExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GraphExec({} launches, {} buffers, {} lanes)",
            self.inner.program.nodes.len(),
            self.inner.program.buffers.len(),
            self.lanes()
        )
    }
}

impl GraphExec {
    /// Number of launches replayed per submission.
    pub fn len(&self) -> usize {
        self.inner.program.nodes.len()
    }

    /// Whether the graph has no launches.
    pub fn is_empty(&self) -> bool {
        self.inner.program.nodes.is_empty()
    }

    /// Number of lanes (1 for a single-stream capture). Lanes beyond the
    /// first that have launches each have a thread of their own.
    pub fn lanes(&self) -> usize {
        self.inner.program.lanes.len()
    }
}
