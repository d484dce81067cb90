//! The RAII span for host code: [`span`] opens it, dropping the guard
//! records it on the calling thread's track. When tracing is off the guard
//! is empty and costs one relaxed atomic load.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::clock::now_ns;
use crate::recorder::{current_thread_track, enabled, record};
use crate::span::Span;

struct Open {
    name: Cow<'static, str>,
    category: &'static str,
    start_ns: u64,
    args: BTreeMap<String, Value>,
}

/// An open span; recorded when dropped. Empty (and free) when tracing was
/// off at the time it was opened.
#[must_use = "the span ends when the guard is dropped; bind it with `let _g = ...`"]
pub struct SpanGuard {
    open: Option<Open>,
}

/// Opens a span named `name` in `category` on the calling thread's track.
///
/// Pass a `&'static str` name on hot paths: it is not copied. A name built
/// with `format!` is built even when tracing is off; check
/// [`enabled`](crate::enabled) first if that matters.
#[inline]
pub fn span(name: impl Into<Cow<'static, str>>, category: &'static str) -> SpanGuard {
    if !enabled() {
        return SpanGuard { open: None };
    }
    SpanGuard {
        open: Some(Open {
            name: name.into(),
            category,
            start_ns: now_ns(),
            args: BTreeMap::new(),
        }),
    }
}

impl SpanGuard {
    /// Adds an argument shown with the span (no-op when tracing is off).
    pub fn arg(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Some(open) = &mut self.open {
            open.args.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Whether this guard will record a span.
    pub fn is_recording(&self) -> bool {
        self.open.is_some()
    }
}

impl Drop for SpanGuard {
    #[inline]
    fn drop(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let Some(track) = current_thread_track() else {
            return;
        };
        let end = now_ns();
        let mut span = Span::new(
            open.name,
            open.category,
            track,
            open.start_ns,
            end.saturating_sub(open.start_ns),
        );
        span.args = open.args;
        record(span);
    }
}
