//! Kernel benchmark cases at real model shapes, the machine limits they are
//! compared with, and the timing loop; `exodus bench kernels` runs them.
//!
//! - [`models`]: the shapes (SmolLM2-135M and a 7B-class model);
//! - [`cases`]: every [`Case`] with its cost model (FLOPs and bytes moved),
//!   built lazily so only one case's buffers live at a time;
//! - [`limits`]: the FMA peak and memcpy bandwidth probes;
//! - [`measure`]: min and median time per call of a prepared case.
//!
//! The figure of merit is the ratio of a case's GFLOP/s to the FMA peak and
//! of its GB/s to the memcpy bandwidth; the larger ratio names the bound.
//! Bytes count what a kernel must read plus write once (weights, inputs,
//! outputs, KV rows), the same convention as [`limits::memcpy_gbps`], so a
//! case whose data sits in cache can exceed a ratio of 1.

mod attention_cases;
pub mod limits;
mod matmul_cases;
pub mod models;
mod op_cases;
pub mod weights;

use std::sync::Arc;
use std::time::{Duration, Instant};

use exodus_numerics::cpu::SimdLevel;

use crate::error::Result;
use crate::pool::ThreadPool;

pub use limits::{fma_peak_gflops, memcpy_gbps, read_gbps, Limits};
pub use models::{ModelShape, MODELS, MODEL_7B, SMOLLM2_135M};

/// A prepared case: one call of the kernel on its buffers.
pub type Runner = Box<dyn FnMut() -> Result<()> + Send>;

/// Builds a case's buffers (weights, inputs, caches) and returns its runner.
pub type Setup = Box<dyn FnOnce() -> Result<Runner> + Send>;

/// One benchmark case: a kernel at one shape of one model.
pub struct Case {
    /// Unique name, `<model prefix>.<kernel>.<variant>` (what `--filter`
    /// matches and trace spans are named).
    pub name: String,
    /// Model id (`smollm2-135m`, `7b`).
    pub model: &'static str,
    /// Shape in words (`m=1 n=1536 k=576`).
    pub shape: String,
    /// Floating-point operations of one call.
    pub flops: f64,
    /// Bytes one call must read plus write.
    pub bytes: f64,
    /// Allocates the buffers; call once, then time the runner.
    pub setup: Setup,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("shape", &self.shape)
            .field("flops", &self.flops)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// Quick sizes (the default of the CLI): prefill matmuls at 64 rows in
    /// f32 and the model's own format only; off adds 512-row prefill and
    /// every format at every prefill size.
    pub quick: bool,
    /// Only cases whose name contains this (empty: all).
    pub filter: String,
    /// Pool of the multi-threaded kernels (matmul, attention).
    pub pool: Arc<ThreadPool>,
    /// SIMD level every kernel runs at.
    pub level: SimdLevel,
}

/// Every case of every model that passes `opts.filter`, cheap to build
/// (buffers are allocated by each case's [`Case::setup`]).
pub fn cases(opts: &Options) -> Vec<Case> {
    let mut all = Vec::new();
    for model in &MODELS {
        all.extend(matmul_cases::cases(model, opts));
        all.extend(op_cases::cases(model, opts));
        all.extend(attention_cases::cases(model, opts));
    }
    all.retain(|c| c.name.contains(opts.filter.as_str()));
    all
}

/// Min and median time of one call, and how many calls were timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Fastest sample, per call.
    pub min: Duration,
    /// Median sample, per call.
    pub median: Duration,
    /// Samples taken.
    pub samples: usize,
    /// Calls per sample (short kernels are repeated to last ~0.2 ms).
    pub calls_per_sample: usize,
}

/// Times `run`: one warm-up call, then up to `repeats` samples, each of
/// enough calls to last ~0.2 ms; fewer samples for slow cases so one case
/// takes about a second at most (always at least one sample).
pub fn measure(run: &mut dyn FnMut() -> Result<()>, repeats: usize) -> Result<Measurement> {
    let start = Instant::now();
    run()?;
    let once = start.elapsed().max(Duration::from_nanos(20));
    let calls = (Duration::from_micros(200).as_nanos() / once.as_nanos()).clamp(1, 10_000) as usize;
    let budget = (Duration::from_secs(1).as_nanos() / (once.as_nanos() * calls as u128)).max(1);
    let samples = repeats.clamp(1, budget.min(usize::MAX as u128) as usize);
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..calls {
            run()?;
        }
        times.push(start.elapsed() / calls as u32);
    }
    times.sort();
    Ok(Measurement {
        min: times[0],
        median: times[times.len() / 2],
        samples,
        calls_per_sample: calls,
    })
}

#[cfg(test)]
mod tests;
