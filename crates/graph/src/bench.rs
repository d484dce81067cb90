//! Eager against graph mode on one graph: time per run, launches per run,
//! and intermediate memory, measured in one process (`exodus bench graph`
//! wires it to the command line). Graph mode runs the graph after the
//! default passes, as the compiler would hand it over; eager runs it as
//! written, one launch per node.
//!
//! Eager's intermediate memory is given twice: the lower bound of a
//! release-after-last-reader schedule computed from the graph
//! ([`ModeReport::eager_peak_bytes`]), and what the session's caching
//! allocator really held during one run ([`ModeReport::eager_measured_bytes`]):
//! a buffer goes back to the allocator only once the stream has run its
//! last reader, so while the host runs ahead of the stream more is live.
//! "Intermediate" means every node-defined value except the graph's
//! outputs (the results, which any mode hands back), in all three figures.

use std::time::{Duration, Instant};

use exodus_numerics::sample::normal;
use exodus_numerics::QuantizeOptions;
use exodus_runtime::size_class;

use crate::error::GraphError;
use crate::exec::{ExecError, Session, Tensor};
use crate::ir::{Def, Graph, ValueId};
use crate::passes::{default_passes, run_passes};
use crate::types::{DType, Dim};

/// What one comparison measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeReport {
    /// The symbol binding measured.
    pub symbols: Vec<(String, usize)>,
    /// Eager: best and median time per run.
    pub eager: (Duration, Duration),
    /// Graph mode: best and median time per run (after the first, which
    /// compiles).
    pub graph: (Duration, Duration),
    /// Launches per eager run (one per node of the graph as written).
    pub eager_launches: usize,
    /// Tasks per graph-mode run (nodes after the passes), all in one
    /// submission.
    pub graph_tasks: usize,
    /// Bytes of every intermediate of the graph as written (not its
    /// outputs), each on its own.
    pub sum_bytes: usize,
    /// Most intermediate bytes eager mode holds at once if each value is
    /// released right after its last reader runs (a lower bound, computed
    /// from the graph; bytes of the values themselves).
    pub eager_peak_bytes: usize,
    /// Intermediate bytes eager mode's allocator really held at its peak
    /// during one run, measured: the allocator's peak allocated bytes
    /// during the run, less what was allocated before it (weights, state)
    /// and less the size classes of the run's uploaded inputs, constants
    /// and outputs. In size classes (up to 25% above a value's bytes), and
    /// higher than [`ModeReport::eager_peak_bytes`] when buffers wait for
    /// the stream to run their last reader before they are freed.
    pub eager_measured_bytes: usize,
    /// Graph mode's intermediate bytes: its planned arena, u32
    /// intermediates and the largest launch workspace
    /// ([`Session::graph_intermediate_bytes`]).
    pub graph_bytes: usize,
}

/// Random weights for every weight value of `graph` (normal values,
/// quantized to each weight's format).
pub fn random_weights(graph: &Graph, seed: u64) -> Result<Vec<(ValueId, Tensor)>, GraphError> {
    let mut out = Vec::new();
    for (i, info) in graph.values().iter().enumerate() {
        if info.def != Def::Weight {
            continue;
        }
        let (n, syms) = info.shape.volume();
        if !syms.is_empty() {
            return Err(GraphError::Value {
                value: info.name.clone(),
                reason: "a weight's shape must be fixed".into(),
            });
        }
        let values = normal(n, seed + i as u64);
        let data = match info.dtype {
            DType::F32 => Tensor::F32(values.iter().map(|v| 1.0 + 0.05 * v).collect()),
            DType::U32 => Tensor::U32(vec![0; n]),
            DType::KvCache(_) => continue,
            DType::Weights(format) => {
                let scaled: Vec<f32> = values.iter().map(|v| v * 0.05).collect();
                Tensor::Bytes(
                    format
                        .quantize(&scaled, &QuantizeOptions::default())
                        .map_err(|e| GraphError::Value {
                            value: info.name.clone(),
                            reason: e.to_string(),
                        })?,
                )
            }
        };
        out.push((ValueId(i as u32), data));
    }
    Ok(out)
}

/// Inputs for every input value of `graph` under `symbols` (f32 normal
/// values; u32 values count up from 0, as positions and block tables do).
pub fn random_inputs(graph: &Graph, symbols: &[(&str, usize)]) -> Vec<(ValueId, Tensor)> {
    let size = |d: &Dim| bound_size(graph, symbols, d);
    graph
        .values()
        .iter()
        .enumerate()
        .filter(|(_, i)| i.def == Def::Input)
        .map(|(i, info)| {
            let n: usize = info.shape.0.iter().map(size).product();
            let data = match info.dtype {
                // Token ids, positions and block tables count up from 0
                // (a block table is then blocks 0, 1, ...; a start is 0).
                DType::U32 => Tensor::U32((0..n as u32).collect()),
                _ => Tensor::F32(normal(n, 99 + i as u64)),
            };
            (ValueId(i as u32), data)
        })
        .collect()
}

/// The size of `d` under `symbols` (an unbound symbol counts as 1).
fn bound_size(graph: &Graph, symbols: &[(&str, usize)], d: &Dim) -> usize {
    match d {
        Dim::Fixed(n) => *n,
        Dim::Sym(s) => {
            let name = &graph.symbols()[s.0 as usize];
            symbols
                .iter()
                .find(|(n, _)| n == name)
                .map_or(1, |(_, v)| *v)
        }
    }
}

/// Most bytes of intermediates (node-defined values other than the graph's
/// outputs) alive at once when each is released right after its last
/// reader, and the sum of all of them, under `sizes`: the least any eager
/// mode could hold.
fn eager_peak(graph: &Graph, symbols: &[(&str, usize)]) -> (usize, usize) {
    let bytes = |v: ValueId| -> usize {
        if graph.outputs().contains(&v) {
            return 0;
        }
        let info = &graph.values()[v.0 as usize];
        info.shape
            .0
            .iter()
            .map(|d| bound_size(graph, symbols, d))
            .product::<usize>()
            * 4
    };
    let last = graph.last_readers();
    let (mut live, mut peak, mut sum) = (0usize, 0usize, 0usize);
    for (n, node) in graph.nodes().iter().enumerate() {
        for &v in &node.outputs {
            live += bytes(v);
            sum += bytes(v);
        }
        peak = peak.max(live);
        let mut done: Vec<ValueId> = node
            .inputs
            .iter()
            .chain(&node.outputs)
            .filter(|v| {
                matches!(graph.values()[v.0 as usize].def, Def::Node { .. })
                    && last.get(v).copied().unwrap_or(n) == n
            })
            .copied()
            .collect();
        done.sort_unstable();
        done.dedup();
        live -= done.iter().map(|&v| bytes(v)).sum::<usize>();
    }
    (peak, sum)
}

fn time(
    repeats: usize,
    mut f: impl FnMut() -> Result<(), ExecError>,
) -> Result<(Duration, Duration), ExecError> {
    let mut t = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed());
    }
    t.sort();
    Ok((t[0], t[t.len() / 2]))
}

/// Size-classed bytes an eager run of `graph` allocates besides
/// intermediates: its inputs (`inputs`), constants (uploaded by every eager
/// run) and outputs (the results), under `symbols`.
fn uploaded_bytes(graph: &Graph, symbols: &[(&str, usize)], inputs: &[(ValueId, Tensor)]) -> usize {
    let class = |bytes: usize| size_class(bytes).unwrap_or(usize::MAX);
    let inputs: usize = inputs
        .iter()
        .map(|(_, t)| {
            class(match t {
                Tensor::F32(d) => d.len() * 4,
                Tensor::U32(d) => d.len() * 4,
                Tensor::Bytes(d) => d.len(),
            })
        })
        .sum();
    let constants: usize = graph
        .values()
        .iter()
        .map(|info| match &info.def {
            Def::Const(values) => class(values.len() * 4),
            _ => 0,
        })
        .sum();
    let outputs: usize = graph
        .outputs()
        .iter()
        .map(|&v| {
            let info = &graph.values()[v.0 as usize];
            let n: usize = info
                .shape
                .0
                .iter()
                .map(|d| bound_size(graph, symbols, d))
                .product();
            class(n * 4)
        })
        .sum();
    inputs.saturating_add(constants).saturating_add(outputs)
}

/// Runs `session` eagerly once under `symbols` and measures the
/// allocator's high-water mark of intermediates during the run (see
/// [`ModeReport::eager_measured_bytes`]).
pub fn measure_eager_bytes(
    session: &Session,
    symbols: &[(&str, usize)],
    inputs: &[(ValueId, Tensor)],
) -> Result<usize, ExecError> {
    let before = session.memory_stats().allocated_bytes;
    session.reset_peak_memory();
    session.run_eager(symbols, inputs)?;
    let peak = session.memory_stats().peak_allocated_bytes;
    Ok(peak
        .saturating_sub(before)
        .saturating_sub(uploaded_bytes(session.graph(), symbols, inputs)))
}

/// Runs `graph` eagerly as written and in graph mode after the default
/// passes, `repeats` times each under `symbols`, with random weights and
/// inputs; checks that both modes agree, and reports.
pub fn compare_modes(
    graph: &Graph,
    symbols: &[(&str, usize)],
    repeats: usize,
) -> Result<ModeReport, ExecError> {
    compare_modes_on(graph, symbols, repeats, 1)
}

/// [`compare_modes`] with both sessions spreading independent branches
/// over up to `streams` streams ([`Session::with_streams`]).
pub fn compare_modes_on(
    graph: &Graph,
    symbols: &[(&str, usize)],
    repeats: usize,
    streams: usize,
) -> Result<ModeReport, ExecError> {
    let weights = random_weights(graph, 1)?;
    let inputs = random_inputs(graph, symbols);
    let mut optimised = graph.clone();
    run_passes(&mut optimised, &default_passes())?;
    let eager_session = Session::new(graph.clone(), weights.clone())?.with_streams(streams)?;
    let graph_session = Session::new(optimised.clone(), weights)?.with_streams(streams)?;
    let first_eager = eager_session.run_eager(symbols, &inputs)?;
    let first_graph = graph_session.run_graph(symbols, &inputs)?;
    if first_eager != first_graph {
        return Err(ExecError::Binding {
            name: graph.name().to_owned(),
            reason: "graph mode and eager mode disagree".into(),
        });
    }
    let eager = time(repeats, || {
        eager_session.run_eager(symbols, &inputs).map(drop)
    })?;
    let graph_t = time(repeats, || {
        graph_session.run_graph(symbols, &inputs).map(drop)
    })?;
    let eager_measured_bytes = measure_eager_bytes(&eager_session, symbols, &inputs)?;
    let (eager_peak_bytes, sum_bytes) = eager_peak(graph, symbols);
    Ok(ModeReport {
        symbols: symbols.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
        eager,
        graph: graph_t,
        eager_launches: graph.nodes().len(),
        graph_tasks: optimised.nodes().len(),
        sum_bytes,
        eager_peak_bytes,
        eager_measured_bytes,
        graph_bytes: graph_session.graph_intermediate_bytes(symbols)?,
    })
}
