//! The engine: one thread that owns the model and runs the
//! [`Scheduler`]'s steps back to back, and the handles clients use from any
//! thread (or async task) to submit requests and read their tokens.
//!
//! Submission is synchronous and fails fast ([`SubmitError`]): the queue
//! limits are checked under the same lock the scheduler plans under, so
//! there is no window where a full queue takes one more. Each request gets
//! a [`RequestStream`] of [`Event`]s (a `tokio` channel: `next().await` in
//! async code, `blocking_next()` elsewhere). Dropping the stream before the
//! end cancels the request and frees its KV blocks at once; so does a
//! stream whose receiver is gone when a token is sent.
//!
//! The model step runs outside the lock, so submissions, cancellations and
//! metric reads never wait for a step. A step that fails (or panics) is
//! run again request by request; the requests that fail alone end with
//! [`FinishReason::Error`](crate::FinishReason::Error), and the engine goes
//! on with the others.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use exodus_model::{Model, SeqStep};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::request::{Event, GenerationRequest, RequestId, SubmitError};
use crate::scheduler::{Scheduler, SchedulerStats, StepPlan, Work};

/// What runs a step: the model, or a fake one in tests.
pub trait StepModel: Send + 'static {
    /// Runs every [`Work`] of a step (tokens at their positions, through
    /// their block tables) and returns the logits of each one's last token,
    /// `vocab` values each, in order.
    fn run_step(&self, work: &[Work]) -> Result<Vec<f32>, String>;
}

impl StepModel for Model {
    fn run_step(&self, work: &[Work]) -> Result<Vec<f32>, String> {
        let seqs: Vec<SeqStep> = work
            .iter()
            .map(|w| SeqStep {
                tokens: &w.tokens,
                start: w.start,
                table: &w.table,
            })
            .collect();
        self.step(&seqs).map_err(|e| e.to_string())
    }
}

/// How [`Engine::shutdown`] treats the requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Take no new requests; finish the admitted ones, then stop.
    Drain,
    /// Cancel everything now, then stop.
    Cancel,
}

struct State {
    scheduler: Scheduler,
    streams: HashMap<RequestId, UnboundedSender<Event>>,
    next_id: RequestId,
    shutdown: Option<Shutdown>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is caught around the model step,
        // which runs unlocked; the state is consistent between calls.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cancel(&self, id: RequestId) {
        let mut st = self.lock();
        if let Some(event) = st.scheduler.cancel(id, Instant::now()) {
            if let Some(tx) = st.streams.remove(&id) {
                let _ = tx.send(event);
            }
        }
        drop(st);
        self.wake.notify_one();
    }
}

/// Sends `events` to their streams. A stream whose client is gone gets its
/// request cancelled (its blocks freed) here.
fn dispatch(st: &mut State, events: Vec<(RequestId, Event)>) {
    for (id, event) in events {
        let finished = matches!(event, Event::Finished { .. });
        let delivered = st.streams.get(&id).is_some_and(|tx| tx.send(event).is_ok());
        if finished {
            st.streams.remove(&id);
        } else if !delivered {
            st.streams.remove(&id);
            let _ = st.scheduler.cancel(id, Instant::now());
        }
    }
}

/// The serving engine (see the [module docs](self)).
pub struct Engine {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine thread with `model` and `scheduler` (whose KV
    /// blocks are the model's pool).
    pub fn start<M: StepModel>(model: M, scheduler: Scheduler) -> std::io::Result<Engine> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                scheduler,
                streams: HashMap::new(),
                next_id: 1,
                shutdown: None,
            }),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("exodus-engine".into())
            .spawn(move || run(&worker, &model))?;
        Ok(Engine {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `req`, or refuses it at once.
    pub fn submit(&self, req: GenerationRequest) -> Result<RequestStream, SubmitError> {
        let mut st = self.shared.lock();
        if st.shutdown.is_some() {
            return Err(SubmitError::ShuttingDown);
        }
        let id = st.next_id;
        st.scheduler.submit(id, req, Instant::now())?;
        st.next_id += 1;
        let (tx, rx) = unbounded_channel();
        st.streams.insert(id, tx);
        drop(st);
        self.shared.wake.notify_one();
        Ok(RequestStream {
            id,
            rx,
            shared: Arc::downgrade(&self.shared),
            done: false,
        })
    }

    /// Counters and gauges now.
    pub fn stats(&self) -> SchedulerStats {
        self.shared.lock().scheduler.stats()
    }

    /// The scheduler's limits.
    pub fn config(&self) -> crate::scheduler::SchedulerConfig {
        self.shared.lock().scheduler.config().clone()
    }

    /// Stops taking requests and ends the engine thread: after the admitted
    /// requests finish ([`Shutdown::Drain`]) or at once, cancelling them
    /// ([`Shutdown::Cancel`]). Returns when the thread has ended.
    pub fn shutdown(&self, how: Shutdown) {
        {
            let mut st = self.shared.lock();
            st.shutdown = Some(match (st.shutdown, how) {
                (Some(Shutdown::Cancel), _) => Shutdown::Cancel,
                _ => how,
            });
        }
        self.shared.wake.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(Shutdown::Cancel);
    }
}

/// The engine thread: plan, run, complete, until shut down.
fn run<M: StepModel>(shared: &Shared, model: &M) {
    loop {
        let plan = {
            let mut st = shared.lock();
            loop {
                if st.shutdown == Some(Shutdown::Cancel) {
                    cancel_all(&mut st);
                    return;
                }
                let mut events = Vec::new();
                let plan = st.scheduler.schedule(Instant::now(), &mut events);
                dispatch(&mut st, events);
                if !plan.work.is_empty() {
                    break plan;
                }
                if st.shutdown.is_some() && st.scheduler.is_idle() {
                    return;
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = step(model, &plan.work);
        let mut st = shared.lock();
        let events = match result {
            Ok(logits) => st.scheduler.complete(&plan, Ok(&logits), Instant::now()),
            Err(msg) if plan.work.len() == 1 => {
                st.scheduler.complete(&plan, Err(msg), Instant::now())
            }
            Err(_) => {
                // Find which requests fail: run each alone (a rerun writes
                // the same KV again), so one bad request does not take the
                // step's others down with it.
                drop(st);
                let alone: Vec<_> = plan
                    .work
                    .iter()
                    .map(|w| step(model, std::slice::from_ref(w)))
                    .collect();
                st = shared.lock();
                let mut events = Vec::new();
                for (w, result) in plan.work.iter().zip(alone) {
                    let one = StepPlan {
                        work: vec![w.clone()],
                    };
                    let logits = result.as_deref().map_err(Clone::clone);
                    events.extend(st.scheduler.complete(&one, logits, Instant::now()));
                }
                events
            }
        };
        dispatch(&mut st, events);
    }
}

/// One model step; a panic inside becomes an error of the step.
fn step<M: StepModel>(model: &M, work: &[Work]) -> Result<Vec<f32>, String> {
    catch_unwind(AssertUnwindSafe(|| model.run_step(work))).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("the model step panicked: {msg}"))
    })
}

fn cancel_all(st: &mut State) {
    let ids: Vec<RequestId> = st.streams.keys().copied().collect();
    for id in ids {
        if let Some(event) = st.scheduler.cancel(id, Instant::now()) {
            if let Some(tx) = st.streams.remove(&id) {
                let _ = tx.send(event);
            }
        }
    }
}

/// The events of one request: tokens, then one [`Event::Finished`].
/// Dropping it before the end cancels the request.
pub struct RequestStream {
    id: RequestId,
    rx: UnboundedReceiver<Event>,
    shared: Weak<Shared>,
    done: bool,
}

impl RequestStream {
    /// The request's id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    fn seen(&mut self, event: Option<Event>) -> Option<Event> {
        match &event {
            Some(Event::Finished { .. }) | None => self.done = true,
            Some(Event::Token { .. }) => {}
        }
        event
    }

    /// The next event (`None` after the `Finished` one).
    pub async fn next(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        self.seen(event)
    }

    /// The next event, blocking the thread (not for async code).
    pub fn blocking_next(&mut self) -> Option<Event> {
        let event = self.rx.blocking_recv();
        self.seen(event)
    }

    /// Cancels the request (its `Finished` event says
    /// [`FinishReason::Cancelled`](crate::FinishReason::Cancelled) unless it had already ended).
    pub fn cancel(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.cancel(self.id);
        }
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.done {
            self.cancel();
        }
    }
}

impl std::fmt::Debug for RequestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStream")
            .field("id", &self.id)
            .finish()
    }
}
