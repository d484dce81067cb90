//! `/metrics` in the Prometheus text format, under vLLM's metric names
//! (`vllm:time_to_first_token_seconds`, `vllm:num_requests_running`, ...)
//! so that dashboards and alerts written for vLLM work unchanged, plus a
//! few of exodus's own (`exodus_*`) where vLLM has no name.
//!
//! Latency histograms are recorded here, per request, as its events pass
//! through the server; gauges and token counters are read from the engine
//! at scrape time.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use exodus_engine::SchedulerStats;

/// Bucket bounds (seconds) of the time-to-first-token, queue and
/// end-to-end histograms (vLLM's, extended for a CPU).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0,
];

/// Bucket bounds (seconds) of the inter-token latency histogram.
const TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
];

/// A cumulative histogram.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed when
    /// rendered), and above the last.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value (seconds).
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Why requests ended, as vLLM's `request_success_total` labels them.
#[derive(Debug, Clone, Copy, Default)]
struct Finished {
    stop: u64,
    length: u64,
    abort: u64,
    error: u64,
}

/// Refusals at the door.
#[derive(Debug, Clone, Copy, Default)]
struct Rejected {
    queue_full: u64,
    invalid: u64,
}

#[derive(Debug, Clone)]
struct Inner {
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
    finished: Finished,
    rejected: Rejected,
    disconnected: u64,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                ttft: Histogram::new(LATENCY_BUCKETS),
                itl: Histogram::new(TOKEN_BUCKETS),
                e2e: Histogram::new(LATENCY_BUCKETS),
                queue: Histogram::new(LATENCY_BUCKETS),
                finished: Finished::default(),
                rejected: Rejected::default(),
                disconnected: 0,
            }),
        }
    }
}

/// How a request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A stop token or string.
    Stop,
    /// Its length limit.
    Length,
    /// Cancelled (the client went away).
    Abort,
    /// The engine failed it.
    Error,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request's first token came `ttft` after it arrived.
    pub fn first_token(&self, ttft: Duration) {
        self.lock().ttft.observe(ttft.as_secs_f64());
    }

    /// A token came `gap` after the previous one of its request.
    pub fn inter_token(&self, gap: Duration) {
        self.lock().itl.observe(gap.as_secs_f64());
    }

    /// A request ended after `total`, having waited `queued` for its first
    /// step.
    pub fn finished(&self, outcome: Outcome, total: Duration, queued: Duration) {
        let mut m = self.lock();
        m.e2e.observe(total.as_secs_f64());
        m.queue.observe(queued.as_secs_f64());
        let f = &mut m.finished;
        match outcome {
            Outcome::Stop => f.stop += 1,
            Outcome::Length => f.length += 1,
            Outcome::Abort => f.abort += 1,
            Outcome::Error => f.error += 1,
        }
    }

    /// A client went away before its request ended.
    pub fn disconnected(&self) {
        self.lock().disconnected += 1;
    }

    /// A request was refused: the queue was full (`true`) or it was invalid.
    pub fn rejected(&self, queue_full: bool) {
        let mut m = self.lock();
        if queue_full {
            m.rejected.queue_full += 1;
        } else {
            m.rejected.invalid += 1;
        }
    }

    /// The text format, with the engine's gauges and counters `stats`.
    pub fn render(&self, model: &str, stats: &SchedulerStats) -> String {
        let m = self.lock().clone();
        let labels = format!("model_name=\"{}\"", model.replace(['"', '\\', '\n'], "_"));
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value}"
            );
        };
        metric(
            "vllm:num_requests_running",
            "gauge",
            "Requests in the running batch.",
            stats.running.to_string(),
        );
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Requests waiting in the queue.",
            stats.waiting.to_string(),
        );
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "Fraction of KV cache blocks in use (1 = full).",
            stats.kv_usage.to_string(),
        );
        metric(
            "vllm:prompt_tokens_total",
            "counter",
            "Prompt tokens of admitted requests.",
            stats.prompt_tokens.to_string(),
        );
        metric(
            "vllm:generation_tokens_total",
            "counter",
            "Tokens generated.",
            stats.generation_tokens.to_string(),
        );
        metric(
            "vllm:num_preemptions_total",
            "counter",
            "Requests preempted (KV freed, recomputed later).",
            stats.preemptions.to_string(),
        );
        metric(
            "vllm:prefix_cache_queries_total",
            "counter",
            "Prompt tokens looked up in the prefix cache.",
            stats.prefix_cache_queries.to_string(),
        );
        metric(
            "vllm:prefix_cache_hits_total",
            "counter",
            "Prompt tokens found in the prefix cache.",
            stats.prefix_cache_hits.to_string(),
        );
        metric(
            "exodus_kv_cache_blocks",
            "gauge",
            "KV cache blocks in the pool.",
            stats.kv_blocks.to_string(),
        );
        metric(
            "exodus_engine_steps_total",
            "counter",
            "Model steps run.",
            stats.steps.to_string(),
        );
        metric(
            "exodus_requests_disconnected_total",
            "counter",
            "Clients that went away before their request ended.",
            m.disconnected.to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP vllm:request_success_total Requests finished, by reason.\n# TYPE vllm:request_success_total counter"
        );
        for (reason, n) in [
            ("stop", m.finished.stop),
            ("length", m.finished.length),
            ("abort", m.finished.abort),
            ("error", m.finished.error),
        ] {
            let _ = writeln!(
                out,
                "vllm:request_success_total{{{labels},finished_reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP exodus_requests_rejected_total Requests refused at submission, by reason.\n# TYPE exodus_requests_rejected_total counter"
        );
        for (reason, n) in [
            ("queue_full", m.rejected.queue_full),
            ("invalid", m.rejected.invalid),
        ] {
            let _ = writeln!(
                out,
                "exodus_requests_rejected_total{{{labels},reason=\"{reason}\"}} {n}"
            );
        }
        m.ttft.render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            &labels,
        );
        m.itl.render(
            &mut out,
            "vllm:inter_token_latency_seconds",
            "Time between consecutive tokens of a request.",
            &labels,
        );
        m.e2e.render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Request latency, arrival to end.",
            &labels,
        );
        m.queue.render(
            &mut out,
            "vllm:request_queue_time_seconds",
            "Time in the queue before the first step.",
            &labels,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help", "m=\"a\"");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{m=\"a\"} 3.65\n"), "{out}");
        assert!(out.contains("x_count{m=\"a\"} 4\n"), "{out}");
    }
}
