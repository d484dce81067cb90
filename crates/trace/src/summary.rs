//! The op summary: spans grouped by (category, name) into calls, total,
//! mean, min, max and share of the summed time, like an accelerator
//! profiler's op_summary table; `Display` prints it as a text table.

use std::collections::BTreeMap;
use std::fmt;

use crate::trace::Trace;

/// One row of the summary: every span with this category and name.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRow {
    /// Span name (the op or kernel).
    pub name: String,
    /// Span category ("launch", "copy", ...).
    pub category: String,
    /// Number of spans.
    pub calls: u64,
    /// Summed duration, nanoseconds.
    pub total_ns: u64,
    /// Shortest span, nanoseconds.
    pub min_ns: u64,
    /// Longest span, nanoseconds.
    pub max_ns: u64,
    /// `total_ns` as a fraction (0..=1) of the summed duration of all rows.
    pub share: f64,
}

impl OpRow {
    /// Mean duration in nanoseconds.
    pub fn mean_ns(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_ns as f64 / self.calls as f64
        }
    }
}

/// Rows sorted by total time, largest first (ties by category, name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpSummary {
    /// The rows.
    pub rows: Vec<OpRow>,
    /// Summed duration of all rows, nanoseconds.
    pub total_ns: u64,
}

impl Trace {
    /// Summary over every span.
    pub fn op_summary(&self) -> OpSummary {
        self.summarise(|_| true)
    }

    /// Summary over the spans of one category (e.g. "launch"), so that
    /// shares are not diluted by waits or nested host spans.
    pub fn op_summary_of(&self, category: &str) -> OpSummary {
        self.summarise(|c| c == category)
    }

    fn summarise(&self, keep: impl Fn(&str) -> bool) -> OpSummary {
        let mut groups: BTreeMap<(&str, &str), OpRow> = BTreeMap::new();
        for s in self.spans.iter().filter(|s| keep(&s.category)) {
            let row = groups
                .entry((&s.category, &s.name))
                .or_insert_with(|| OpRow {
                    name: s.name.to_string(),
                    category: s.category.to_string(),
                    calls: 0,
                    total_ns: 0,
                    min_ns: u64::MAX,
                    max_ns: 0,
                    share: 0.0,
                });
            row.calls += 1;
            row.total_ns = row.total_ns.saturating_add(s.dur_ns);
            row.min_ns = row.min_ns.min(s.dur_ns);
            row.max_ns = row.max_ns.max(s.dur_ns);
        }
        let total_ns = groups
            .values()
            .fold(0u64, |t, r| t.saturating_add(r.total_ns));
        let mut rows: Vec<OpRow> = groups.into_values().collect();
        for row in &mut rows {
            row.share = if total_ns == 0 {
                0.0
            } else {
                row.total_ns as f64 / total_ns as f64
            };
        }
        rows.sort_by(|a, b| {
            b.total_ns
                .cmp(&a.total_ns)
                .then_with(|| a.category.cmp(&b.category))
                .then_with(|| a.name.cmp(&b.name))
        });
        OpSummary { rows, total_ns }
    }
}

fn micros(ns: f64) -> String {
    format!("{:.3}", ns / 1000.0)
}

impl fmt::Display for OpSummary {
    /// A fixed-width table, times in microseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .chain([2])
            .max()
            .unwrap_or(2);
        writeln!(
            f,
            "{:<width$}  {:<8} {:>8} {:>12} {:>10} {:>10} {:>10} {:>7}",
            "op", "category", "calls", "total us", "mean us", "min us", "max us", "share"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<width$}  {:<8} {:>8} {:>12} {:>10} {:>10} {:>10} {:>6.1}%",
                r.name,
                r.category,
                r.calls,
                micros(r.total_ns as f64),
                micros(r.mean_ns()),
                micros(r.min_ns as f64),
                micros(r.max_ns as f64),
                r.share * 100.0
            )?;
        }
        write!(
            f,
            "{:<width$}  {:<8} {:>8} {:>12}",
            "total",
            "",
            self.rows.iter().map(|r| r.calls).sum::<u64>(),
            micros(self.total_ns as f64)
        )
    }
}
