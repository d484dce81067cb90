//! Capture across streams (fork/join), as in CUDA stream capture.
//!
//! `begin_capture` on a stream creates a [`Capture`] with that stream as
//! its origin, lane 0. While capturing, a stream's launches become graph
//! nodes, and its event records and waits build the edges between them:
//!
//! - Each lane keeps the *point* its next command depends on: the nodes
//!   (capture indices) that command must follow. A captured launch
//!   depends on its lane's point and becomes the lane's new point, so a
//!   lane's nodes form a chain in capture order.
//! - `record(&e)` on a capturing stream bumps no generation: it marks `e`
//!   with the lane's current point (a capture-time record).
//! - `wait_event(&e)` on a capturing stream adds `e`'s point to its lane's
//!   point (a join); `e` must have been recorded in the same capture.
//! - `wait_event(&e)` on a stream that is *not* capturing, where `e`'s
//!   latest record was made in a capture still in progress, makes that
//!   stream join the capture as a new lane whose point is `e`'s (a fork).
//!
//! Only the origin can end the capture. Ending marks the capture ended,
//! takes every stream out of it and checks that the origin's final point
//! covers every node (every branch was joined back); otherwise the graph
//! is discarded with [`RuntimeError::CaptureUnjoined`].
//!
//! Lock order: a stream's state, then its capture, then an event's state;
//! ending a capture releases the capture before it takes the streams'
//! states to detach them. A stream that finds its capture ended (a race
//! with `end_capture` on another thread) leaves it and runs the command.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::shared::Shared;
use crate::error::RuntimeError;
use crate::event::{CaptureMark, Event};
use crate::graph::{CapturedNode, Graph};
use crate::launch::Launch;

/// A point of a capture: the nodes a command placed there depends on
/// (capture indices, sorted, each once).
pub(crate) type Point = Vec<usize>;

/// One capture in progress, shared by the streams taking part in it.
pub(crate) struct Capture {
    /// The stream that began it.
    origin: u64,
    state: Mutex<CaptureState>,
}

pub(super) struct CaptureState {
    ended: bool,
    nodes: Vec<CapturedNode>,
    lanes: Vec<Lane>,
}

/// A stream taking part in a capture.
struct Lane {
    stream: u64,
    /// To take the stream out of the capture when it ends.
    shared: Weak<Shared>,
    /// What the lane's next command depends on.
    point: Point,
}

/// A stream's part in a capture: which one, and its lane there.
#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) capture: Arc<Capture>,
    pub(crate) lane: usize,
}

impl Member {
    /// Starts a capture with `stream` as its origin (lane 0).
    pub(super) fn begin(stream: u64, shared: Weak<Shared>) -> Member {
        let lane = Lane {
            stream,
            shared,
            point: Vec::new(),
        };
        let state = CaptureState {
            ended: false,
            nodes: Vec::new(),
            lanes: vec![lane],
        };
        Member {
            capture: Arc::new(Capture {
                origin: stream,
                state: Mutex::new(state),
            }),
            lane: 0,
        }
    }

    /// Whether this is the stream that began the capture.
    pub(super) fn is_origin(&self) -> bool {
        self.lane == 0
    }
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, CaptureState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The capture's state, locked; `None` once it has ended.
    pub(super) fn open(&self) -> Option<MutexGuard<'_, CaptureState>> {
        Some(self.lock()).filter(|st| !st.ended)
    }

    /// Whether the capture is still in progress.
    pub(super) fn is_open(&self) -> bool {
        !self.lock().ended
    }

    /// The stream that began the capture.
    pub(super) fn origin(&self) -> u64 {
        self.origin
    }

    /// Ends the capture: every stream leaves it, and the graph is
    /// returned if every joined stream's work was joined back into the
    /// origin.
    pub(super) fn end(self: &Arc<Self>) -> Result<Graph, RuntimeError> {
        let (nodes, lanes) = {
            let mut st = self.lock();
            st.ended = true;
            (std::mem::take(&mut st.nodes), std::mem::take(&mut st.lanes))
        };
        for lane in &lanes {
            if let Some(shared) = lane.shared.upgrade() {
                shared.leave_capture(self);
            }
        }
        check_joined(&nodes, &lanes)?;
        Ok(Graph {
            nodes,
            streams: lanes.iter().map(|l| l.stream).collect(),
        })
    }
}

impl CaptureState {
    /// Appends `launch` to lane `lane`, after the lane's point.
    pub(super) fn launch(&mut self, lane: usize, launch: Launch) {
        let index = self.nodes.len();
        let preds = std::mem::replace(&mut self.lanes[lane].point, vec![index]);
        self.nodes.push(CapturedNode::new(launch, lane, preds));
    }

    /// Marks `event` with lane `lane`'s point (a capture-time record).
    pub(super) fn record(&self, member: &Member, event: &Event) {
        event.set_capture_mark(CaptureMark {
            capture: Arc::downgrade(&member.capture),
            point: self.lanes[member.lane].point.clone(),
        });
    }

    /// Makes lane `lane`'s next command also depend on `point`.
    pub(super) fn wait(&mut self, lane: usize, point: &[usize]) {
        let mine = &mut self.lanes[lane].point;
        mine.extend_from_slice(point);
        mine.sort_unstable();
        mine.dedup();
    }

    /// Adds `stream` as a new lane starting at `point`; its lane index.
    pub(super) fn join(&mut self, stream: u64, shared: Weak<Shared>, point: Point) -> usize {
        self.lanes.push(Lane {
            stream,
            shared,
            point,
        });
        self.lanes.len() - 1
    }
}

/// The point `event` marks in `capture`, if its latest record was made
/// there. (The mark's capture is upgraded, not compared by address: a
/// dropped capture's address may be reused by a new one.)
pub(super) fn mark_in(event: &Event, capture: &Arc<Capture>) -> Option<Point> {
    let mark = event.capture_mark()?;
    let marked = mark.capture.upgrade()?;
    Arc::ptr_eq(&marked, capture).then_some(mark.point)
}

/// Fails if some node is not behind the origin's final point: work of a
/// joined stream that the origin never waited on.
fn check_joined(nodes: &[CapturedNode], lanes: &[Lane]) -> Result<(), RuntimeError> {
    if lanes.len() < 2 {
        return Ok(());
    }
    let mut joined = vec![false; nodes.len()];
    let mut stack: Vec<usize> = lanes[0].point.clone();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut joined[n], true) {
            stack.extend_from_slice(nodes[n].preds());
        }
    }
    match joined.iter().position(|&j| !j) {
        None => Ok(()),
        Some(n) => Err(RuntimeError::CaptureUnjoined {
            stream: lanes[nodes[n].lane()].stream,
            origin: lanes[0].stream,
        }),
    }
}
