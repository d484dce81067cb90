//! The state a stream handle and its worker share: the queue, the
//! counters, the poison/closed/capture flags, and the two condition
//! variables (work arrived; queue drained).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::capture::{Capture, Member};
use super::command::Command;

#[derive(Default)]
pub(crate) struct State {
    pub(crate) queue: VecDeque<Command>,
    pub(crate) submitted: u64,
    pub(crate) completed: u64,
    pub(crate) tasks_run: u64,
    pub(crate) tasks_skipped: u64,
    pub(crate) poisoned: Option<String>,
    pub(crate) closed: bool,
    pub(crate) worker_gone: bool,
    pub(crate) worker_waiting: bool,
    /// The capture the stream records into (begun here or joined).
    pub(crate) capture: Option<Member>,
}

impl State {
    /// Whether the stream is in a capture; one that its origin has ended
    /// meanwhile is dropped here.
    pub(crate) fn capturing(&mut self) -> bool {
        match &self.capture {
            None => false,
            Some(member) if member.capture.is_open() => true,
            Some(_) => {
                self.capture = None;
                false
            }
        }
    }
}

pub(crate) struct Shared {
    pub(crate) id: u64,
    state: Mutex<State>,
    work: Condvar,
    pub(crate) idle: Condvar,
}

impl Shared {
    pub(crate) fn new(id: u64) -> Self {
        Shared {
            id,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
        }
    }

    /// The state; a poisoned mutex is taken over (every update of the
    /// state is complete before code that could panic runs).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wait_for_work<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.work.wait(st).unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wait_idle<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.idle.wait(st).unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the stream out of `capture` (it ended), if it is still in it.
    pub(crate) fn leave_capture(&self, capture: &Arc<Capture>) {
        let mut st = self.lock();
        if st
            .capture
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(&m.capture, capture))
        {
            st.capture = None;
        }
    }

    pub(crate) fn wake_worker(&self) {
        self.work.notify_one();
    }
}
