//! A collected trace: the spans of one [`take`](crate::take) (or one file)
//! and the display names of their tracks.

use std::collections::BTreeMap;

use crate::span::{Span, Track};

/// Spans plus the names of the tracks they ran on. Written and read as
/// Chrome trace JSON (see `to_chrome_json`, `write`, `from_chrome_json`)
/// and summarised per op (`op_summary`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The spans, in the order they were collected (sorted by start time
    /// by [`take`](crate::take)).
    pub spans: Vec<Span>,
    /// Display names of tracks ("M" `thread_name` events in Chrome JSON).
    pub track_names: BTreeMap<Track, String>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the spans and track names of `other`, keeping the spans
    /// sorted by start time.
    pub fn merge(&mut self, other: Trace) {
        self.spans.extend(other.spans);
        self.spans.sort_by_key(|s| (s.start_ns, s.track));
        self.track_names.extend(other.track_names);
    }

    /// The spans of one category ("launch", "copy", ...).
    pub fn spans_in<'a>(&'a self, category: &'a str) -> impl Iterator<Item = &'a Span> + 'a {
        self.spans.iter().filter(move |s| s.category == category)
    }
}
