//! The one error type of `exodus-trace`: what can go wrong reading or
//! writing a trace file. Recording itself never fails.

/// Errors from reading or writing Chrome trace JSON.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The text is not JSON at all.
    #[error("trace is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is neither an array of events nor an object with a
    /// `traceEvents` array.
    #[error("trace JSON must be an array of events or an object with a \"traceEvents\" array")]
    NotATrace,
    /// An event lacks a field that its phase requires.
    #[error("event {index}: missing field \"{field}\"")]
    MissingField {
        /// Position of the event in the event array.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A field has the wrong JSON type or an out-of-range value.
    #[error("event {index}: field \"{field}\" must be {expected}")]
    BadField {
        /// Position of the event in the event array.
        index: usize,
        /// The offending field.
        field: &'static str,
        /// What the field should hold.
        expected: &'static str,
    },
    /// An event names a process id that is not one of exodus' tracks.
    #[error(
        "event {index}: pid {pid} is not an exodus track group (1 = host threads, 2 = streams)"
    )]
    UnknownPid {
        /// Position of the event in the event array.
        index: usize,
        /// The pid found.
        pid: u64,
    },
    /// Reading or writing the file failed.
    #[error("trace file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
