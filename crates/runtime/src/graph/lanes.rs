//! Concurrent replay of a multi-lane graph. A [`LanePool`] owns one
//! persistent thread per lane beyond the first, started at instantiate,
//! parked on a condition variable between replays and stopped when the
//! `GraphExec` is dropped. A replay runs lane 0 on the replaying stream's
//! worker and hands the other lanes to their threads; the worker returns
//! once every lane is done, so the replay stays one queue entry.
//!
//! Lanes meet only at segment boundaries: a segment first waits until the
//! lanes it depends on have finished enough nodes ([`Segment::waits`]),
//! with no lock held, then takes its buffer locks (in buffer-id order, so
//! concurrent segments cannot deadlock), runs its nodes, releases the
//! locks and, if another lane waits on it, publishes its lane's progress.
//!
//! The first failing task records its error and raises a stop flag: every
//! lane skips its remaining nodes (a lane waiting on another wakes up and
//! skips too), and the replaying stream is poisoned with that error. A
//! lane thread that dies (a bug in this module, not a task panic, which
//! is caught) fails the replay in progress and every later one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use exodus_trace::{set_track_name, Track};

use super::exec::{Program, Segment};
use crate::buffer::ErasedBuffer;
use crate::error::RuntimeError;
use crate::kernel::{execute, execute_held, lock_all, traced};
use crate::stream::next_track_id;

/// Tasks run and skipped by a replay (or one lane of it).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LaneCounts {
    pub(crate) run: u64,
    pub(crate) skipped: u64,
}

impl LaneCounts {
    fn add(&mut self, other: LaneCounts) {
        self.run += other.run;
        self.skipped += other.skipped;
    }
}

/// What the replaying worker and the lane threads share.
struct Board {
    state: Mutex<BoardState>,
    /// A replay was handed out (lane threads wait on it).
    start: Condvar,
    /// A lane published progress, finished, or the replay stopped.
    progress: Condvar,
    /// Set by the first failure of a replay: skip everything left.
    stop: AtomicBool,
}

#[derive(Default)]
struct BoardState {
    /// Bumped for each replay; a lane thread runs each epoch once.
    epoch: u64,
    /// The buffers of the replay in progress (dropped by everyone before
    /// the replay ends, so the pool keeps no buffer alive in between).
    table: Option<Arc<[Arc<dyn ErasedBuffer>]>>,
    /// Per lane: nodes finished so far in this replay.
    done: Vec<usize>,
    /// Lane threads finished with this replay.
    finished: usize,
    /// Their counts.
    counts: LaneCounts,
    /// The first error of this replay.
    failure: Option<String>,
    /// Set when a lane thread died: every replay fails from then on.
    dead: Option<String>,
    shutdown: bool,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records `reason` (if it is the first) and stops the replay.
    fn fail(&self, reason: String) {
        let mut st = self.lock();
        st.failure.get_or_insert(reason);
        self.stop.store(true, Ordering::Release);
        drop(st);
        self.progress.notify_all();
    }

    /// Blocks until every `(lane, n)` of `waits` holds; false if the
    /// replay stopped first.
    fn ready(&self, waits: &[(usize, usize)]) -> bool {
        if waits.is_empty() {
            return !self.stopped();
        }
        let mut st = self.lock();
        loop {
            if self.stopped() {
                return false;
            }
            if waits.iter().all(|&(lane, n)| st.done[lane] >= n) {
                return true;
            }
            st = self
                .progress
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Lane `lane` has finished its first `done` nodes.
    fn publish(&self, lane: usize, done: usize) {
        self.lock().done[lane] = done;
        self.progress.notify_all();
    }
}

/// Runs lane `lane` of `program` over `table`, segment by segment,
/// recording spans on `track`.
fn run_lane(
    program: &Program,
    lane: usize,
    table: &[Arc<dyn ErasedBuffer>],
    board: &Board,
    track: Track,
) -> LaneCounts {
    let mut counts = LaneCounts::default();
    for seg in &program.segments[program.lanes[lane].clone()] {
        if !board.ready(&seg.waits) {
            counts.skipped += seg.nodes.len() as u64;
            continue;
        }
        run_segment(program, seg, table, board, track, &mut counts);
        if seg.signals {
            board.publish(lane, seg.done);
        }
    }
    counts
}

/// Takes the segment's locks, runs its nodes (skipping them once the
/// replay stopped), releases the locks.
fn run_segment(
    program: &Program,
    seg: &Segment,
    table: &[Arc<dyn ErasedBuffer>],
    board: &Board,
    track: Track,
    counts: &mut LaneCounts,
) {
    let held = (!seg.locks.is_empty()).then(|| lock_all(table, &seg.locks));
    for n in seg.nodes.clone() {
        if board.stopped() {
            counts.skipped += 1;
            continue;
        }
        let node = &program.nodes[n];
        let outcome = traced(node, track, |node| match &held {
            Some(held) => execute_held(node, table, held, &program.slot_maps[n]),
            None => execute(node, table),
        });
        counts.run += 1;
        if let Err(reason) = outcome {
            board.fail(reason);
        }
    }
}

/// The lane threads of one instantiated graph.
pub(crate) struct LanePool {
    board: Arc<Board>,
    threads: Vec<JoinHandle<()>>,
    /// Lanes run by the threads (lane 0 runs on the replaying worker).
    lanes: Vec<usize>,
    /// One replay at a time: replays of one graph from several streams
    /// take turns.
    turn: Mutex<()>,
}

impl LanePool {
    /// Starts a thread for every lane beyond the first that has nodes;
    /// `None` if there is none (the graph replays as a single lane).
    /// `streams` names the lanes' tracks after their captured streams.
    pub(crate) fn start(
        program: &Arc<Program>,
        streams: &[u64],
    ) -> Result<Option<LanePool>, RuntimeError> {
        let lanes: Vec<usize> = (1..program.lanes.len())
            .filter(|&l| !program.lanes[l].is_empty())
            .collect();
        if lanes.is_empty() {
            return Ok(None);
        }
        let board = Arc::new(Board {
            state: Mutex::new(BoardState {
                done: vec![0; program.lanes.len()],
                ..BoardState::default()
            }),
            start: Condvar::new(),
            progress: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut pool = LanePool {
            board,
            threads: Vec::with_capacity(lanes.len()),
            lanes,
            turn: Mutex::new(()),
        };
        for &lane in &pool.lanes {
            let track = Track::stream(next_track_id());
            let captured_on = streams.get(lane).copied().unwrap_or_default();
            set_track_name(track, format!("graph lane {lane} (stream {captured_on})"));
            let (program, board) = (Arc::clone(program), Arc::clone(&pool.board));
            let handle = std::thread::Builder::new()
                .name(format!("exodus-lane-{}", track.id))
                .spawn(move || lane_thread(&program, lane, &board, track))
                .map_err(|e| {
                    RuntimeError::Worker(format!("cannot start graph lane {lane}: {e}"))
                })?;
            // Dropping `pool` on a later error stops the threads started.
            pool.threads.push(handle);
        }
        Ok(Some(pool))
    }

    /// Replays `program` over `table`: lane 0 here on `track`, the others
    /// on their threads; returns once every lane is done, with the counts
    /// and the first error.
    pub(crate) fn replay(
        &self,
        program: &Program,
        table: Vec<Arc<dyn ErasedBuffer>>,
        track: Track,
    ) -> (LaneCounts, Option<String>) {
        let _turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let table: Arc<[Arc<dyn ErasedBuffer>]> = table.into();
        let board = &*self.board;
        {
            let mut st = board.lock();
            if let Some(reason) = &st.dead {
                let skipped = program.nodes.len() as u64;
                return (LaneCounts { run: 0, skipped }, Some(reason.clone()));
            }
            st.done.fill(0);
            st.finished = 0;
            st.counts = LaneCounts::default();
            st.failure = None;
            st.table = Some(Arc::clone(&table));
            st.epoch += 1;
            board.stop.store(false, Ordering::Release);
        }
        board.start.notify_all();
        let mut counts = run_lane(program, 0, &table, board, track);
        let mut st = board.lock();
        while st.finished < self.lanes.len() {
            st = board
                .progress
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        st.table = None;
        counts.add(st.counts);
        (counts, st.failure.take())
    }
}

impl Drop for LanePool {
    fn drop(&mut self) {
        self.board.lock().shutdown = true;
        self.board.start.notify_all();
        let me = std::thread::current().id();
        for handle in self.threads.drain(..) {
            // A task of this very graph may drop the last handle to it on
            // a lane thread: that thread exits by itself after the replay.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

/// Marks the lane thread dead if it unwinds (a bug here, not in a task),
/// finishing the replay in progress with an error so nothing waits on it.
struct LaneExit<'a> {
    board: &'a Board,
    lane: usize,
    busy: bool,
}

impl Drop for LaneExit<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let reason = format!("graph lane {} thread exited", self.lane);
        let mut st = self.board.lock();
        st.dead.get_or_insert_with(|| reason.clone());
        if self.busy {
            st.finished += 1;
            st.failure.get_or_insert(reason);
            self.board.stop.store(true, Ordering::Release);
        }
        drop(st);
        self.board.progress.notify_all();
    }
}

/// A lane thread: waits for a replay, runs its lane, reports, repeats
/// until the pool is dropped.
fn lane_thread(program: &Program, lane: usize, board: &Board, track: Track) {
    let mut exit = LaneExit {
        board,
        lane,
        busy: false,
    };
    let mut seen = 0;
    loop {
        let table = {
            let mut st = board.lock();
            while st.epoch == seen && !st.shutdown {
                st = board.start.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.shutdown {
                return;
            }
            seen = st.epoch;
            st.table.clone()
        };
        exit.busy = true;
        let counts = match &table {
            Some(table) => run_lane(program, lane, table, board, track),
            None => LaneCounts::default(),
        };
        drop(table);
        exit.busy = false;
        let mut st = board.lock();
        st.counts.add(counts);
        st.finished += 1;
        drop(st);
        board.progress.notify_all();
    }
}
