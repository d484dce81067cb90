//! Events: markers recorded into a stream's queue. The host can query or
//! wait for one, another stream can wait for one (ordering across streams
//! without blocking the host), and two completed events give the time
//! between them. Each `record` bumps a generation; waits and queries
//! concern the latest record made before them.
//!
//! A record made by a capturing stream is a *capture mark* instead: it
//! bumps no generation and only remembers a point of that capture (see
//! `stream::capture`). A later real record clears the mark ("last record
//! wins"); `query`, `synchronize` and `elapsed_since` see real records
//! only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::error::RuntimeError;
use crate::stream::capture::{Capture, Point};

static NEXT_EVENT: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct State {
    /// Records queued so far (0: never recorded).
    recorded: u64,
    /// Highest record generation reached by its stream.
    completed: u64,
    /// When the latest completed record was reached.
    at: Option<Instant>,
    /// Set when the latest completed record was reached by a poisoned
    /// stream.
    failure: Option<String>,
    /// Set when the latest record was made during a capture.
    mark: Option<CaptureMark>,
}

/// Where in a capture an event was last recorded.
#[derive(Clone)]
pub(crate) struct CaptureMark {
    /// The capture (weak: an event does not keep a capture alive).
    pub(crate) capture: Weak<Capture>,
    /// What a command waiting on the event depends on.
    pub(crate) point: Point,
}

pub(crate) struct EventInner {
    id: u64,
    state: Mutex<State>,
    reached: Condvar,
}

impl EventInner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by a stream's worker when it reaches record `generation`.
    pub(crate) fn complete(&self, generation: u64, failure: Option<String>) {
        let mut st = self.lock();
        if generation >= st.completed {
            st.completed = generation;
            st.at = Some(Instant::now());
            st.failure = failure;
        }
        drop(st);
        self.reached.notify_all();
    }

    /// Blocks until record `generation` has been reached; the failure of
    /// the recording stream, if it was poisoned.
    pub(crate) fn wait_for(&self, generation: u64) -> Result<(), String> {
        let mut st = self.lock();
        while st.completed < generation {
            st = self
                .reached
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match &st.failure {
            Some(reason) => Err(format!("event {} failed: {reason}", self.id)),
            None => Ok(()),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// A marker in a stream's queue. Cloning gives another handle to the same
/// event.
#[derive(Clone)]
pub struct Event {
    pub(crate) inner: Arc<EventInner>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Event({})", self.id())
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A new, never-recorded event.
    pub fn new() -> Self {
        Event {
            inner: Arc::new(EventInner {
                id: NEXT_EVENT.fetch_add(1, Ordering::Relaxed),
                state: Mutex::new(State::default()),
                reached: Condvar::new(),
            }),
        }
    }

    /// Process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Assigns the next record generation (called by `Stream::record`);
    /// a real record replaces any capture mark.
    pub(crate) fn next_generation(&self) -> u64 {
        let mut st = self.inner.lock();
        st.recorded += 1;
        st.mark = None;
        st.recorded
    }

    /// Marks the event as recorded at `mark` of a capture (called by a
    /// capturing stream's `record`).
    pub(crate) fn set_capture_mark(&self, mark: CaptureMark) {
        self.inner.lock().mark = Some(mark);
    }

    /// The capture mark of the latest record, if it was made during a
    /// capture.
    pub(crate) fn capture_mark(&self) -> Option<CaptureMark> {
        self.inner.lock().mark.clone()
    }

    /// The generation of the latest record, if any.
    pub(crate) fn latest(&self) -> Result<u64, RuntimeError> {
        match self.inner.lock().recorded {
            0 => Err(RuntimeError::EventNotRecorded { event: self.id() }),
            g => Ok(g),
        }
    }

    /// Whether the latest record has been reached by its stream.
    pub fn query(&self) -> Result<bool, RuntimeError> {
        let st = self.inner.lock();
        if st.recorded == 0 {
            return Err(RuntimeError::EventNotRecorded { event: self.id() });
        }
        Ok(st.completed >= st.recorded)
    }

    /// Blocks the host until the latest record has been reached. Fails if
    /// the event was never recorded or its stream was poisoned first.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        let generation = self.latest()?;
        self.inner
            .wait_for(generation)
            .map_err(|reason| RuntimeError::EventFailed {
                event: self.id(),
                reason,
            })
    }

    fn reached_at(&self) -> Result<Instant, RuntimeError> {
        let st = self.inner.lock();
        match (st.recorded, st.at) {
            (0, _) => Err(RuntimeError::EventNotRecorded { event: self.id() }),
            (r, Some(at)) if st.completed >= r => Ok(at),
            _ => Err(RuntimeError::EventPending { event: self.id() }),
        }
    }

    /// Time from `start` being reached to `self` being reached (both must
    /// have completed; zero if `self` was reached first).
    pub fn elapsed_since(&self, start: &Event) -> Result<Duration, RuntimeError> {
        let begin = start.reached_at()?;
        let end = self.reached_at()?;
        Ok(end.saturating_duration_since(begin))
    }
}
