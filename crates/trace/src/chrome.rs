//! Chrome trace-event JSON, the format Perfetto and `chrome://tracing`
//! open: each span is an "X" (complete) event with `ts`/`dur` in
//! microseconds, host threads are pid 1 and streams pid 2, and "M"
//! metadata events name both groups and every track. Reading validates
//! every event and reports the first bad one as a [`TraceError`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::TraceError;
use crate::span::{Span, Track, TrackKind};
use crate::trace::Trace;

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<Event<'a>>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
}

#[derive(Serialize)]
struct Event<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'a str>,
    ph: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u64,
    tid: u64,
    args: Args<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Args<'a> {
    Map(&'a BTreeMap<String, Value>),
    Name { name: &'a str },
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Trace {
    fn chrome_events(&self) -> Vec<Event<'_>> {
        let kinds: BTreeSet<TrackKind> = self
            .spans
            .iter()
            .map(|s| s.track.kind)
            .chain(self.track_names.keys().map(|t| t.kind))
            .collect();
        let mut events = Vec::with_capacity(self.spans.len() + self.track_names.len() + 2);
        for kind in kinds {
            events.push(Event {
                name: "process_name",
                cat: None,
                ph: "M",
                ts: None,
                dur: None,
                pid: kind.pid(),
                tid: 0,
                args: Args::Name {
                    name: kind.group_name(),
                },
            });
        }
        for (track, name) in &self.track_names {
            events.push(Event {
                name: "thread_name",
                cat: None,
                ph: "M",
                ts: None,
                dur: None,
                pid: track.kind.pid(),
                tid: track.id,
                args: Args::Name { name },
            });
        }
        for s in &self.spans {
            events.push(Event {
                name: &s.name,
                cat: Some(&s.category),
                ph: "X",
                ts: Some(us(s.start_ns)),
                dur: Some(us(s.dur_ns)),
                pid: s.track.kind.pid(),
                tid: s.track.id,
                args: Args::Map(&s.args),
            });
        }
        events
    }

    fn chrome_file(&self) -> File<'_> {
        File {
            trace_events: self.chrome_events(),
            display_time_unit: "ns",
        }
    }

    /// The trace as Chrome trace-event JSON (an object with `traceEvents`).
    pub fn to_chrome_json(&self) -> String {
        // Serialising plain structs of strings, numbers and JSON values
        // into a String cannot fail; fall back to an empty trace if it did.
        serde_json::to_string(&self.chrome_file())
            .unwrap_or_else(|_| String::from("{\"traceEvents\":[]}"))
    }

    /// Writes the Chrome JSON to `path` (streamed, not built in memory).
    pub fn write(&self, path: impl AsRef<std::path::Path>) -> Result<(), TraceError> {
        let path = path.as_ref();
        let io = |source| TraceError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut out, &self.chrome_file()).map_err(|e| io(e.into()))?;
        out.flush().map_err(io)
    }

    /// Reads Chrome trace JSON as written by [`Trace::to_chrome_json`]
    /// (an object with `traceEvents`, or a bare event array). "X" events
    /// become spans, "M" `thread_name` events track names; other phases
    /// are skipped. Malformed input gives a [`TraceError`] naming the
    /// first bad event; nothing panics.
    pub fn from_chrome_json(text: &str) -> Result<Trace, TraceError> {
        let root: Value = serde_json::from_str(text)?;
        let events = match &root {
            Value::Array(events) => events,
            Value::Object(obj) => match obj.get("traceEvents") {
                Some(Value::Array(events)) => events,
                _ => return Err(TraceError::NotATrace),
            },
            _ => return Err(TraceError::NotATrace),
        };
        let mut trace = Trace::new();
        for (index, event) in events.iter().enumerate() {
            let ev = Fields::new(index, event)?;
            match ev.str("ph")? {
                "X" => trace.spans.push(ev.span()?),
                "M" if ev.str("name")? == "thread_name" => {
                    let track = ev.track()?;
                    let name = ev.name_arg()?;
                    trace.track_names.insert(track, name);
                }
                _ => {}
            }
        }
        Ok(trace)
    }
}

/// One event object being validated.
struct Fields<'a> {
    index: usize,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(index: usize, event: &'a Value) -> Result<Self, TraceError> {
        match event {
            Value::Object(obj) => Ok(Fields { index, obj }),
            _ => Err(TraceError::BadField {
                index,
                field: "event",
                expected: "an object",
            }),
        }
    }

    fn get(&self, field: &'static str) -> Result<&'a Value, TraceError> {
        self.obj.get(field).ok_or(TraceError::MissingField {
            index: self.index,
            field,
        })
    }

    fn bad(&self, field: &'static str, expected: &'static str) -> TraceError {
        TraceError::BadField {
            index: self.index,
            field,
            expected,
        }
    }

    fn str(&self, field: &'static str) -> Result<&'a str, TraceError> {
        self.get(field)?
            .as_str()
            .ok_or_else(|| self.bad(field, "a string"))
    }

    fn uint(&self, field: &'static str) -> Result<u64, TraceError> {
        self.get(field)?
            .as_u64()
            .ok_or_else(|| self.bad(field, "a non-negative integer"))
    }

    /// A time in microseconds, returned in nanoseconds.
    fn micros(&self, field: &'static str) -> Result<u64, TraceError> {
        let us = self
            .get(field)?
            .as_f64()
            .ok_or_else(|| self.bad(field, "a number of microseconds"))?;
        let ns = (us * 1000.0).round();
        // 2^63 ns is 292 years: anything beyond is corrupt.
        if !(0.0..9.2e18).contains(&ns) {
            return Err(self.bad(field, "a non-negative, finite number of microseconds"));
        }
        Ok(ns as u64)
    }

    fn track(&self) -> Result<Track, TraceError> {
        let pid = self.uint("pid")?;
        let kind = TrackKind::from_pid(pid).ok_or(TraceError::UnknownPid {
            index: self.index,
            pid,
        })?;
        Ok(Track {
            kind,
            id: self.uint("tid")?,
        })
    }

    fn args(&self) -> Result<BTreeMap<String, Value>, TraceError> {
        match self.obj.get("args") {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => {
                Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            Some(_) => Err(self.bad("args", "an object")),
        }
    }

    fn name_arg(&self) -> Result<String, TraceError> {
        match self.get("args")?.get("name") {
            Some(Value::String(name)) => Ok(name.clone()),
            _ => Err(self.bad("args", "an object with a string \"name\"")),
        }
    }

    fn span(&self) -> Result<Span, TraceError> {
        let category = match self.obj.get("cat") {
            None => String::new(),
            Some(Value::String(c)) => c.clone(),
            Some(_) => return Err(self.bad("cat", "a string")),
        };
        let mut span = Span::new(
            self.str("name")?.to_owned(),
            category,
            self.track()?,
            self.micros("ts")?,
            self.micros("dur")?,
        );
        span.args = self.args()?;
        Ok(span)
    }
}
