//! Where spans go while tracing is on: the global on/off switch, one
//! buffer per recording thread, and the registry that [`take`] drains.
//!
//! The hot path (a span closing on thread T) touches only T's own buffer:
//! a thread-local lookup and an uncontended mutex. The registry lock is
//! taken once per thread (first span) and by [`take`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::span::{Span, Track};
use crate::trace::Trace;

static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    buffers: Vec::new(),
    names: BTreeMap::new(),
});

type Buffer = Arc<Mutex<Vec<Span>>>;

struct Registry {
    /// Every thread's buffer; entries of exited threads are dropped once
    /// drained.
    buffers: Vec<Buffer>,
    /// Display names of tracks (threads register theirs on first use,
    /// streams through [`set_track_name`]).
    names: BTreeMap<Track, String>,
}

struct Local {
    track: Track,
    buffer: Buffer,
}

thread_local! {
    static LOCAL: Local = register_thread();
}

/// A poisoned lock only means another thread panicked while pushing a span;
/// the data is still a valid vector, so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register_thread() -> Local {
    let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    let track = Track::thread(id);
    let current = std::thread::current();
    let name = match current.name() {
        Some(n) => format!("{n} (thread {id})"),
        None => format!("thread {id}"),
    };
    let buffer: Buffer = Arc::new(Mutex::new(Vec::new()));
    let mut reg = lock(&REGISTRY);
    reg.buffers.push(Arc::clone(&buffer));
    reg.names.insert(track, name);
    Local { track, buffer }
}

/// Turns recording on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether spans are being recorded: one relaxed atomic load.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Gives `track` a display name (the "M" metadata event of the Chrome
/// trace). The runtime names each stream when it is created.
pub fn set_track_name(track: Track, name: impl Into<String>) {
    lock(&REGISTRY).names.insert(track, name.into());
}

/// The track of the calling thread.
pub(crate) fn current_thread_track() -> Option<Track> {
    LOCAL.try_with(|l| l.track).ok()
}

/// Records a finished span (if tracing is on) into the calling thread's
/// buffer. The span keeps its own track, so a stream worker records on its
/// stream's track. Spans recorded while a thread is being torn down are
/// dropped.
pub fn record(span: Span) {
    if !enabled() {
        return;
    }
    // `try_with` fails only during thread-local destruction.
    let _ = LOCAL.try_with(|l| lock(&l.buffer).push(span));
}

/// Drains every thread's buffer into one [`Trace`], spans sorted by start
/// time, with the names of the tracks that appear in it. Recording may go
/// on meanwhile; spans recorded after a thread's buffer was drained wait
/// for the next `take`.
pub fn take() -> Trace {
    let mut reg = lock(&REGISTRY);
    // A buffer only the registry holds belongs to an exited thread: nobody
    // can push to it any more, so drain it one last time and forget it.
    // (Checking after draining would lose spans pushed in between.)
    let (live, exited): (Vec<Buffer>, Vec<Buffer>) = std::mem::take(&mut reg.buffers)
        .into_iter()
        .partition(|b| Arc::strong_count(b) > 1);
    let mut spans = Vec::new();
    for buffer in live.iter().chain(&exited) {
        spans.append(&mut lock(buffer));
    }
    reg.buffers = live;
    spans.sort_by_key(|s| (s.start_ns, s.track));
    let track_names = spans
        .iter()
        .filter_map(|s| reg.names.get(&s.track).map(|n| (s.track, n.clone())))
        .collect();
    Trace { spans, track_names }
}
