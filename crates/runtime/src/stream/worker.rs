//! The worker thread behind each stream: takes whatever is queued in one
//! go, runs it in order outside the lock, then accounts for it. After a
//! task fails the stream is poisoned: the remaining launches are skipped,
//! event records still complete (marked failed) so no other stream waits
//! forever. A replay of a single-lane graph runs here, segment by segment;
//! a multi-lane one runs its lane 0 here and the others on the graph's
//! lane threads (`graph::lanes`), and ends when they all have.

use std::sync::Arc;

use exodus_trace::{enabled, now_ns, record, Span, Track};

use super::command::Command;
use super::shared::Shared;
use crate::buffer::ErasedBuffer;
use crate::graph::{ExecInner, LaneCounts};
use crate::kernel::{execute, execute_held, lock_all, traced};
use crate::launch::Node;

/// Counts of one batch, added to the stream's counters under its lock.
#[derive(Default)]
struct Tally {
    commands: u64,
    tasks_run: u64,
    tasks_skipped: u64,
}

struct Worker {
    shared: Arc<Shared>,
    track: Track,
    poisoned: Option<String>,
    tally: Tally,
}

/// Marks the worker gone on every exit (also if it unwinds from a bug),
/// failing any queued event records so that nothing waits on them.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.worker_gone = true;
        for cmd in st.queue.drain(..) {
            if let Command::Record { event, generation } = cmd {
                event.complete(generation, Some("stream worker exited".into()));
            }
        }
        drop(st);
        self.0.idle.notify_all();
    }
}

pub(crate) fn run(shared: Arc<Shared>) {
    let _exit = ExitGuard(Arc::clone(&shared));
    let mut worker = Worker {
        track: Track::stream(shared.id),
        shared,
        poisoned: None,
        tally: Tally::default(),
    };
    let mut batch = std::collections::VecDeque::new();
    loop {
        {
            let mut st = worker.shared.lock();
            let tally = std::mem::take(&mut worker.tally);
            st.completed += tally.commands;
            st.tasks_run += tally.tasks_run;
            st.tasks_skipped += tally.tasks_skipped;
            if st.completed == st.submitted {
                worker.shared.idle.notify_all();
            }
            while st.queue.is_empty() {
                if st.closed {
                    return;
                }
                st.worker_waiting = true;
                st = worker.shared.wait_for_work(st);
                st.worker_waiting = false;
            }
            std::mem::swap(&mut batch, &mut st.queue);
        }
        for cmd in batch.drain(..) {
            worker.command(cmd);
            worker.tally.commands += 1;
        }
    }
}

impl Worker {
    fn poison(&mut self, reason: String) {
        let mut st = self.shared.lock();
        st.poisoned.get_or_insert_with(|| reason.clone());
        self.poisoned = Some(reason);
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Run { node, table } => self.task(&node, &table),
            Command::Replay { exec, table } => match &exec.pool {
                None => self.replay(&exec, &table),
                Some(_) => self.replay_lanes(&exec, table),
            },
            Command::Record { event, generation } => {
                event.complete(generation, self.poisoned.clone());
            }
            Command::Wait { event, generation } => {
                if self.poisoned.is_some() {
                    return;
                }
                let start = enabled().then(now_ns);
                let outcome = event.wait_for(generation);
                if let Some(start) = start {
                    let span = Span::new("event wait", "wait", self.track, start, now_ns() - start)
                        .with_arg("event", event.id());
                    record(span);
                }
                if let Err(reason) = outcome {
                    self.poison(format!("waited on a failed event: {reason}"));
                }
            }
        }
    }

    /// Replays a single-lane graph here, segment by segment.
    fn replay(&mut self, exec: &ExecInner, table: &[Arc<dyn ErasedBuffer>]) {
        let program = &*exec.program;
        for seg in &program.segments {
            let held = (self.poisoned.is_none() && !seg.locks.is_empty())
                .then(|| lock_all(table, &seg.locks));
            for n in seg.nodes.clone() {
                let node = &program.nodes[n];
                match &held {
                    Some(held) => self.task_with(node, |node| {
                        execute_held(node, table, held, &program.slot_maps[n])
                    }),
                    None => self.task(node, table),
                }
            }
        }
    }

    /// Replays a multi-lane graph: lane 0 here, the others on the graph's
    /// lane threads; the first failure of any lane poisons this stream.
    fn replay_lanes(&mut self, exec: &ExecInner, table: Vec<Arc<dyn ErasedBuffer>>) {
        let (Some(pool), None) = (&exec.pool, &self.poisoned) else {
            self.tally.tasks_skipped += exec.program.nodes.len() as u64;
            return;
        };
        let (counts, failure): (LaneCounts, _) = pool.replay(&exec.program, table, self.track);
        self.tally.tasks_run += counts.run;
        self.tally.tasks_skipped += counts.skipped;
        if let Some(reason) = failure {
            self.poison(reason);
        }
    }

    fn task(&mut self, node: &Node, table: &[Arc<dyn ErasedBuffer>]) {
        self.task_with(node, |node| execute(node, table));
    }

    /// Runs `node` through `run` (which takes or already holds its locks),
    /// with its trace span; skipped once the stream is poisoned.
    fn task_with(&mut self, node: &Node, run: impl FnOnce(&Node) -> Result<(), String>) {
        if self.poisoned.is_some() {
            self.tally.tasks_skipped += 1;
            return;
        }
        let outcome = traced(node, self.track, run);
        self.tally.tasks_run += 1;
        if let Err(reason) = outcome {
            self.poison(reason);
        }
    }
}
