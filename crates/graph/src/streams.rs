//! Stream assignment: which runtime stream each node runs on, and which
//! cross-stream waits (events) order them, so that independent branches
//! (the q/k/v projections of a block, the gate and up projections of an
//! MLP) can run concurrently. An analysis, like the memory plan: nothing
//! runs it yet.
//!
//! # Dependencies
//!
//! Node `n` depends on node `p` when `n` reads a value `p` defines
//! ([`Def::Node`]), or when both use the same state value ([`Def::State`],
//! a KV cache that attention writes as a side effect) and `p` is the last
//! node before `n` that uses it: consecutive users of a state value are
//! ordered, so a write is never concurrent with another access to the same
//! state (two plain reads would not need it, but every state user so far
//! writes). A node with several outputs is one unit. Node order is a
//! topological order of these edges.
//!
//! # Assignment
//!
//! Nodes are walked in order, and each stream runs its nodes in node order.
//! A node *continues* the stream of one of its producers if that producer is
//! still the last node on its stream, so a chain stays on one stream and
//! needs no event; among several such producers it takes the one on the
//! longest chain (most nodes on a dependency path ending there), the first
//! in input order on a tie, so the critical path is the chain that never
//! waits. Otherwise (a fork: every producer's stream has moved on; or a
//! node with no producing node) it opens a new stream while fewer than
//! `max_streams` exist, and else joins the stream where it could start
//! earliest in a list-scheduling model: every node costs one step (unit
//! cost: output volumes depend on the symbols' binding, and launch overhead
//! dominates decode steps anyway), a node starts when its stream's last
//! node and all its dependencies have finished. Ties go to the stream that
//! needs fewer new waits, then to the lower id.
//!
//! # Waits
//!
//! A dependency on another stream becomes a wait on an event recorded
//! after the producer. Each stream keeps a vector clock: for every stream,
//! the last of its nodes known complete when the stream's next node starts
//! (its own last node, and whatever earlier waits brought in, transitively:
//! a wait merges the clock the producer's stream had after the producer).
//! A dependency the clock already covers needs no wait; of the rest, a wait
//! implied by another wait of the same node (the other producer's clock
//! covers it) is dropped. What remains is minimal: removing any one wait
//! leaves its producer unordered before the node.
//!
//! The clocks take one entry per stream per node, so `max_streams` is meant
//! to be small (a handful); it is capped at the node count.
//!
//! After the last node, a run joins every stream ([`StreamPlan::tails`])
//! before reading the outputs. Buffers shared by lifetime (graph mode, the
//! memory plan) assume one order: with several streams a buffer may only be
//! reused by a node ordered after the last reader of its previous value.

use crate::ir::{Def, Graph};

/// Which stream each node runs on, and the cross-stream waits that order
/// them (see the module docs of `streams` for how it is made).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPlan {
    /// Streams used: at least 1 for a graph with nodes, 0 for a graph
    /// without (nothing runs, so no stream is needed).
    pub streams: usize,
    /// Per node (index = node index): the stream it runs on, `< streams`.
    /// Each stream runs its nodes in node order.
    pub stream_of: Vec<usize>,
    /// Per node: the nodes on *other* streams it must wait for before it
    /// starts (each an event recorded after that node), all earlier than
    /// it, ascending. A minimal set: no wait that the stream's earlier
    /// waits, its own order or another wait of the node already implies.
    pub waits: Vec<Vec<usize>>,
    /// Nodes on the longest dependency chain (the critical path): the
    /// fewest steps any number of streams could take at one step a node.
    pub critical_path: usize,
    /// Steps this assignment takes in the unit-cost model (every node one
    /// step, waits free): between `critical_path` and the node count.
    pub span: usize,
}

impl StreamPlan {
    /// Cross-stream waits in all (events to record and wait on).
    pub fn wait_count(&self) -> usize {
        self.waits.iter().map(Vec::len).sum()
    }

    /// The last node of each stream, by stream id: what the end of a run
    /// joins before it reads the outputs.
    pub fn tails(&self) -> Vec<usize> {
        let mut tails = vec![0; self.streams];
        for (n, &s) in self.stream_of.iter().enumerate() {
            tails[s] = n;
        }
        tails
    }

    /// The order the plan guarantees: whether a node has surely finished
    /// when another starts (same stream and earlier, or reached through
    /// waits).
    pub fn order(&self) -> Order {
        let mut clock_of_stream = vec![vec![NONE; self.streams]; self.streams];
        let mut after: Vec<Vec<usize>> = Vec::with_capacity(self.stream_of.len());
        let mut before = Vec::with_capacity(self.stream_of.len());
        for (n, &s) in self.stream_of.iter().enumerate() {
            let mut clock = clock_of_stream[s].clone();
            for &w in self.waits.get(n).map_or(&[][..], Vec::as_slice) {
                for (c, &o) in clock.iter_mut().zip(&after[w]) {
                    if *c == NONE || (o != NONE && o > *c) {
                        *c = o;
                    }
                }
            }
            before.push(clock.clone());
            clock[s] = n;
            after.push(clock.clone());
            clock_of_stream[s] = clock;
        }
        Order {
            stream_of: self.stream_of.clone(),
            before,
        }
    }

    /// A one-line account: streams used, cross-stream waits, the longest
    /// chain (critical path, in nodes) and the unit-cost span against the
    /// node count.
    pub fn summary(&self) -> String {
        format!(
            "{} stream{}, {} cross-stream wait{}, critical path {} of {} nodes, span {} steps",
            self.streams,
            if self.streams == 1 { "" } else { "s" },
            self.wait_count(),
            if self.wait_count() == 1 { "" } else { "s" },
            self.critical_path,
            self.stream_of.len(),
            self.span,
        )
    }
}

/// "No node of that stream" in a vector clock.
const NONE: usize = usize::MAX;

/// Happens-before between the nodes of a [`StreamPlan`] (from
/// [`StreamPlan::order`]): per node, the vector clock it starts with.
#[derive(Debug, Clone)]
pub struct Order {
    stream_of: Vec<usize>,
    /// Per node, per stream: the last node of that stream known finished
    /// when this node starts (`NONE`: none).
    before: Vec<Vec<usize>>,
}

impl Order {
    /// Whether node `a` has finished whenever node `b` starts.
    pub fn happens_before(&self, a: usize, b: usize) -> bool {
        match (self.stream_of.get(a), self.before.get(b)) {
            (Some(&s), Some(clock)) => clock[s] != NONE && clock[s] >= a,
            _ => false,
        }
    }
}

impl Graph {
    /// For every node, the earlier nodes it depends on (see the module docs
    /// of `streams`): producers of its inputs in input order, then the
    /// previous user of each state value it uses; no repeats. Ids that do
    /// not resolve to an earlier node (an unverified graph) are ignored.
    fn stream_dependencies(&self) -> Vec<Vec<usize>> {
        let mut last_state_user: Vec<Option<usize>> = vec![None; self.values.len()];
        let mut deps = Vec::with_capacity(self.nodes.len());
        for (n, node) in self.nodes.iter().enumerate() {
            let mut d: Vec<usize> = Vec::new();
            let push = |p: usize, d: &mut Vec<usize>| {
                if p < n && !d.contains(&p) {
                    d.push(p);
                }
            };
            for v in &node.inputs {
                if let Some(Def::Node { node: p, .. }) = self.value(*v).map(|i| &i.def) {
                    push(p.0 as usize, &mut d);
                }
            }
            for v in &node.inputs {
                let i = v.0 as usize;
                if matches!(self.value(*v).map(|i| &i.def), Some(Def::State)) {
                    if let Some(p) = last_state_user[i] {
                        push(p, &mut d);
                    }
                    last_state_user[i] = Some(n);
                }
            }
            deps.push(d);
        }
        deps
    }

    /// Assigns nodes to at most `max_streams` streams (0 is taken as 1) and
    /// derives the minimal cross-stream waits (see the module docs of
    /// `streams`). Expects a verified graph; never panics on others.
    pub fn assign_streams(&self, max_streams: usize) -> StreamPlan {
        let n = self.nodes.len();
        if n == 0 {
            return StreamPlan::default();
        }
        let cap = max_streams.clamp(1, n);
        let deps = self.stream_dependencies();
        let mut depth = vec![0usize; n];
        let mut finish = vec![0usize; n];
        let mut stream_of: Vec<usize> = Vec::with_capacity(n);
        let mut waits: Vec<Vec<usize>> = Vec::with_capacity(n);
        // Per node: the clock of its stream just after it.
        let mut clock_after: Vec<Vec<Option<usize>>> = Vec::with_capacity(n);
        // Per stream: its last node, the step that node finishes, and its
        // clock (per stream, the last node known complete).
        let mut tail: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut known: Vec<Vec<Option<usize>>> = Vec::new();

        // The dependencies of a node that stream `s` is not yet ordered
        // after.
        let pending = |d: &[usize], s: usize, known: &[Vec<Option<usize>>], on: &[usize]| {
            d.iter()
                .copied()
                .filter(|&p| on[p] != s && known[s][on[p]] < Some(p))
                .collect::<Vec<usize>>()
        };

        for (i, d) in deps.iter().enumerate() {
            depth[i] = 1 + d.iter().map(|&p| depth[p]).max().unwrap_or(0);
            let ready = d.iter().map(|&p| finish[p]).max().unwrap_or(0);
            // Continue the stream of the deepest producer still at the end
            // of its stream (the first on a tie).
            let mut cont: Option<usize> = None;
            for &p in d {
                if tail[stream_of[p]] == p && cont.is_none_or(|c| depth[p] > depth[c]) {
                    cont = Some(p);
                }
            }
            let s = match cont {
                Some(p) => stream_of[p],
                None if tail.len() < cap => {
                    tail.push(i);
                    free.push(0);
                    known.push(vec![None; cap]);
                    tail.len() - 1
                }
                None => (0..tail.len())
                    .min_by_key(|&s| {
                        let start = free[s].max(ready);
                        (start, pending(d, s, &known, &stream_of).len(), s)
                    })
                    .unwrap_or(0),
            };
            let need = pending(d, s, &known, &stream_of);
            let mut w: Vec<usize> = need
                .iter()
                .copied()
                .filter(|&p| {
                    !need
                        .iter()
                        .any(|&q| q != p && clock_after[q][stream_of[p]] >= Some(p))
                })
                .collect();
            w.sort_unstable();
            for &q in &w {
                for t in 0..cap {
                    known[s][t] = known[s][t].max(clock_after[q][t]);
                }
            }
            known[s][s] = Some(i);
            clock_after.push(known[s].clone());
            stream_of.push(s);
            waits.push(w);
            finish[i] = free[s].max(ready) + 1;
            free[s] = finish[i];
            tail[s] = i;
        }
        StreamPlan {
            streams: tail.len(),
            stream_of,
            waits,
            critical_path: depth.iter().copied().max().unwrap_or(0),
            span: finish.iter().copied().max().unwrap_or(0),
        }
    }
}
