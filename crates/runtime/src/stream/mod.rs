//! Streams: in-order queues run asynchronously by their own worker thread.
//! Commands are launches, copies, fills, uploads, host callbacks, event
//! records and event waits; a stream in capture mode records its launches
//! into a [`Graph`] instead (other streams can join the capture through
//! events, see [`capture`]), and [`Stream::replay`] submits an
//! instantiated graph as one queue entry. Misuse comes back as
//! [`RuntimeError`]; a failing task poisons only its own stream.

pub(crate) mod capture;
mod command;
mod shared;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use exodus_trace::{set_track_name, Track};

use crate::buffer::{check_len, DeviceBuffer};
use crate::error::RuntimeError;
use crate::event::Event;
use crate::graph::{Graph, GraphExec};
use crate::launch::Launch;
use crate::pod::Pod;
use capture::{mark_in, Member, Point};
use command::Command;
use shared::{Shared, State};

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// A fresh stream-track id (streams and graph lane threads share them).
pub(crate) fn next_track_id() -> u64 {
    NEXT_STREAM.fetch_add(1, Ordering::Relaxed)
}

/// Counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Queue entries submitted (a graph replay is one).
    pub submitted: u64,
    /// Queue entries finished (run or skipped).
    pub completed: u64,
    /// Task closures run (launches, copies, fills, uploads, host
    /// callbacks, and every node of a replayed graph).
    pub tasks_run: u64,
    /// Tasks skipped because the stream was poisoned.
    pub tasks_skipped: u64,
}

/// An in-order queue with its own worker thread. Share it between threads
/// by reference (`&Stream` or `Arc<Stream>`); dropping it runs what is
/// queued, then stops the worker.
pub struct Stream {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream({})", self.id())
    }
}

impl Stream {
    /// A new stream with its worker thread, named "stream N" in traces.
    pub fn new() -> Result<Stream, RuntimeError> {
        let id = next_track_id();
        let shared = Arc::new(Shared::new(id));
        let for_worker = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name(format!("exodus-stream-{id}"))
            .spawn(move || worker::run(for_worker))
            .map_err(|e| RuntimeError::Worker(format!("cannot start stream {id}: {e}")))?;
        set_track_name(Track::stream(id), format!("stream {id}"));
        Ok(Stream {
            shared,
            worker: Mutex::new(Some(handle)),
        })
    }

    /// Process-unique id (the trace track id).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn check_open(&self, st: &State) -> Result<(), RuntimeError> {
        let stream = self.id();
        if st.closed {
            return Err(RuntimeError::StreamClosed { stream });
        }
        if let Some(reason) = &st.poisoned {
            return Err(RuntimeError::StreamPoisoned {
                stream,
                reason: reason.clone(),
            });
        }
        if st.worker_gone {
            return Err(RuntimeError::Worker(format!(
                "stream {stream}: worker exited"
            )));
        }
        Ok(())
    }

    /// Appends `cmd` to the queue (not allowed while capturing).
    fn submit(&self, cmd: Command, what: &'static str) -> Result<(), RuntimeError> {
        let st = self.lock();
        self.check_open(&st)?;
        self.push(st, cmd, what)
    }

    /// Appends `cmd` under the already-taken lock (checked open).
    fn push(
        &self,
        mut st: MutexGuard<'_, State>,
        cmd: Command,
        what: &'static str,
    ) -> Result<(), RuntimeError> {
        if st.capturing() {
            return Err(RuntimeError::NotCapturable {
                stream: self.id(),
                what,
            });
        }
        st.queue.push_back(cmd);
        st.submitted += 1;
        let wake = st.worker_waiting;
        drop(st);
        if wake {
            self.shared.wake_worker();
        }
        Ok(())
    }

    /// Queues a launch, or records it if the stream is capturing.
    pub fn launch(&self, launch: Launch) -> Result<(), RuntimeError> {
        let plan = launch.plan()?;
        let mut st = self.lock();
        self.check_open(&st)?;
        if let Some(member) = st.capture.clone() {
            if let Some(mut capture) = member.capture.open() {
                capture.launch(member.lane, launch);
                return Ok(());
            }
            st.capture = None;
        }
        let (node, table) = launch.into_node(plan);
        self.push(st, Command::Run { node, table }, "launch")
    }

    /// Queues a copy of `src` into `dst` (same length).
    pub fn copy<T: Pod>(
        &self,
        src: &DeviceBuffer<T>,
        dst: &DeviceBuffer<T>,
    ) -> Result<(), RuntimeError> {
        check_len("copy destination", src.len(), dst.len())?;
        let task = Launch::new("copy", |k| {
            let src = k.input::<T>(0)?;
            let mut dst = k.output::<T>(0)?;
            check_len("copy destination", src.len(), dst.len())?;
            dst.copy_from_slice(&src);
            Ok(())
        });
        self.launch(task.input(src).output(dst).with_category("copy"))
    }

    /// Queues setting every element of `dst` to `value`.
    pub fn fill<T: Pod>(&self, dst: &DeviceBuffer<T>, value: T) -> Result<(), RuntimeError> {
        let task = Launch::new("fill", move |k| {
            k.output::<T>(0)?.fill(value);
            Ok(())
        });
        self.launch(task.output(dst).with_category("copy"))
    }

    /// Queues a copy of host data into `dst` (same length). The data is
    /// owned by the command (and by a captured graph, which re-uploads it
    /// on every replay).
    pub fn upload<T: Pod>(&self, dst: &DeviceBuffer<T>, data: Vec<T>) -> Result<(), RuntimeError> {
        check_len("upload source", dst.len(), data.len())?;
        let task = Launch::new("upload", move |k| {
            let mut dst = k.output::<T>(0)?;
            check_len("upload source", dst.len(), data.len())?;
            dst.copy_from_slice(&data);
            Ok(())
        });
        self.launch(task.output(dst).with_category("copy"))
    }

    /// Queues a host callback, run on the stream's worker in order.
    pub fn host_fn<F>(&self, name: &'static str, f: F) -> Result<(), RuntimeError>
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.launch(
            Launch::new(name, move |_| {
                f();
                Ok(())
            })
            .with_category("host"),
        )
    }

    /// Records `event` here: it completes when the worker reaches this
    /// point of the queue. On a capturing stream it is a capture-time
    /// record instead: it marks this point of the capture, so that a
    /// stream waiting on `event` depends on (or, if not capturing, joins
    /// the capture at) the work captured here so far; the event's real
    /// state is left alone.
    pub fn record(&self, event: &Event) -> Result<(), RuntimeError> {
        // Check before taking a generation, so a refused record leaves the
        // event's state alone.
        {
            let mut st = self.lock();
            self.check_open(&st)?;
            if let Some(member) = st.capture.clone() {
                if let Some(capture) = member.capture.open() {
                    capture.record(&member, event);
                    return Ok(());
                }
                st.capture = None;
            }
        }
        let generation = event.next_generation();
        let cmd = Command::Record {
            event: Arc::clone(&event.inner),
            generation,
        };
        if let Err(e) = self.submit(cmd, "event record") {
            // Closed or poisoned in between: complete the generation so
            // that no waiter hangs on it.
            event.inner.complete(generation, Some(e.to_string()));
            return Err(e);
        }
        Ok(())
    }

    /// Makes later commands of this stream wait until `event`'s latest
    /// record is reached (the host does not block).
    ///
    /// During a capture: on a capturing stream, its next captured
    /// commands depend on the work captured before `event`'s record,
    /// which must have been made in the same capture
    /// ([`RuntimeError::NotCapturable`] otherwise). On a stream that is not
    /// capturing, if `event` was last recorded in a capture still in
    /// progress, this stream joins that capture: its later commands are
    /// captured (not run), after the work captured before the record,
    /// until the stream that began the capture ends it.
    pub fn wait_event(&self, event: &Event) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        if let Some(member) = st.capture.clone() {
            if let Some(mut capture) = member.capture.open() {
                self.check_open(&st)?;
                let point = self.point_in(event, &member)?;
                capture.wait(member.lane, &point);
                return Ok(());
            }
            st.capture = None;
        }
        if self.join_capture(&mut st, event)? {
            return Ok(());
        }
        let generation = event.latest()?;
        self.check_open(&st)?;
        let cmd = Command::Wait {
            event: Arc::clone(&event.inner),
            generation,
        };
        self.push(st, cmd, "event wait")
    }

    /// Where `event` was recorded in `member`'s capture; a typed error if
    /// its latest record was not made there.
    fn point_in(&self, event: &Event, member: &Member) -> Result<Point, RuntimeError> {
        if let Some(point) = mark_in(event, &member.capture) {
            return Ok(point);
        }
        if event.capture_mark().is_none() {
            event.latest()?;
        }
        Err(RuntimeError::NotCapturable {
            stream: self.id(),
            what: "a wait on an event recorded outside the capture",
        })
    }

    /// Joins the capture `event` was last recorded in, if that capture is
    /// still in progress (a fork); whether it did.
    fn join_capture(&self, st: &mut State, event: &Event) -> Result<bool, RuntimeError> {
        let Some(mark) = event.capture_mark() else {
            return Ok(false);
        };
        let Some(captured) = mark.capture.upgrade() else {
            return Ok(false);
        };
        let Some(mut capture) = captured.open() else {
            return Ok(false);
        };
        self.check_open(st)?;
        let lane = capture.join(self.id(), Arc::downgrade(&self.shared), mark.point);
        drop(capture);
        st.capture = Some(Member {
            capture: captured,
            lane,
        });
        Ok(true)
    }

    /// Submits every launch of `graph` as one queue entry. Refuses if a
    /// buffer it was captured with has been freed or resized.
    pub fn replay(&self, graph: &GraphExec) -> Result<(), RuntimeError> {
        let table = graph.inner.program.buffers()?;
        let cmd = Command::Replay {
            exec: Arc::clone(&graph.inner),
            table,
        };
        self.submit(cmd, "graph replay")
    }

    /// Starts recording launches into a graph instead of running them.
    ///
    /// Other streams join the capture through events: `record(&e)` here,
    /// then `wait_event(&e)` on a stream that is not capturing forks the
    /// capture onto it; `record(&e2)` there and `wait_event(&e2)` here
    /// joins it back. The graph is then a DAG whose branches replay
    /// concurrently (see [`Graph`]).
    pub fn begin_capture(&self) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        self.check_open(&st)?;
        if st.capturing() {
            return Err(RuntimeError::CaptureInProgress { stream: self.id() });
        }
        st.capture = Some(Member::begin(self.id(), Arc::downgrade(&self.shared)));
        Ok(())
    }

    /// Whether the stream is capturing (it began a capture or joined one).
    pub fn is_capturing(&self) -> bool {
        self.lock().capturing()
    }

    /// Stops capturing and returns the recorded graph. Only the stream
    /// that began the capture can end it
    /// ([`RuntimeError::CaptureNotOrigin`] on a joined stream, which
    /// stays in the capture). Every joined stream leaves the capture and
    /// runs its later commands again. If a joined stream captured work
    /// that this stream never waited on (directly or through other
    /// streams), the capture is discarded with
    /// [`RuntimeError::CaptureUnjoined`].
    pub fn end_capture(&self) -> Result<Graph, RuntimeError> {
        let member = {
            let mut st = self.lock();
            let member = match st.capture.clone() {
                Some(member) if st.capturing() => member,
                _ => return Err(RuntimeError::CaptureNotStarted { stream: self.id() }),
            };
            if !member.is_origin() {
                return Err(RuntimeError::CaptureNotOrigin {
                    stream: self.id(),
                    origin: member.capture.origin(),
                });
            }
            st.capture = None;
            member
        };
        member.capture.end()
    }

    /// Whether everything queued has finished (an error if the stream is
    /// poisoned).
    pub fn query(&self) -> Result<bool, RuntimeError> {
        let st = self.lock();
        if let Some(reason) = &st.poisoned {
            return Err(RuntimeError::StreamPoisoned {
                stream: self.id(),
                reason: reason.clone(),
            });
        }
        Ok(st.completed == st.submitted)
    }

    /// Blocks until everything queued has finished. Fails if the stream is
    /// capturing (end the capture first), or was poisoned.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        if st.capturing() {
            return Err(RuntimeError::CaptureInProgress { stream: self.id() });
        }
        self.drain(st)
    }

    fn drain(&self, mut st: MutexGuard<'_, State>) -> Result<(), RuntimeError> {
        while st.completed < st.submitted && !st.worker_gone {
            st = self.shared.wait_idle(st);
        }
        if let Some(reason) = &st.poisoned {
            return Err(RuntimeError::StreamPoisoned {
                stream: self.id(),
                reason: reason.clone(),
            });
        }
        if st.completed < st.submitted {
            return Err(RuntimeError::Worker(format!(
                "stream {}: worker exited with {} commands pending",
                self.id(),
                st.submitted - st.completed
            )));
        }
        Ok(())
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        let st = self.lock();
        StreamStats {
            submitted: st.submitted,
            completed: st.completed,
            tasks_run: st.tasks_run,
            tasks_skipped: st.tasks_skipped,
        }
    }

    /// Runs what is queued, stops the worker and refuses further commands.
    /// An unfinished capture is reported as
    /// [`RuntimeError::CaptureInProgress`]: discarded (every joined stream
    /// leaves it) if this stream began it, left to its origin (with what
    /// this stream captured so far) if this stream joined it. A poisoned
    /// stream reports its poison. Closing twice is fine.
    pub fn close(&self) -> Result<(), RuntimeError> {
        let handle = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A host callback may close (or drop) its own stream: the worker
        // then finishes the queue and exits by itself.
        let on_worker = handle
            .as_ref()
            .is_some_and(|h| h.thread().id() == std::thread::current().id());
        let mut st = self.lock();
        let was_capturing = st.capturing();
        let member = st.capture.take();
        st.closed = true;
        drop(st);
        if let Some(member) = member.filter(|m| was_capturing && m.is_origin()) {
            let _ = member.capture.end();
        }
        self.shared.wake_worker();
        if on_worker {
            return Ok(());
        }
        let drained = self.drain(self.lock());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        if was_capturing {
            return Err(RuntimeError::CaptureInProgress { stream: self.id() });
        }
        drained
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
