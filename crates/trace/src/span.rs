//! What one span is: a named, categorised interval on a track (a host
//! thread or a device stream), with optional arguments.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

/// Whether a track is a host thread or a device stream. In Chrome JSON
/// threads are pid 1 and streams pid 2; the track id is the tid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrackKind {
    /// A host thread (spans from [`span`](crate::span) guards).
    Thread,
    /// A device stream (spans recorded by the runtime's stream workers).
    Stream,
}

impl TrackKind {
    /// The Chrome trace `pid` of this kind of track.
    pub fn pid(self) -> u64 {
        match self {
            TrackKind::Thread => 1,
            TrackKind::Stream => 2,
        }
    }

    /// The kind whose Chrome `pid` is `pid`, if any.
    pub fn from_pid(pid: u64) -> Option<Self> {
        match pid {
            1 => Some(TrackKind::Thread),
            2 => Some(TrackKind::Stream),
            _ => None,
        }
    }

    /// The process name shown for this group of tracks.
    pub fn group_name(self) -> &'static str {
        match self {
            TrackKind::Thread => "exodus host threads",
            TrackKind::Stream => "exodus streams",
        }
    }
}

/// One row of the timeline: a host thread or a stream, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Track {
    /// Thread or stream.
    pub kind: TrackKind,
    /// Thread index (assigned by the recorder) or stream id.
    pub id: u64,
}

impl Track {
    /// The track of stream `id`.
    pub fn stream(id: u64) -> Self {
        Track {
            kind: TrackKind::Stream,
            id,
        }
    }

    /// The track of host thread `id` (as assigned by the recorder).
    pub fn thread(id: u64) -> Self {
        Track {
            kind: TrackKind::Thread,
            id,
        }
    }
}

/// A completed interval: what ran (`name`), what kind of thing it was
/// (`category`, e.g. "launch", "copy", "wait", "op"), where (`track`), when
/// (`start_ns` on the [`now_ns`](crate::now_ns) clock) and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// What ran, e.g. the kernel or op name.
    pub name: Cow<'static, str>,
    /// Kind of work, e.g. "launch", "copy", "wait".
    pub category: Cow<'static, str>,
    /// The thread or stream it ran on.
    pub track: Track,
    /// Start, in nanoseconds on the trace clock.
    pub start_ns: u64,
    /// Duration in nanoseconds.
    pub dur_ns: u64,
    /// Extra key/value details shown in the viewer.
    pub args: BTreeMap<String, Value>,
}

impl Span {
    /// A span without arguments.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        category: impl Into<Cow<'static, str>>,
        track: Track,
        start_ns: u64,
        dur_ns: u64,
    ) -> Self {
        Span {
            name: name.into(),
            category: category.into(),
            track,
            start_ns,
            dur_ns,
            args: BTreeMap::new(),
        }
    }

    /// This span with one more argument.
    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.args.insert(key.into(), value.into());
        self
    }

    /// End of the span in nanoseconds on the trace clock.
    pub fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.dur_ns)
    }
}
