//! Execution. A [`Session`] binds a verified graph to its weights on a
//! device and runs it in either mode, with the very same launches:
//!
//! - eager (single-operator) mode, [`Session::run_eager`]: binds the
//!   symbols to sizes, launches every node as it is reached on a runtime
//!   stream (one launch per node, each output allocated from the device's
//!   caching allocator and released after its last reader), and returns
//!   the graph's outputs;
//! - graph mode, [`Session::run_graph`]: the first run for a binding of the
//!   symbols (a shape bucket) allocates every buffer once and captures the
//!   launch sequence into a runtime graph; every run with that binding
//!   copies the inputs in, replays the capture as one submission and reads
//!   the outputs. A new binding compiles a new bucket
//!   ([`Session::compiles`] counts them).

use crate::collective::Collective;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use exodus_kernels::matmul::{tiling_for, DecodePack, PackedWeights, Weights};
use exodus_kernels::pool;
use exodus_kernels::tiling::CacheSizes;
use exodus_kernels::{Regime, Tiling};
use exodus_numerics::cpu;
use exodus_numerics::Format;
use exodus_runtime::{
    Arena, CpuDevice, Device, DeviceBuffer, Event, GraphExec, Launch, RuntimeError, Stream,
};
use thiserror::Error;

use crate::error::GraphError;
use crate::ir::{Def, Graph, Op, ValueId};
use crate::linear::Packs;
use crate::lower::Loc;
use crate::streams::StreamPlan;
use crate::types::{DType, Dim, Shape};

/// Host data for an input, a weight or an output.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// f32 values, row-major.
    F32(Vec<f32>),
    /// u32 values (token ids, positions).
    U32(Vec<u32>),
    /// Encoded bytes of a weight in its value's format.
    Bytes(Vec<u8>),
}

impl Tensor {
    fn kind(&self) -> &'static str {
        match self {
            Tensor::F32(_) => "f32",
            Tensor::U32(_) => "u32",
            Tensor::Bytes(_) => "bytes",
        }
    }
}

/// Why a session could not be made or a run failed.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The graph itself is malformed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// An input, weight or symbol binding does not fit the graph.
    #[error("binding '{name}': {reason}")]
    Binding {
        /// The value or symbol.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The runtime refused a launch, or a kernel failed while running.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A kernel refused its arguments while the session prepared it (a
    /// weight that does not fit its format, a pack that failed).
    #[error(transparent)]
    Kernel(#[from] exodus_kernels::KernelError),
    /// The node uses a form the executor cannot run yet.
    #[error("node '{node}' ({op}): {reason}")]
    Unsupported {
        /// The node.
        node: String,
        /// Its op.
        op: &'static str,
        /// What is missing.
        reason: String,
    },
}

/// A device buffer of any element type the graph uses.
#[derive(Clone)]
pub(crate) enum Buf {
    F32(DeviceBuffer<f32>),
    U32(DeviceBuffer<u32>),
    Bytes(DeviceBuffer<u8>),
}

impl Buf {
    pub(crate) fn input_of(&self, launch: Launch) -> Launch {
        match self {
            Buf::F32(b) => launch.input(b),
            Buf::U32(b) => launch.input(b),
            Buf::Bytes(b) => launch.input(b),
        }
    }

    pub(crate) fn output_of(&self, launch: Launch) -> Launch {
        match self {
            Buf::F32(b) => launch.output(b),
            Buf::U32(b) => launch.output(b),
            Buf::Bytes(b) => launch.output(b),
        }
    }

    fn upload(&self, data: &Tensor) -> Result<(), RuntimeError> {
        match (self, data) {
            (Buf::F32(b), Tensor::F32(d)) => b.copy_from_host(d),
            (Buf::U32(b), Tensor::U32(d)) => b.copy_from_host(d),
            (Buf::Bytes(b), Tensor::Bytes(d)) => b.copy_from_host(d),
            _ => Err(RuntimeError::LengthMismatch {
                what: "input kind",
                expected: 0,
                got: 1,
            }),
        }
    }

    fn to_host(&self) -> Tensor {
        match self {
            Buf::F32(b) => Tensor::F32(b.to_host()),
            Buf::U32(b) => Tensor::U32(b.to_host()),
            Buf::Bytes(b) => Tensor::Bytes(b.to_host()),
        }
    }
}

/// A graph bound to its weights on a CPU device, ready to run.
pub struct Session {
    graph: Graph,
    device: CpuDevice,
    /// The streams runs go to (one per stream of `order`; the first is
    /// where graph mode captures and replays); replaced by fresh ones after
    /// a failed run (a failed launch poisons its stream), so the session
    /// stays usable.
    streams: Mutex<Vec<Stream>>,
    /// Which stream each node runs on and the waits that order them.
    order: StreamPlan,
    /// Weight buffers by value id: f32 weights as f32, encoded ones as
    /// bytes (and f32 weights that matmul or embedding read as W also as
    /// little-endian bytes, made once here).
    weights: HashMap<ValueId, Buf>,
    weight_bytes: HashMap<ValueId, DeviceBuffer<u8>>,
    /// Graph mode's compiled buckets, by the symbol sizes they were made
    /// for, and how many were compiled.
    buckets: Mutex<Buckets>,
    /// Weights packed for the prefill regime (graph mode), by weight and
    /// the tiling's panel sizes `(kc, nc)`, shared by every bucket.
    packs: Mutex<HashMap<(ValueId, usize, usize), Arc<PackedWeights>>>,
    /// Weights re-laid for the decode dots (graph mode), by weight; `None`
    /// where the CPU's dots read the weight as it is.
    decode_packs: Mutex<HashMap<ValueId, Option<Arc<DecodePack>>>>,
    /// What [`Op::AllReduce`] nodes call (none: a job of one rank).
    collective: Option<Arc<dyn Collective>>,
}

/// How a node is being lowered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Launched now, with unpacked weights.
    Eager,
    /// Captured for replay: prefill matmuls read weights packed once.
    Graph,
}

#[derive(Default)]
struct Buckets {
    by_sizes: HashMap<Vec<usize>, Compiled>,
    compiles: usize,
}

/// One shape bucket in graph mode: where every value lives, the arena of
/// the f32 intermediates, and the captured launches.
struct Compiled {
    locs: HashMap<ValueId, Loc>,
    arena: Arc<Arena<f32>>,
    exec: GraphExec,
    /// Bytes of planned intermediate memory (the arena and the u32
    /// buffers; not the graph's outputs) plus the largest launch
    /// workspace.
    intermediate_bytes: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("graph", &self.graph.name())
            .field("weights", &self.weights.len())
            .finish()
    }
}

/// Sizes of a shape once every symbol is bound.
pub(crate) fn concrete(shape: &Shape, sizes: &[usize]) -> Vec<usize> {
    shape
        .0
        .iter()
        .map(|d| match *d {
            Dim::Fixed(n) => n,
            Dim::Sym(s) => sizes[s.0 as usize],
        })
        .collect()
}

pub(crate) fn volume(dims: &[usize]) -> usize {
    dims.iter().product()
}

impl Session {
    /// Verifies `graph` and uploads its weights: every [`Def::Weight`]
    /// value needs exactly one entry, `Tensor::F32` for an f32 weight (its
    /// fixed shape's size) or `Tensor::Bytes` for a weight in an encoded
    /// format (that format's encoded size).
    pub fn new(
        graph: Graph,
        weights: impl IntoIterator<Item = (ValueId, Tensor)>,
    ) -> Result<Session, ExecError> {
        graph.verify()?;
        let device = CpuDevice::new();
        let streams = vec![device.create_stream()?];
        let mut bound: HashMap<ValueId, Buf> = HashMap::new();
        for (v, data) in weights {
            let info = graph.value(v).ok_or_else(|| ExecError::Binding {
                name: format!("value {}", v.0),
                reason: "does not exist".into(),
            })?;
            let err = |reason: String| ExecError::Binding {
                name: info.name.clone(),
                reason,
            };
            if info.def != Def::Weight {
                return Err(err("is not a weight".into()));
            }
            let (fixed, syms) = info.shape.volume();
            if !syms.is_empty() {
                return Err(err("a weight's shape must be fixed".into()));
            }
            let buf = match (&info.dtype, data) {
                (DType::F32, Tensor::F32(d)) if d.len() == fixed => Buf::F32(device.upload(&d)?),
                (DType::U32, Tensor::U32(d)) if d.len() == fixed => Buf::U32(device.upload(&d)?),
                (DType::Weights(format), Tensor::Bytes(d)) => {
                    let want = format
                        .encoded_len(fixed, false)
                        .map_err(|e| err(e.to_string()))?;
                    if d.len() != want {
                        return Err(err(format!("{format} needs {want} bytes, got {}", d.len())));
                    }
                    Buf::Bytes(device.upload(&d)?)
                }
                (dtype, d) => {
                    return Err(err(format!(
                        "a {dtype}{} weight cannot take {} data of {} values",
                        info.shape.display(graph.symbols()),
                        d.kind(),
                        match &d {
                            Tensor::F32(v) => v.len(),
                            Tensor::U32(v) => v.len(),
                            Tensor::Bytes(v) => v.len(),
                        }
                    )))
                }
            };
            if bound.insert(v, buf).is_some() {
                return Err(err("bound twice".into()));
            }
        }
        // State (KV caches) starts zeroed, kept with the weights.
        for (i, info) in graph.values().iter().enumerate() {
            if let (Def::State, DType::KvCache(layout)) = (&info.def, info.dtype) {
                let (blocks, _) = info.shape.volume();
                let bytes =
                    blocks
                        .checked_mul(layout.block_bytes())
                        .ok_or_else(|| ExecError::Binding {
                            name: info.name.clone(),
                            reason: "the cache size overflows".into(),
                        })?;
                bound.insert(ValueId(i as u32), Buf::Bytes(device.alloc(bytes)?));
            }
        }
        // Every weight bound; f32 weights read as W by matmul or embedding
        // get their byte form now.
        let mut weight_bytes = HashMap::new();
        for (i, info) in graph.values().iter().enumerate() {
            let v = ValueId(i as u32);
            if info.def == Def::Weight && !bound.contains_key(&v) {
                return Err(ExecError::Binding {
                    name: info.name.clone(),
                    reason: "weight not given".into(),
                });
            }
        }
        for node in graph.nodes() {
            let read_as_bytes: &[ValueId] = match &node.op {
                Op::MatMul => &node.inputs[1..2],
                Op::Embedding => &node.inputs[..1],
                Op::Linear(l) => &node.inputs[l.first_weight()..l.first_weight() + l.weights],
                _ => continue,
            };
            for &w in read_as_bytes {
                if weight_bytes.contains_key(&w) {
                    continue;
                }
                if let Some(Buf::F32(b)) = bound.get(&w) {
                    let bytes: Vec<u8> = b.to_host().iter().flat_map(|x| x.to_le_bytes()).collect();
                    weight_bytes.insert(w, device.upload(&bytes)?);
                }
            }
        }
        Ok(Session {
            order: graph.assign_streams(1),
            graph,
            device,
            streams: Mutex::new(streams),
            weights: bound,
            weight_bytes,
            buckets: Mutex::new(Buckets::default()),
            packs: Mutex::new(HashMap::new()),
            decode_packs: Mutex::new(HashMap::new()),
            collective: None,
        })
    }

    /// Gives the session the job's collective, which its
    /// [`Op::AllReduce`] nodes call (before the first run: graph mode
    /// captures it with the launches).
    pub fn set_collective(&mut self, collective: Arc<dyn Collective>) {
        self.collective = Some(collective);
    }

    /// A copy of the bytes of the state value (a KV cache) named `name`,
    /// as the last run left them; `None` when no state has that name.
    pub fn state_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let i = self
            .graph
            .values()
            .iter()
            .position(|v| v.def == Def::State && v.name == name)?;
        match self.weights.get(&ValueId(i as u32))? {
            Buf::Bytes(b) => Some(b.to_host()),
            _ => None,
        }
    }

    /// The job's collective, if any.
    pub(crate) fn collective(&self) -> Option<Arc<dyn Collective>> {
        self.collective.clone()
    }

    /// The graph this session runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The device the session runs on.
    pub(crate) fn device(&self) -> &CpuDevice {
        &self.device
    }

    /// Runs the graph once in eager mode: binds each symbol by name,
    /// uploads `inputs` (every [`Def::Input`] value, with the size its
    /// shape has under the binding), launches the nodes in order and
    /// returns the outputs in the graph's order.
    pub fn run_eager(
        &self,
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<Tensor>, ExecError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.run_on(&streams, symbols, inputs);
        if result.is_err() {
            // Whatever failed may have poisoned a stream: start afresh.
            *streams = self.fresh_streams()?;
        }
        result
    }

    /// Runs the graph once in graph mode: like [`Session::run_eager`],
    /// but the launches of this binding of the symbols are captured on its
    /// first run and replayed as one submission on every later one.
    pub fn run_graph(
        &self,
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<Tensor>, ExecError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.replay_on(&streams, symbols, inputs);
        if result.is_err() {
            *streams = self.fresh_streams()?;
        }
        result
    }

    /// Bytes of intermediate memory graph mode holds for this binding of
    /// the symbols (compiling the bucket if needed): the planned arena, the
    /// u32 intermediates and the largest launch workspace; not the graph's
    /// outputs, which every mode hands back.
    pub fn graph_intermediate_bytes(&self, symbols: &[(&str, usize)]) -> Result<usize, ExecError> {
        let sizes = self.bind_symbols(symbols)?;
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(self
            .bucket(&streams, &sizes, &mut buckets)?
            .intermediate_bytes)
    }

    /// Fills every intermediate buffer of every compiled bucket with
    /// `value` (NaN in tests): a replay must then still give the right
    /// results, which it only does if no value is read before it is
    /// written and no two live values share a buffer.
    pub fn poison_graph_buffers(&self, value: f32) -> Result<(), ExecError> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        for bucket in buckets.by_sizes.values() {
            bucket.arena.fill(value)?;
            for (v, loc) in &bucket.locs {
                let planned =
                    matches!(self.graph.value(*v).map(|i| &i.def), Some(Def::Node { .. }));
                match loc {
                    Loc::Buf(Buf::F32(b)) if planned => b.copy_from_host(&vec![value; b.len()])?,
                    Loc::Buf(Buf::U32(b)) if planned => {
                        b.copy_from_host(&vec![u32::MAX; b.len()])?
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Runs independent branches on up to `max_streams` streams
    /// ([`Graph::assign_streams`]), ordered by events, in both modes (graph
    /// mode captures across the streams and replays the branches
    /// concurrently; its memory plan reuses bytes only where the streams'
    /// order allows). Compiled buckets are dropped.
    pub fn with_streams(mut self, max_streams: usize) -> Result<Session, ExecError> {
        self.order = self.graph.assign_streams(max_streams);
        *self
            .streams
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = self.fresh_streams()?;
        *self
            .buckets
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Buckets::default();
        Ok(self)
    }

    /// The counters of the allocator this session's buffers come from.
    pub fn memory_stats(&self) -> exodus_runtime::MemoryStats {
        self.device.allocator().stats()
    }

    /// Starts the allocator's peak counters afresh (see
    /// [`exodus_runtime::CachingAllocator::reset_peak`]).
    pub fn reset_peak_memory(&self) {
        self.device.allocator().reset_peak();
    }

    /// The stream plan runs follow.
    pub fn stream_plan(&self) -> &StreamPlan {
        &self.order
    }

    /// Whether every matmul weight of the graph gives each row the same
    /// bits whatever the row count of a run, at the active SIMD level
    /// ([`exodus_kernels::matmul::row_results_independent_of_batch`]): then
    /// a sequence's results do not depend on what else shares its batch,
    /// since every other op of a graph works row by row or sequence by
    /// sequence.
    pub fn rows_independent_of_batch(&self) -> bool {
        let level = exodus_numerics::cpu::active();
        self.graph.values().iter().all(|v| match v.dtype {
            DType::Weights(format) => {
                exodus_kernels::matmul::row_results_independent_of_batch(level, format)
            }
            _ => true,
        })
    }

    /// How many shape buckets graph mode has compiled so far.
    pub fn compiles(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .compiles
    }

    fn replay_on(
        &self,
        streams: &[Stream],
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<Tensor>, ExecError> {
        let sizes = self.bind_symbols(symbols)?;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = self.bucket(streams, &sizes, &mut buckets)?;
        // Inputs go into the bucket's own buffers (checked like eager's).
        let mut given = std::collections::HashSet::new();
        for (v, data) in inputs {
            self.check_input(*v, data, &sizes)?;
            if !given.insert(*v) {
                return Err(self.binding_err(*v, "given twice"));
            }
            if let Some(Loc::Buf(buf)) = bucket.locs.get(v) {
                buf.upload(data)?;
            }
        }
        self.all_inputs_given(|v| given.contains(&v))?;
        {
            // The replay's launches follow each other back to back: keep
            // the kernel pool's workers spinning between them rather than
            // parked (see `ThreadPool::stay_awake`).
            let _awake = pool::global().stay_awake();
            streams[0].replay(&bucket.exec)?;
            streams[0].synchronize()?;
        }
        self.graph
            .outputs()
            .iter()
            .map(|&v| {
                // A shared buffer may be longer than the value it holds.
                let len = self
                    .graph
                    .value(v)
                    .map_or(0, |i| volume(&concrete(&i.shape, &sizes)));
                let mut t = match bucket.locs.get(&v) {
                    Some(Loc::Buf(b)) => b.to_host(),
                    Some(Loc::Arena(r)) => Tensor::F32(bucket.arena.to_host(r.clone())?),
                    None => return Err(self.binding_err(v, "was never computed")),
                };
                match &mut t {
                    Tensor::F32(d) => d.truncate(len),
                    Tensor::U32(d) => d.truncate(len),
                    Tensor::Bytes(_) => {}
                }
                Ok(t)
            })
            .collect()
    }

    /// The compiled bucket for `sizes`, compiling (and counting) it first
    /// if this binding is new.
    fn bucket<'b>(
        &self,
        streams: &[Stream],
        sizes: &[usize],
        buckets: &'b mut Buckets,
    ) -> Result<&'b Compiled, ExecError> {
        if !buckets.by_sizes.contains_key(sizes) {
            let compiled = self.compile(streams, sizes)?;
            buckets.by_sizes.insert(sizes.to_vec(), compiled);
            buckets.compiles += 1;
        }
        Ok(&buckets.by_sizes[sizes])
    }

    /// Plans the bucket `sizes` (f32 intermediates at their offsets in one
    /// arena, in place where the plan says), allocates it and captures its
    /// launch sequence.
    fn compile(&self, streams: &[Stream], sizes: &[usize]) -> Result<Compiled, ExecError> {
        let g = &self.graph;
        let named: Vec<(&str, usize)> = g
            .symbols()
            .iter()
            .map(String::as_str)
            .zip(sizes.iter().copied())
            .collect();
        let plan = g.plan_memory_ordered(&named, &self.order.order())?;
        let arena = Arc::new(self.device.alloc_arena::<f32>(plan.arena_bytes / 4)?);
        let mut locs: HashMap<ValueId, Loc> = self
            .weights
            .iter()
            .map(|(v, b)| (*v, Loc::Buf(b.clone())))
            .collect();
        for (i, info) in g.values().iter().enumerate() {
            let v = ValueId(i as u32);
            let n = volume(&concrete(&info.shape, sizes));
            let buf = match (&info.def, info.dtype) {
                (Def::Input, DType::F32) => Buf::F32(self.device.alloc(n)?),
                (Def::Input, DType::U32) => Buf::U32(self.device.alloc(n)?),
                (Def::Const(values), _) => Buf::F32(self.device.upload(values)?),
                (Def::Node { .. }, DType::U32) if plan.separate.contains_key(&v) => {
                    Buf::U32(self.device.alloc(n.max(1))?)
                }
                (Def::Node { .. }, DType::F32) if plan.separate.contains_key(&v) => {
                    Buf::F32(self.device.alloc(n.max(1))?)
                }
                _ => continue,
            };
            locs.insert(v, Loc::Buf(buf));
        }
        for (v, slot) in &plan.slots {
            let at = slot.offset / 4;
            locs.insert(*v, Loc::Arena(at..at + slot.bytes / 4));
        }
        let mut workspace = 0;
        let main = &streams[0];
        main.begin_capture()?;
        let mut captured = self.fork(streams);
        let events = self.node_events();
        for (n, node) in g.nodes().iter().enumerate() {
            if captured.is_err() {
                break;
            }
            let stream = match self.wait_for_node(streams, &events, n) {
                Ok(stream) => stream,
                Err(e) => {
                    captured = Err(e);
                    break;
                }
            };
            let planned = node
                .outputs
                .iter()
                .map(|v| locs.get(v).cloned())
                .collect::<Option<Vec<Loc>>>();
            let Some(planned) = planned else {
                captured = Err(ExecError::Unsupported {
                    node: node.name.clone(),
                    op: node.op.name(),
                    reason: "an output has no planned place".into(),
                });
                break;
            };
            captured = self
                .launch_node(
                    stream,
                    node,
                    sizes,
                    &mut locs,
                    Some(planned),
                    Some(&arena),
                    Mode::Graph,
                )
                .map(|scratch| workspace = workspace.max(scratch))
                .and_then(|()| self.signal_node(stream, &events, n));
        }
        if captured.is_ok() {
            captured = self.join(streams);
        }
        let graph = main.end_capture();
        captured?;
        let graph = graph?;
        Ok(Compiled {
            locs,
            arena,
            exec: graph.instantiate()?,
            intermediate_bytes: plan.intermediate_bytes() + workspace,
        })
    }

    fn run_on(
        &self,
        streams: &[Stream],
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<Tensor>, ExecError> {
        let g = &self.graph;
        let sizes = self.bind_symbols(symbols)?;
        let mut bufs: HashMap<ValueId, Loc> = self
            .weights
            .iter()
            .map(|(v, b)| (*v, Loc::Buf(b.clone())))
            .collect();
        for (v, data) in inputs {
            let buf = self.upload_input(*v, data, &sizes)?;
            if bufs.insert(*v, Loc::Buf(buf)).is_some() {
                return Err(self.binding_err(*v, "given twice"));
            }
        }
        self.all_inputs_given(|v| bufs.contains_key(&v))?;
        for (v, data) in g.values().iter().enumerate() {
            if let Def::Const(values) = &data.def {
                let buf = Buf::F32(self.device.upload(values)?);
                bufs.insert(ValueId(v as u32), Loc::Buf(buf));
            }
        }
        // A value's buffer is released after its last reader (graph
        // outputs never are: their last reader is `usize::MAX`).
        let last_use = g.last_readers();
        let events = self.node_events();
        for (n, node) in g.nodes().iter().enumerate() {
            let stream = self.wait_for_node(streams, &events, n)?;
            self.launch_node(stream, node, &sizes, &mut bufs, None, None, Mode::Eager)?;
            self.signal_node(stream, &events, n)?;
            for &v in &node.inputs {
                if last_use.get(&v) == Some(&n) && !self.weights.contains_key(&v) {
                    bufs.remove(&v);
                }
            }
        }
        for stream in streams {
            stream.synchronize()?;
        }
        g.outputs()
            .iter()
            .map(|v| match bufs.get(v) {
                Some(Loc::Buf(b)) => Ok(b.to_host()),
                _ => Err(ExecError::Binding {
                    name: format!("output {}", v.0),
                    reason: "was never computed".into(),
                }),
            })
            .collect()
    }

    /// One fresh stream per stream of the plan.
    fn fresh_streams(&self) -> Result<Vec<Stream>, ExecError> {
        (0..self.order.streams.max(1))
            .map(|_| Ok(self.device.create_stream()?))
            .collect()
    }

    /// An event for every node another stream waits on.
    fn node_events(&self) -> Vec<Option<Event>> {
        let mut events: Vec<Option<Event>> = vec![None; self.graph.nodes().len()];
        for &w in self.order.waits.iter().flatten() {
            events[w].get_or_insert_with(Event::new);
        }
        events
    }

    /// Node `n`'s stream, after it waits for the nodes on other streams
    /// the plan orders it after.
    fn wait_for_node<'s>(
        &self,
        streams: &'s [Stream],
        events: &[Option<Event>],
        n: usize,
    ) -> Result<&'s Stream, ExecError> {
        let stream = &streams[self.order.stream_of[n]];
        for &w in &self.order.waits[n] {
            if let Some(e) = &events[w] {
                stream.wait_event(e)?;
            }
        }
        Ok(stream)
    }

    /// Records node `n`'s event, if other streams wait on it.
    fn signal_node(
        &self,
        stream: &Stream,
        events: &[Option<Event>],
        n: usize,
    ) -> Result<(), ExecError> {
        if let Some(e) = &events[n] {
            stream.record(e)?;
        }
        Ok(())
    }

    /// At the start of a capture on the first stream, the others join it.
    fn fork(&self, streams: &[Stream]) -> Result<(), ExecError> {
        if streams.len() > 1 {
            let start = Event::new();
            streams[0].record(&start)?;
            for s in &streams[1..] {
                s.wait_event(&start)?;
            }
        }
        Ok(())
    }

    /// At the end of a capture, the first stream waits for the others.
    fn join(&self, streams: &[Stream]) -> Result<(), ExecError> {
        for s in streams.iter().skip(1) {
            let end = Event::new();
            s.record(&end)?;
            streams[0].wait_event(&end)?;
        }
        Ok(())
    }

    fn bind_symbols(&self, symbols: &[(&str, usize)]) -> Result<Vec<usize>, ExecError> {
        let names = self.graph.symbols();
        let mut sizes = vec![None; names.len()];
        for (name, size) in symbols {
            let at = names
                .iter()
                .position(|s| s == name)
                .ok_or_else(|| ExecError::Binding {
                    name: (*name).to_owned(),
                    reason: "the graph has no such symbol".into(),
                })?;
            sizes[at] = Some(*size);
        }
        sizes
            .into_iter()
            .zip(names)
            .map(|(s, name)| {
                s.ok_or_else(|| ExecError::Binding {
                    name: name.clone(),
                    reason: "symbol not bound".into(),
                })
            })
            .collect()
    }

    fn binding_err(&self, v: ValueId, reason: &str) -> ExecError {
        ExecError::Binding {
            name: self
                .graph
                .value(v)
                .map_or_else(|| format!("value {}", v.0), |i| i.name.clone()),
            reason: reason.to_owned(),
        }
    }

    /// Every [`Def::Input`] value for which `given` holds, or the first
    /// that is missing.
    fn all_inputs_given(&self, given: impl Fn(ValueId) -> bool) -> Result<(), ExecError> {
        for (i, info) in self.graph.values().iter().enumerate() {
            if info.def == Def::Input && !given(ValueId(i as u32)) {
                return Err(self.binding_err(ValueId(i as u32), "input not given"));
            }
        }
        Ok(())
    }

    /// `data` fits input `v` under the binding `sizes`.
    fn check_input(&self, v: ValueId, data: &Tensor, sizes: &[usize]) -> Result<(), ExecError> {
        let info = self
            .graph
            .value(v)
            .ok_or_else(|| self.binding_err(v, "does not exist"))?;
        if info.def != Def::Input {
            return Err(self.binding_err(v, "is not a graph input"));
        }
        let n = volume(&concrete(&info.shape, sizes));
        match (&info.dtype, data) {
            (DType::F32, Tensor::F32(d)) if d.len() == n => Ok(()),
            (DType::U32, Tensor::U32(d)) if d.len() == n => Ok(()),
            (dtype, d) => Err(self.binding_err(
                v,
                &format!(
                    "needs {n} {dtype} values under this binding, got {} data",
                    d.kind()
                ),
            )),
        }
    }

    fn upload_input(&self, v: ValueId, data: &Tensor, sizes: &[usize]) -> Result<Buf, ExecError> {
        self.check_input(v, data, sizes)?;
        Ok(match data {
            Tensor::F32(d) => Buf::F32(self.device.upload(d)?),
            Tensor::U32(d) => Buf::U32(self.device.upload(d)?),
            Tensor::Bytes(d) => Buf::Bytes(self.device.upload(d)?),
        })
    }

    /// The weights `w_ids` packed for the prefill regime at `rows` rows,
    /// with their tilings, if every one of them runs in that regime (a pack
    /// is made once per weight and panel size, then shared).
    pub(crate) fn packs_for(
        &self,
        w_ids: &[ValueId],
        weights: &[(Format, usize)],
        rows: usize,
        k: usize,
    ) -> Result<Option<Packs>, ExecError> {
        let threads = pool::global().threads();
        let mut out = Vec::with_capacity(w_ids.len());
        let mut packs = self.packs.lock().unwrap_or_else(PoisonError::into_inner);
        let caches = CacheSizes::detect();
        for (&id, &(format, n)) in w_ids.iter().zip(weights) {
            // The tiling `tiling_for` picks, from the shape alone: the
            // weight's bytes are copied out only when a pack is made.
            let tiling = Tiling::choose(rows, n, k, format.block_elems(), threads, &caches);
            if tiling.regime != Regime::Prefill {
                return Ok(None);
            }
            let key = (id, tiling.kc, tiling.nc);
            let pack = match packs.get(&key) {
                Some(p) => Arc::clone(p),
                None => {
                    let buf = self.weight_as_bytes(id).ok_or_else(|| ExecError::Binding {
                        name: format!("value {}", id.0),
                        reason: "a matmul weight must be a bound weight".into(),
                    })?;
                    let bytes = buf.to_host();
                    let w = Weights::new(format, &bytes, n, k)?;
                    debug_assert_eq!(tiling, tiling_for(rows, &w, threads));
                    let p = PackedWeights::new(pool::global(), cpu::active(), &tiling, &w)?;
                    let p = Arc::new(p);
                    packs.insert(key, Arc::clone(&p));
                    p
                }
            };
            out.push((tiling, pack));
        }
        Ok(Some(out))
    }

    /// The weights `w_ids` re-laid for the decode dots, one entry per
    /// weight (`None` where the CPU's dots read the weight as it is); made
    /// once per weight, then shared.
    pub(crate) fn decode_packs_for(
        &self,
        w_ids: &[ValueId],
        weights: &[(Format, usize)],
        k: usize,
    ) -> Result<Vec<Option<Arc<DecodePack>>>, ExecError> {
        let mut packs = self
            .decode_packs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(w_ids.len());
        for (&id, &(format, n)) in w_ids.iter().zip(weights) {
            if let Some(p) = packs.get(&id) {
                out.push(p.clone());
                continue;
            }
            let pack = match self.weight_as_bytes(id) {
                Some(buf) if DecodePack::takes(format) => {
                    let bytes = buf.to_host();
                    let w = Weights::new(format, &bytes, n, k)?;
                    DecodePack::new(cpu::active(), &w).map(Arc::new)
                }
                _ => None,
            };
            packs.insert(id, pack.clone());
            out.push(pack);
        }
        Ok(out)
    }

    /// A bound weight as bytes (encoded weights as they are, f32 weights in
    /// their byte copy).
    pub(crate) fn weight_as_bytes(&self, v: ValueId) -> Option<DeviceBuffer<u8>> {
        match self.weights.get(&v) {
            Some(Buf::Bytes(b)) => Some(b.clone()),
            Some(Buf::F32(_)) => self.weight_bytes.get(&v).cloned(),
            _ => None,
        }
    }
}
