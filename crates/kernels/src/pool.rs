//! Persistent worker threads for data-parallel kernels.
//!
//! A [`ThreadPool`] of `t` threads spawns `t - 1` workers once; they park on
//! a condition variable between jobs. [`ThreadPool::parallel_for`] runs
//! `f(0) .. f(n_tasks - 1)` on the workers *and the calling thread* (tasks
//! are claimed from an atomic counter, so uneven tasks balance themselves)
//! and returns only when every task has finished. The closure may borrow
//! from the caller's stack.
//!
//! - A panic in a task is caught, the remaining unclaimed tasks are skipped,
//!   and the first panic is re-raised on the calling thread once all
//!   running tasks have ended; the pool stays usable. It never hangs.
//! - A `parallel_for` issued from inside a task of the same (or any) pool
//!   runs its tasks inline on that thread, so nesting cannot deadlock.
//! - Two threads submitting to one pool at once are served one after the
//!   other.
//!
//! - [`ThreadPool::stay_awake`] returns a guard while which idle workers
//!   spin for the next job instead of parking on the condition variable,
//!   and the submitter spins for the workers to finish. A replayed launch
//!   graph holds it for the length of one replay: it knows its launches
//!   follow each other within microseconds, so the futex sleep and wake
//!   (tens of microseconds on a virtual machine) between two parallel
//!   kernels is pure loss. Eager code does not hold it: between two of its
//!   launches the host may do anything for any time, and a spinning worker
//!   would take a core from it.
//!
//! [`global`] is the process-wide pool, sized by `EXODUS_THREADS` or else
//! [`std::thread::available_parallelism`]; tests build explicit pools with
//! [`ThreadPool::new`].
//!
//! The only `unsafe` is `erase_lifetime`: workers are `'static` threads,
//! so the borrowed job closure is handed to them with its lifetime erased.
//! That is sound because `parallel_for` does not return (nor unwind) before
//! every worker has dropped its copy of the reference (see the function's
//! safety comment and the `borrowed_data_outlives_no_task` test).

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

/// A job's task function with its borrow lifetime.
type TaskFn<'a> = &'a (dyn Fn(usize) + Sync + 'a);

/// A panic payload caught in a task.
type Panic = Box<dyn Any + Send + 'static>;

/// One published job: the task function and how many tasks it has.
#[derive(Clone, Copy)]
struct Job {
    task: TaskFn<'static>,
    n_tasks: usize,
}

/// Erases the lifetime of a job closure so `'static` worker threads can
/// hold it.
///
/// # Safety
/// The caller must guarantee that no copy of the returned reference is
/// dereferenced (or even held) after `'a` ends. `parallel_for` guarantees
/// it: a worker copies the reference and increments `active` in one
/// critical section of the state mutex, drops its copy before decrementing
/// `active`, and `parallel_for` clears the published job and observes
/// `active == 0` in one critical section before it returns; its own task
/// loop runs under `catch_unwind`, so it cannot unwind past that wait.
unsafe fn erase_lifetime<'a>(task: TaskFn<'a>) -> TaskFn<'static> {
    // SAFETY: a fat reference has the same layout whatever its lifetime;
    // the validity argument is the caller's (see above).
    unsafe { std::mem::transmute::<TaskFn<'a>, TaskFn<'static>>(task) }
}

/// Mutable pool state, behind the mutex.
struct State {
    /// The job being run, if any.
    job: Option<Job>,
    /// Bumped for every published job, so a worker joins each job once.
    generation: u64,
    /// Workers holding a copy of `job`.
    active: usize,
    /// First panic caught in a worker during the current job.
    panic: Option<Panic>,
    /// Set once, when the pool is dropped.
    shutdown: bool,
    /// Workers parked on `wake` (the submitter notifies only if some are).
    sleeping: usize,
}

/// State shared between the pool handle and its workers.
struct Shared {
    state: Mutex<State>,
    /// Workers wait here for a new job (or shutdown).
    wake: Condvar,
    /// The submitter waits here for `active` to reach zero.
    done: Condvar,
    /// Next unclaimed task index of the current job.
    next: AtomicUsize,
    /// Live [`StayAwake`] guards: while non-zero, idle threads spin.
    awake: AtomicUsize,
    /// A copy of `State::generation`, read by spinning workers without the
    /// lock (a hint only: every decision is re-checked under the lock).
    published: AtomicU64,
    /// A copy of `State::active`, read by a spinning submitter (a hint, as
    /// `published`).
    active_hint: AtomicUsize,
}

/// Spins before a spinning thread yields its core once.
const SPINS_PER_YIELD: u32 = 1 << 12;

/// Spins while `keep_spinning` holds and the pool is kept awake, yielding
/// the core now and then; returns when either stops.
fn spin_while(shared: &Shared, keep_spinning: impl Fn() -> bool) {
    let mut spins = 0u32;
    while shared.awake.load(Ordering::Acquire) > 0 && keep_spinning() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_PER_YIELD) {
            std::thread::yield_now();
        }
    }
}

/// Keeps a pool's idle threads spinning while it lives (see
/// [`ThreadPool::stay_awake`]).
#[must_use = "the pool is kept awake only while the guard lives"]
pub struct StayAwake<'a> {
    shared: &'a Shared,
}

impl std::fmt::Debug for StayAwake<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StayAwake").finish_non_exhaustive()
    }
}

impl Drop for StayAwake<'_> {
    fn drop(&mut self) {
        self.shared.awake.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    /// Whether this thread is running pool tasks (nested calls run inline).
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Locks, ignoring poisoning: no code holding these locks can panic (task
/// panics are caught before any lock is taken).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fixed set of persistent worker threads (see the module docs).
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes submitters.
    submit: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads())
            .finish()
    }
}

impl ThreadPool {
    /// A pool of `threads` threads in all: the caller of
    /// [`parallel_for`](Self::parallel_for) plus `threads - 1` workers
    /// (`0` is taken as `1`). If the OS refuses to spawn a worker, the pool
    /// keeps the ones it got; [`threads`](Self::threads) tells how many.
    pub fn new(threads: usize) -> ThreadPool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                job: None,
                generation: 0,
                active: 0,
                panic: None,
                shutdown: false,
                sleeping: 0,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            next: AtomicUsize::new(0),
            awake: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            active_hint: AtomicUsize::new(0),
        });
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let s = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("exodus-worker-{i}"))
                .spawn(move || worker_loop(&s))
            {
                Ok(handle) => workers.push(handle),
                Err(_) => break,
            }
        }
        ThreadPool {
            shared,
            workers,
            submit: Mutex::new(()),
        }
    }

    /// Keeps idle workers spinning for the next job (and the submitter
    /// spinning for the workers to finish) until the guard drops, trading
    /// a busy core for the sleep/wake latency between back-to-back jobs.
    /// Guards nest; results are the same with or without one.
    pub fn stay_awake(&self) -> StayAwake<'_> {
        self.shared.awake.fetch_add(1, Ordering::AcqRel);
        StayAwake {
            shared: &self.shared,
        }
    }

    /// Threads that run tasks: the workers plus the calling thread.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` for every `i` in `0..n_tasks`, spread over the pool's
    /// threads (the caller included), and returns when all have finished.
    ///
    /// Tasks run in no particular order and possibly concurrently. If a
    /// task panics, tasks not yet started are skipped and the panic is
    /// resumed on the caller after the running ones have finished.
    pub fn parallel_for<F>(&self, n_tasks: usize, f: F)
    where
        F: Fn(usize) + Sync,
    {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 || IN_TASK.get() {
            (0..n_tasks).for_each(f);
            return;
        }
        let _submit = lock(&self.submit);
        let task: TaskFn<'_> = &f;
        // SAFETY: see `erase_lifetime`; this function publishes the job,
        // waits for `active == 0` and clears it below, with nothing in
        // between that can unwind (`run_tasks` catches panics).
        let task = unsafe { erase_lifetime(task) };
        let job = Job { task, n_tasks };
        let wake = {
            let mut st = lock(&self.shared.state);
            self.shared.next.store(0, Ordering::Relaxed);
            st.job = Some(job);
            st.generation = st.generation.wrapping_add(1);
            st.panic = None;
            self.shared
                .published
                .store(st.generation, Ordering::Release);
            st.sleeping > 0
        };
        if wake {
            self.shared.wake.notify_all();
        }
        let mine = run_tasks(&self.shared, job);
        // Kept awake: wait for the workers by spinning on the hint, then
        // confirm under the lock below (which then does not sleep).
        spin_while(&self.shared, || {
            self.shared.active_hint.load(Ordering::Acquire) > 0
        });
        let theirs = {
            let mut st = lock(&self.shared.state);
            while st.active > 0 {
                st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.job = None;
            st.panic.take()
        };
        if let Some(p) = mine.or(theirs) {
            panic::resume_unwind(p);
        }
    }

    /// Splits `data` into chunks of `chunk_len` elements (the last may be
    /// shorter) and runs `f(chunk_index, chunk)` for each, in parallel, as
    /// [`parallel_for`](Self::parallel_for) does. `chunk_len == 0` is
    /// taken as one chunk of everything.
    pub fn for_each_chunk_mut<T, F>(&self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        let chunk_len = if chunk_len == 0 {
            data.len().max(1)
        } else {
            chunk_len
        };
        // One uncontended mutex per chunk hands each task its disjoint
        // `&mut` slice without unsafe code.
        let slots: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk_len).map(Mutex::new).collect();
        self.parallel_for(slots.len(), |i| {
            let mut chunk = lock(&slots[i]);
            f(i, &mut chunk);
        });
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            // A worker cannot panic (tasks are caught); nothing to report.
            let _ = w.join();
        }
    }
}

/// Claims and runs tasks of `job` until none are left; returns the panic
/// of the first task that panicked (after which it stops claiming and makes
/// the others stop too).
fn run_tasks(shared: &Shared, job: Job) -> Option<Panic> {
    let was_in_task = IN_TASK.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(|| loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.n_tasks {
            break;
        }
        (job.task)(i);
    }));
    IN_TASK.set(was_in_task);
    result.err().inspect(|_| {
        shared.next.store(job.n_tasks, Ordering::Relaxed);
    })
}

/// A worker: wait for a new job generation, run its tasks, report, repeat.
fn worker_loop(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        let panic = {
            let job = {
                let mut st = lock(&shared.state);
                loop {
                    if st.shutdown {
                        return;
                    }
                    if st.generation != seen {
                        seen = st.generation;
                        if let Some(job) = st.job {
                            st.active += 1;
                            shared.active_hint.store(st.active, Ordering::Release);
                            break job;
                        }
                    }
                    if shared.awake.load(Ordering::Acquire) > 0 {
                        // Kept awake: spin (unlocked) for the next job.
                        drop(st);
                        spin_while(shared, || shared.published.load(Ordering::Acquire) == seen);
                        st = lock(&shared.state);
                        continue;
                    }
                    st.sleeping += 1;
                    st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.sleeping -= 1;
                }
            };
            run_tasks(shared, job)
            // `job` (the erased reference) is dropped here, before `active`
            // is decremented below.
        };
        let mut st = lock(&shared.state);
        if st.panic.is_none() {
            st.panic = panic;
        }
        st.active -= 1;
        shared.active_hint.store(st.active, Ordering::Release);
        if st.active == 0 {
            shared.done.notify_all();
        }
    }
}

/// Threads of the [`global`] pool: `EXODUS_THREADS` if set to a positive
/// integer, else [`std::thread::available_parallelism`], else 1.
pub fn default_threads() -> usize {
    std::env::var("EXODUS_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&t| t > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// The process-wide pool, created on first use with [`default_threads`].
pub fn global() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| ThreadPool::new(default_threads()))
}
