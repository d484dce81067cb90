//! `exodus-trace`: spans recorded at negligible cost when tracing is off,
//! written as Chrome trace-event JSON (opens in Perfetto and
//! `chrome://tracing`) and summarised as an op table.
//!
//! - A global switch ([`set_enabled`], [`enabled`]): when off, opening a
//!   span is one relaxed atomic load and nothing else.
//! - Host code opens an RAII [`SpanGuard`] with [`span`]; code that already
//!   knows the times (a stream worker that timed a launch) calls [`record`]
//!   with a [`Span`] on a [`Track`] of its choice.
//! - Spans go to a buffer owned by the recording thread (no global lock on
//!   the hot path); [`take`] drains every thread's buffer into a [`Trace`].
//! - A [`Trace`] is written as Chrome JSON ([`Trace::to_chrome_json`],
//!   [`Trace::write`]), read back ([`Trace::from_chrome_json`], typed
//!   [`TraceError`] on malformed files), and summarised per op
//!   ([`Trace::op_summary`], printed with `Display`).
//!
//! ```
//! exodus_trace::set_enabled(true);
//! {
//!     let _g = exodus_trace::span("matmul", "op").arg("m", 64);
//!     // ... work ...
//! }
//! exodus_trace::set_enabled(false);
//! let trace = exodus_trace::take();
//! assert!(trace.spans.iter().any(|s| s.name == "matmul"));
//! let json = trace.to_chrome_json();
//! let back = exodus_trace::Trace::from_chrome_json(&json)?;
//! assert_eq!(back.spans.len(), trace.spans.len());
//! println!("{}", back.op_summary());
//! # Ok::<(), exodus_trace::TraceError>(())
//! ```
#![forbid(unsafe_code)]

mod chrome;
mod clock;
mod error;
mod guard;
mod recorder;
mod span;
mod summary;
mod trace;

pub use clock::now_ns;
pub use error::TraceError;
pub use guard::{span, SpanGuard};
pub use recorder::{enabled, record, set_enabled, set_track_name, take};
pub use serde_json::Value;
pub use span::{Span, Track, TrackKind};
pub use summary::{OpRow, OpSummary};
pub use trace::Trace;
