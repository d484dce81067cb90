//! The one error type of `exodus-runtime`. Misuse (closed or poisoned
//! streams, unrecorded events, capture mistakes, freed buffers, wrong
//! argument types) and out-of-memory all come back here; nothing in the
//! runtime panics or hangs on them.

/// The error a launched task returns: any error (kernel errors, or a
/// [`RuntimeError`] from argument access via `?`).
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// An allocation would exceed the device's memory limit even after
    /// releasing every cached block.
    #[error("out of memory: {requested} bytes requested, {allocated} allocated, {reserved} reserved, limit {limit}")]
    OutOfMemory {
        /// Bytes asked for (after rounding to a size class).
        requested: usize,
        /// Bytes held by live buffers.
        allocated: usize,
        /// Bytes held by live buffers and the cache.
        reserved: usize,
        /// The limit (usize::MAX when none was set and the system refused).
        limit: usize,
    },
    /// Two lengths that must agree do not.
    #[error("{what}: length {got}, expected {expected}")]
    LengthMismatch {
        /// What was being checked.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The stream was closed; it accepts no more commands.
    #[error("stream {stream} is closed")]
    StreamClosed {
        /// Stream id.
        stream: u64,
    },
    /// A task on the stream failed or panicked; later commands are skipped
    /// and new ones refused.
    #[error("stream {stream} is poisoned: {reason}")]
    StreamPoisoned {
        /// Stream id.
        stream: u64,
        /// What failed first.
        reason: String,
    },
    /// The stream's worker thread could not be started or is gone.
    #[error("stream worker: {0}")]
    Worker(String),
    /// The event was never recorded on any stream.
    #[error("event {event} was never recorded")]
    EventNotRecorded {
        /// Event id.
        event: u64,
    },
    /// The event's latest record has not been reached yet.
    #[error("event {event} has not completed yet")]
    EventPending {
        /// Event id.
        event: u64,
    },
    /// The event was recorded on a stream that was poisoned before
    /// reaching the record.
    #[error("event {event} failed: {reason}")]
    EventFailed {
        /// Event id.
        event: u64,
        /// Why the recording stream failed.
        reason: String,
    },
    /// `end_capture` on a stream that is not capturing.
    #[error("stream {stream} is not capturing")]
    CaptureNotStarted {
        /// Stream id.
        stream: u64,
    },
    /// The stream is capturing: `begin_capture` again, `synchronize` or
    /// `close` before `end_capture`.
    #[error("stream {stream} is capturing; call end_capture first")]
    CaptureInProgress {
        /// Stream id.
        stream: u64,
    },
    /// `end_capture` on a stream that joined another stream's capture
    /// (by waiting on an event recorded in it): only the stream that
    /// began the capture can end it.
    #[error(
        "stream {stream} joined the capture of stream {origin}; only stream {origin} can end it"
    )]
    CaptureNotOrigin {
        /// The joined stream.
        stream: u64,
        /// The stream that began the capture.
        origin: u64,
    },
    /// `end_capture` found work captured on a joined stream that the
    /// origin stream never waited on (record an event after that work and
    /// wait on it from the origin before ending the capture). The capture
    /// is discarded and every stream leaves capture mode.
    #[error("stream {stream} has captured work that stream {origin} never joined")]
    CaptureUnjoined {
        /// The joined stream with unjoined work.
        stream: u64,
        /// The stream that began the capture.
        origin: u64,
    },
    /// The command cannot be recorded into a graph.
    #[error("stream {stream}: {what} cannot be captured")]
    NotCapturable {
        /// Stream id.
        stream: u64,
        /// The command.
        what: &'static str,
    },
    /// A buffer a captured graph uses has been freed.
    #[error("task '{task}': buffer {buffer} was freed after capture")]
    BufferFreed {
        /// First task using the buffer.
        task: String,
        /// Buffer id.
        buffer: u64,
    },
    /// A buffer a captured graph uses changed size since capture.
    #[error("task '{task}': buffer {buffer} has {now} elements, captured with {captured}")]
    BufferResized {
        /// First task using the buffer.
        task: String,
        /// Buffer id.
        buffer: u64,
        /// Length at capture.
        captured: usize,
        /// Length now.
        now: usize,
    },
    /// A task asked for an argument index it was not given.
    #[error("task '{task}': no {kind} {index} (it has {count})")]
    ArgIndex {
        /// Task name.
        task: String,
        /// "input" or "output".
        kind: &'static str,
        /// Index asked for.
        index: usize,
        /// Number of arguments of that kind.
        count: usize,
    },
    /// A task asked for an argument as the wrong element type.
    #[error("task '{task}': {kind} {index} holds {actual}, not {expected}")]
    ArgType {
        /// Task name.
        task: String,
        /// "input" or "output".
        kind: &'static str,
        /// Argument index.
        index: usize,
        /// Element type asked for.
        expected: &'static str,
        /// Element type of the buffer.
        actual: &'static str,
    },
    /// A written buffer appears twice among a launch's arguments (pass an
    /// in-place buffer once, as an output), or an output is borrowed twice.
    #[error("task '{task}': buffer {buffer} is written and appears more than once (or is borrowed twice)")]
    ArgAliased {
        /// Task name.
        task: String,
        /// Buffer id.
        buffer: u64,
    },
    /// A borrow of an arena range outside the arena.
    #[error("arena {arena}: range {start}..{end} is outside its {len} elements")]
    ArenaRange {
        /// Arena id.
        arena: u64,
        /// Start of the range.
        start: usize,
        /// End of the range.
        end: usize,
        /// Elements in the arena.
        len: usize,
    },
    /// A borrow of an arena range that overlaps a live borrow it cannot
    /// share with (a memory plan that let two live values overlap).
    #[error(
        "arena {arena}: {} borrow of {start}..{end} overlaps a live {} borrow of {other_start}..{other_end}",
        if *mutable { "mutable" } else { "shared" },
        if *other_mutable { "mutable" } else { "shared" }
    )]
    ArenaConflict {
        /// Arena id.
        arena: u64,
        /// Start of the refused range.
        start: usize,
        /// End of the refused range.
        end: usize,
        /// Whether the refused borrow was mutable.
        mutable: bool,
        /// Start of the live range it overlaps.
        other_start: usize,
        /// End of the live range.
        other_end: usize,
        /// Whether the live borrow is mutable.
        other_mutable: bool,
    },
}
