//! `exodus bench kernels`: every kernel at SmolLM2-135M and 7B-class
//! shapes, as GFLOP/s and GB/s next to this machine's FMA peak and memcpy
//! bandwidth measured in the same run; a table on stdout, a JSON report,
//! and optionally a trace with one `kernel` span per timed call.
//!
//! The cases, cost models and probes live in `exodus_kernels::bench`; this
//! file only wires them to arguments, the table, the JSON and the trace.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use exodus_kernels::bench::{self, Case, Limits, Measurement, Options};
use exodus_kernels::ThreadPool;
use exodus_numerics::cpu;
use serde_json::json;

/// Arguments of `exodus bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Benchmark every kernel at model shapes against the machine's limits.
    Kernels(KernelArgs),
    /// Eager against graph mode on an example graph: time, launches and
    /// intermediate memory per run.
    Graph(GraphArgs),
    /// A real model's prompt processing and token generation speed (like
    /// llama-bench's pp512 and tg128).
    Model(super::model::BenchModelArgs),
    /// Load-test an OpenAI-compatible server (exodus's or any other):
    /// TTFT, TPOT, inter-token and end-to-end latency percentiles,
    /// throughput and goodput at several load levels.
    Serve(super::bench_serve::BenchServeArgs),
}

/// Arguments of `exodus bench graph`.
#[derive(clap::Args)]
struct GraphArgs {
    /// Which graph: `block` (one SmolLM2-135M block) or `decoder` (a whole
    /// SmolLM2-135M-shaped decoder: embedding, `--layers` blocks, final
    /// norm, lm head over `--vocab` tokens).
    #[arg(long, default_value = "block")]
    example: String,
    /// Blocks of the decoder (SmolLM2-135M has 30).
    #[arg(long, default_value_t = exodus_graph::examples::SMOLLM2_135M_LAYERS)]
    layers: usize,
    /// Vocabulary of the decoder (SmolLM2-135M has 49152).
    #[arg(long, default_value_t = exodus_graph::examples::SMOLLM2_135M_VOCAB)]
    vocab: usize,
    /// Token counts to run (1 = a decode step, 512 = a prefill chunk).
    #[arg(long, value_delimiter = ',', default_value = "1,512")]
    tokens: Vec<usize>,
    /// Weight format of the matmuls.
    #[arg(long, default_value = "q4_1")]
    format: String,
    /// Timed runs per mode.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Streams both modes spread independent branches over.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// After the timing, run each token count once more in each mode with
    /// tracing on and write a Chrome/Perfetto trace: a span per run and
    /// one per launch on each stream (`exodus trace summary FILE`).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench/results/graph-modes.json")]
    out: PathBuf,
}

/// Arguments of `exodus bench kernels`.
#[derive(clap::Args)]
struct KernelArgs {
    /// Only cases whose name contains this (e.g. `smollm2.matmul.q4_1`).
    #[arg(long, default_value = "")]
    filter: String,
    /// Threads of the pool the matmul and attention kernels run on.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed samples per case (slow cases take fewer, at least one).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Full sizes: 512-row prefill and every format at every prefill size,
    /// and larger limit probes (the default is the quick set).
    #[arg(long)]
    full: bool,
    /// Print the JSON report on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench/results/kernels.json")]
    out: PathBuf,
    /// Write a Chrome/Perfetto trace with a span per timed call
    /// (`exodus trace summary FILE` summarises it).
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// Run the subcommand.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Kernels(a) => kernels(a),
        Command::Graph(a) => graph_modes(a),
        Command::Model(a) => super::model::bench_model(a),
        Command::Serve(a) => super::bench_serve::run(a),
    }
}

/// `exodus bench graph`.
fn graph_modes(a: &GraphArgs) -> anyhow::Result<()> {
    use exodus_graph::bench::compare_modes_on;
    use exodus_graph::examples::{block, decoder, BlockDims, CACHE_BLOCKS, CACHE_BLOCK_TOKENS};
    use exodus_kernels::attention::KvFormat;
    anyhow::ensure!(a.repeats > 0, "--repeats must be at least 1");
    let format: exodus_numerics::Format = a
        .format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format {}: {e}", a.format))?;
    let dims = BlockDims::SMOLLM2_135M;
    let (graph, what) = match a.example.as_str() {
        "block" => (
            block(dims, format, KvFormat::Fp8E4M3)?,
            "SmolLM2-135M block".to_owned(),
        ),
        "decoder" => {
            anyhow::ensure!(a.layers > 0, "--layers must be at least 1");
            anyhow::ensure!(a.vocab > 0, "--vocab must be at least 1");
            // Token ids count up from 0, so every one must be in the vocabulary.
            if let Some(&t) = a.tokens.iter().find(|&&t| t > a.vocab) {
                anyhow::bail!(
                    "--tokens {t} is more than --vocab {} (ids are 0..tokens)",
                    a.vocab
                );
            }
            (
                decoder(dims, a.layers, a.vocab, format, KvFormat::Fp8E4M3)?,
                format!(
                    "SmolLM2-135M-shaped decoder, {} layers, vocab {}",
                    a.layers, a.vocab
                ),
            )
        }
        other => anyhow::bail!("unknown --example {other:?} (known: block, decoder)"),
    };
    let capacity = CACHE_BLOCKS * CACHE_BLOCK_TOKENS;
    if let Some(&t) = a.tokens.iter().find(|&&t| t == 0 || t > capacity) {
        anyhow::bail!("--tokens {t}: each run needs 1 to {capacity} tokens (the KV cache size)");
    }
    outln!(
        "graph '{}' ({what}, {} weights, attention over an FP8 KV cache from position 0), eager as written vs graph mode after passes",
        graph.name(),
        a.format
    )?;
    outln!(
        "{:>7} {:>11} {:>11} {:>11} {:>11} {:>7} {:>9} {:>7} {:>12} {:>12} {:>14} {:>12}",
        "tokens",
        "eager min",
        "eager med",
        "graph min",
        "graph med",
        "speedup",
        "launches",
        "tasks",
        "sum bytes",
        "eager peak",
        "eager measured",
        "graph bytes"
    )?;
    let mut rows = Vec::new();
    for &tokens in &a.tokens {
        let r = compare_modes_on(&graph, &[("tokens", tokens)], a.repeats, a.streams)?;
        let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        let speedup = r.eager.0.as_secs_f64() / r.graph.0.as_secs_f64();
        outln!(
            "{:>7} {:>9.1}us {:>9.1}us {:>9.1}us {:>9.1}us {:>6.2}x {:>9} {:>7} {:>12} {:>12} {:>14} {:>12}",
            tokens,
            us(r.eager.0),
            us(r.eager.1),
            us(r.graph.0),
            us(r.graph.1),
            speedup,
            r.eager_launches,
            r.graph_tasks,
            r.sum_bytes,
            r.eager_peak_bytes,
            r.eager_measured_bytes,
            r.graph_bytes
        )?;
        rows.push(json!({
            "tokens": tokens,
            "eager_min_s": r.eager.0.as_secs_f64(), "eager_median_s": r.eager.1.as_secs_f64(),
            "graph_min_s": r.graph.0.as_secs_f64(), "graph_median_s": r.graph.1.as_secs_f64(),
            "speedup_min": speedup,
            "eager_launches": r.eager_launches, "graph_tasks": r.graph_tasks,
            "sum_intermediate_bytes": r.sum_bytes, "eager_peak_bytes": r.eager_peak_bytes,
            "eager_measured_bytes": r.eager_measured_bytes,
            "graph_intermediate_bytes": r.graph_bytes,
        }));
    }
    let report = json!({
        "bench": "graph-modes", "graph": graph.name(), "example": a.example,
        "layers": (a.example == "decoder").then_some(a.layers),
        "vocab": (a.example == "decoder").then_some(a.vocab),
        "format": a.format,
        "repeats": a.repeats, "streams": a.streams, "simd_level": cpu::active().name(), "rows": rows,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    outln!("wrote {}", a.out.display())?;
    if let Some(path) = &a.trace {
        trace_modes(&graph, &a.tokens, a.streams, path)?;
        outln!("wrote trace {}", path.display())?;
    }
    Ok(())
}

/// Runs `graph` once per token count in each mode with tracing on (graph
/// mode compiled beforehand, so the trace shows replays) and writes the
/// trace: a `run` span per run, and the runtime's span per launch on each
/// stream's track.
fn trace_modes(
    graph: &exodus_graph::Graph,
    tokens: &[usize],
    streams: usize,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use exodus_graph::bench::{random_inputs, random_weights};
    use exodus_graph::{default_passes, run_passes, Session};
    let weights = random_weights(graph, 1)?;
    let mut optimised = graph.clone();
    run_passes(&mut optimised, &default_passes())?;
    let eager = Session::new(graph.clone(), weights.clone())?.with_streams(streams)?;
    let compiled = Session::new(optimised, weights)?.with_streams(streams)?;
    let runs: Vec<_> = tokens
        .iter()
        .map(|&t| {
            let symbols = [("tokens", t)];
            let inputs = random_inputs(graph, &symbols);
            (t, symbols, inputs)
        })
        .collect();
    for (_, symbols, inputs) in &runs {
        compiled.run_graph(symbols, inputs)?;
    }
    exodus_trace::set_enabled(true);
    let traced = (|| -> anyhow::Result<()> {
        for (t, symbols, inputs) in &runs {
            {
                let _run = exodus_trace::span(format!("eager run, {t} tokens"), "run");
                eager.run_eager(symbols, inputs)?;
            }
            let _run = exodus_trace::span(format!("graph run, {t} tokens"), "run");
            compiled.run_graph(symbols, inputs)?;
        }
        Ok(())
    })();
    exodus_trace::set_enabled(false);
    let trace = exodus_trace::take();
    traced?;
    trace
        .write(path)
        .with_context(|| format!("writing trace {}", path.display()))
}

/// One measured case, as reported.
struct Row {
    name: String,
    model: &'static str,
    shape: String,
    flops: f64,
    bytes: f64,
    m: Measurement,
}

impl Row {
    fn gflops(&self) -> f64 {
        self.flops / self.m.min.as_secs_f64() / 1e9
    }
    fn gbps(&self) -> f64 {
        self.bytes / self.m.min.as_secs_f64() / 1e9
    }
    fn ratios(&self, l: &Limits) -> (f64, f64) {
        (self.gflops() / l.fma_gflops, self.gbps() / l.memcpy_gbps)
    }
    fn bound(&self, l: &Limits) -> &'static str {
        let (c, m) = self.ratios(l);
        if c >= m {
            "compute"
        } else {
            "memory"
        }
    }
    fn json(&self, l: &Limits) -> serde_json::Value {
        let (c, m) = self.ratios(l);
        json!({
            "name": self.name, "model": self.model, "shape": self.shape,
            "flops": self.flops, "bytes": self.bytes,
            "min_s": self.m.min.as_secs_f64(), "median_s": self.m.median.as_secs_f64(),
            "samples": self.m.samples, "calls_per_sample": self.m.calls_per_sample,
            "gflops": self.gflops(), "gbps": self.gbps(),
            "ratio_fma_peak": c, "ratio_memcpy": m, "bound": self.bound(l),
        })
    }
}

fn kernels(a: &KernelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(a.repeats > 0, "--repeats must be at least 1");
    let pool = Arc::new(ThreadPool::new(a.threads));
    let level = cpu::active();
    let opts = Options {
        quick: !a.full,
        filter: a.filter.clone(),
        pool: Arc::clone(&pool),
        level,
    };
    let cases = bench::cases(&opts);
    anyhow::ensure!(!cases.is_empty(), "no case matches --filter {:?}", a.filter);
    let limits = Limits::measure(&pool, level, !a.full);
    if !a.json {
        outln!(
            "{} cases, {} threads, level {}; limits: FMA peak {:.1} GFLOP/s, memcpy {:.1} GB/s ({} MiB, read + write)",
            cases.len(),
            pool.threads(),
            level.name(),
            limits.fma_gflops,
            limits.memcpy_gbps,
            limits.memcpy_bytes >> 20
        )?;
        outln!(
            "{:<34} {:<12} {:<26} {:>10} {:>10} {:>9} {:>8} {:>6} {:>6} {:<7}",
            "case",
            "model",
            "shape",
            "min us",
            "med us",
            "GFLOP/s",
            "GB/s",
            "%fma",
            "%mem",
            "bound"
        )?;
    }
    if a.trace.is_some() {
        exodus_trace::set_enabled(true);
    }
    let mut rows = Vec::new();
    for case in cases {
        let Case {
            name,
            model,
            shape,
            flops,
            bytes,
            setup,
        } = case;
        let mut run = setup().with_context(|| format!("setting up {name}"))?;
        let span_name = name.clone();
        let traced = a.trace.is_some();
        let mut call = move || {
            let _span = traced.then(|| exodus_trace::span(span_name.clone(), "kernel"));
            run()
        };
        let m = bench::measure(&mut call, a.repeats).with_context(|| format!("running {name}"))?;
        let row = Row {
            name,
            model,
            shape,
            flops,
            bytes,
            m,
        };
        if !a.json {
            let (c, mem) = row.ratios(&limits);
            outln!(
                "{:<34} {:<12} {:<26} {:>10.2} {:>10.2} {:>9.2} {:>8.2} {:>5.0}% {:>5.0}% {:<7}",
                row.name,
                row.model,
                row.shape,
                row.m.min.as_secs_f64() * 1e6,
                row.m.median.as_secs_f64() * 1e6,
                row.gflops(),
                row.gbps(),
                100.0 * c,
                100.0 * mem,
                row.bound(&limits)
            )?;
        }
        rows.push(row);
    }
    let report = json!({
        "bench": "kernels",
        "threads": pool.threads(),
        "simd_level": level.name(),
        "repeats": a.repeats,
        "quick": !a.full,
        "limits": {
            "fma_peak_gflops": limits.fma_gflops,
            "memcpy_gbps": limits.memcpy_gbps,
            "memcpy_bytes": limits.memcpy_bytes,
        },
        "cases": rows.iter().map(|r| r.json(&limits)).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report)? + "\n";
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, &text).with_context(|| format!("writing {}", a.out.display()))?;
    if a.json {
        out!("{text}")?;
    } else {
        outln!("wrote {}", a.out.display())?;
    }
    if let Some(path) = &a.trace {
        exodus_trace::set_enabled(false);
        exodus_trace::take()
            .write(path)
            .with_context(|| format!("writing trace {}", path.display()))?;
        if !a.json {
            outln!("wrote trace {}", path.display())?;
        }
    }
    Ok(())
}
