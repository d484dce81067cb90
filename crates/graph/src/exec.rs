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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use exodus_kernels::attention::{paged_attention, AttentionParams, PagedKvCache, SeqSpan};
use exodus_kernels::matmul::{tiling_for, PackedWeights, Weights};
use exodus_kernels::ops::{
    self, GeluApprox, LayerNormParams, QuantizedRows, RmsNormParams, RopeParams, RopeStyle,
};
use exodus_kernels::pool;
use exodus_kernels::Regime;
use exodus_numerics::{cpu, ElementFormat, Format};
use exodus_runtime::{CpuDevice, Device, DeviceBuffer, GraphExec, Launch, RuntimeError, Stream};
use thiserror::Error;

use crate::error::GraphError;
use crate::ir::{Binary, Def, Graph, Linear, Node, Op, Program, Step, Unary, ValueId};
use crate::linear::{LinearLaunch, Packs};
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
enum Buf {
    F32(DeviceBuffer<f32>),
    U32(DeviceBuffer<u32>),
    Bytes(DeviceBuffer<u8>),
}

impl Buf {
    fn input_of(&self, launch: Launch) -> Launch {
        match self {
            Buf::F32(b) => launch.input(b),
            Buf::U32(b) => launch.input(b),
            Buf::Bytes(b) => launch.input(b),
        }
    }

    fn output_of(&self, launch: Launch) -> Launch {
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
    /// The stream runs go to; replaced by a fresh one after a failed run
    /// (a failed launch poisons its stream), so the session stays usable.
    stream: Mutex<Stream>,
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
}

/// How a node is being lowered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
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

/// One shape bucket in graph mode: every buffer, and the captured launches.
struct Compiled {
    bufs: HashMap<ValueId, Buf>,
    exec: GraphExec,
    /// Bytes of the buffers the intermediates share (graph outputs
    /// included).
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
fn concrete(shape: &Shape, sizes: &[usize]) -> Vec<usize> {
    shape
        .0
        .iter()
        .map(|d| match *d {
            Dim::Fixed(n) => n,
            Dim::Sym(s) => sizes[s.0 as usize],
        })
        .collect()
}

fn volume(dims: &[usize]) -> usize {
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
        let stream = device.create_stream()?;
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
            let w = match node.op {
                Op::MatMul => node.inputs[1],
                Op::Embedding => node.inputs[0],
                _ => continue,
            };
            if let Some(Buf::F32(b)) = bound.get(&w) {
                let bytes: Vec<u8> = b.to_host().iter().flat_map(|x| x.to_le_bytes()).collect();
                weight_bytes.insert(w, device.upload(&bytes)?);
            }
        }
        Ok(Session {
            graph,
            device,
            stream: Mutex::new(stream),
            weights: bound,
            weight_bytes,
            buckets: Mutex::new(Buckets::default()),
            packs: Mutex::new(HashMap::new()),
        })
    }

    /// The graph this session runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
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
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.run_on(&stream, symbols, inputs);
        if result.is_err() {
            // Whatever failed may have poisoned the stream: start afresh.
            *stream = self.device.create_stream()?;
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
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.replay_on(&stream, symbols, inputs);
        if result.is_err() {
            *stream = self.device.create_stream()?;
        }
        result
    }

    /// Bytes of the intermediate buffers graph mode uses for this binding
    /// of the symbols (compiling the bucket if needed): the planned peak.
    pub fn graph_intermediate_bytes(&self, symbols: &[(&str, usize)]) -> Result<usize, ExecError> {
        let sizes = self.bind_symbols(symbols)?;
        let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(self
            .bucket(&stream, &sizes, &mut buckets)?
            .intermediate_bytes)
    }

    /// Fills every intermediate buffer of every compiled bucket with
    /// `value` (NaN in tests): a replay must then still give the right
    /// results, which it only does if no value is read before it is
    /// written and no two live values share a buffer.
    pub fn poison_graph_buffers(&self, value: f32) -> Result<(), ExecError> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        for bucket in buckets.by_sizes.values() {
            for (v, buf) in &bucket.bufs {
                let planned =
                    matches!(self.graph.value(*v).map(|i| &i.def), Some(Def::Node { .. }));
                match buf {
                    Buf::F32(b) if planned => b.copy_from_host(&vec![value; b.len()])?,
                    Buf::U32(b) if planned => b.copy_from_host(&vec![u32::MAX; b.len()])?,
                    _ => {}
                }
            }
        }
        Ok(())
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
        stream: &Stream,
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<Tensor>, ExecError> {
        let sizes = self.bind_symbols(symbols)?;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = self.bucket(stream, &sizes, &mut buckets)?;
        // Inputs go into the bucket's own buffers (checked like eager's).
        let mut given = std::collections::HashSet::new();
        for (v, data) in inputs {
            self.check_input(*v, data, &sizes)?;
            if !given.insert(*v) {
                return Err(self.binding_err(*v, "given twice"));
            }
            if let Some(buf) = bucket.bufs.get(v) {
                buf.upload(data)?;
            }
        }
        self.all_inputs_given(|v| given.contains(&v))?;
        {
            // The replay's launches follow each other back to back: keep
            // the kernel pool's workers spinning between them rather than
            // parked (see `ThreadPool::stay_awake`).
            let _awake = pool::global().stay_awake();
            stream.replay(&bucket.exec)?;
            stream.synchronize()?;
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
                let mut t = bucket
                    .bufs
                    .get(&v)
                    .map(Buf::to_host)
                    .ok_or_else(|| self.binding_err(v, "was never computed"))?;
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
        stream: &Stream,
        sizes: &[usize],
        buckets: &'b mut Buckets,
    ) -> Result<&'b Compiled, ExecError> {
        if !buckets.by_sizes.contains_key(sizes) {
            let compiled = self.compile(stream, sizes)?;
            buckets.by_sizes.insert(sizes.to_vec(), compiled);
            buckets.compiles += 1;
        }
        Ok(&buckets.by_sizes[sizes])
    }

    /// Allocates every buffer of the bucket `sizes` and captures its launch
    /// sequence.
    fn compile(&self, stream: &Stream, sizes: &[usize]) -> Result<Compiled, ExecError> {
        let g = &self.graph;
        let mut bufs: HashMap<ValueId, Buf> = self.weights.clone();
        for (i, info) in g.values().iter().enumerate() {
            let v = ValueId(i as u32);
            let n = volume(&concrete(&info.shape, sizes));
            match (&info.def, info.dtype) {
                (Def::Input, DType::F32) => bufs.insert(v, Buf::F32(self.device.alloc(n)?)),
                (Def::Input, DType::U32) => bufs.insert(v, Buf::U32(self.device.alloc(n)?)),
                (Def::Const(values), _) => bufs.insert(v, Buf::F32(self.device.upload(values)?)),
                _ => None,
            };
        }
        // Intermediates share buffers by lifetime: the stream runs the
        // launches in order, so a buffer whose last reader has been launched
        // can take the next output that fits (best fit, same element type).
        let last_use = g.last_readers();
        let mut free: Vec<Buf> = Vec::new();
        let mut intermediate_bytes = 0;
        stream.begin_capture()?;
        let mut captured = Ok(());
        let mut workspace = 0;
        for (n, node) in g.nodes().iter().enumerate() {
            let mut outs = Vec::with_capacity(node.outputs.len());
            for &out in &node.outputs {
                let (len, dtype) = match g.value(out) {
                    Some(info) => (volume(&concrete(&info.shape, sizes)).max(1), info.dtype),
                    None => break,
                };
                let fits = |b: &Buf| match (b, dtype) {
                    (Buf::F32(b), DType::F32) => Some(b.len()).filter(|&l| l >= len),
                    (Buf::U32(b), DType::U32) => Some(b.len()).filter(|&l| l >= len),
                    _ => None,
                };
                let best = (0..free.len())
                    .filter_map(|i| fits(&free[i]).map(|l| (l, i)))
                    .min()
                    .map(|(_, i)| i);
                outs.push(match (best, dtype) {
                    (Some(i), _) => free.swap_remove(i),
                    (None, DType::U32) => {
                        intermediate_bytes += 4 * len;
                        Buf::U32(self.device.alloc(len)?)
                    }
                    (None, _) => {
                        intermediate_bytes += 4 * len;
                        Buf::F32(self.device.alloc(len)?)
                    }
                });
            }
            captured = self
                .launch_node(stream, node, sizes, &mut bufs, Some(outs), Mode::Graph)
                .map(|scratch| workspace = workspace.max(scratch));
            if captured.is_err() {
                break;
            }
            let done = node.inputs.iter().chain(&node.outputs).filter(|v| {
                matches!(g.value(**v).map(|i| &i.def), Some(Def::Node { .. }))
                    && last_use.get(v).copied().unwrap_or(n) == n
            });
            let mut done: Vec<ValueId> = done.copied().collect();
            done.sort_unstable();
            done.dedup();
            free.extend(done.iter().filter_map(|v| bufs.get(v).cloned()));
        }
        let graph = stream.end_capture()?;
        captured?;
        Ok(Compiled {
            bufs,
            exec: graph.instantiate()?,
            intermediate_bytes: intermediate_bytes + workspace,
        })
    }

    fn run_on(
        &self,
        stream: &Stream,
        symbols: &[(&str, usize)],
        inputs: &[(ValueId, Tensor)],
    ) -> Result<Vec<Tensor>, ExecError> {
        let g = &self.graph;
        let sizes = self.bind_symbols(symbols)?;
        let mut bufs: HashMap<ValueId, Buf> = self.weights.clone();
        for (v, data) in inputs {
            let buf = self.upload_input(*v, data, &sizes)?;
            if bufs.insert(*v, buf).is_some() {
                return Err(self.binding_err(*v, "given twice"));
            }
        }
        self.all_inputs_given(|v| bufs.contains_key(&v))?;
        for (v, data) in g.values().iter().enumerate() {
            if let Def::Const(values) = &data.def {
                bufs.insert(ValueId(v as u32), Buf::F32(self.device.upload(values)?));
            }
        }
        // A value's buffer is released after its last reader (graph
        // outputs never are: their last reader is `usize::MAX`).
        let last_use = g.last_readers();
        for (n, node) in g.nodes().iter().enumerate() {
            self.launch_node(stream, node, &sizes, &mut bufs, None, Mode::Eager)?;
            for &v in &node.inputs {
                if last_use.get(&v) == Some(&n) && !self.weights.contains_key(&v) {
                    bufs.remove(&v);
                }
            }
        }
        stream.synchronize()?;
        g.outputs()
            .iter()
            .map(|v| {
                bufs.get(v)
                    .map(Buf::to_host)
                    .ok_or_else(|| ExecError::Binding {
                        name: format!("output {}", v.0),
                        reason: "was never computed".into(),
                    })
            })
            .collect()
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

    /// Allocates the node's outputs (or takes the `planned` buffers) and
    /// launches its kernel; returns the bytes of scratch the launch holds
    /// while it runs besides its buffers (its workspace).
    fn launch_node(
        &self,
        stream: &Stream,
        node: &Node,
        sizes: &[usize],
        bufs: &mut HashMap<ValueId, Buf>,
        planned: Option<Vec<Buf>>,
        mode: Mode,
    ) -> Result<usize, ExecError> {
        let g = &self.graph;
        let unsupported = |reason: &str| ExecError::Unsupported {
            node: node.name.clone(),
            op: node.op.name(),
            reason: reason.to_owned(),
        };
        let dims = |v: ValueId| {
            g.value(v)
                .map(|i| concrete(&i.shape, sizes))
                .unwrap_or_default()
        };
        let out_id = node.outputs[0];
        let out_dims = dims(out_id);
        let outs = match planned {
            Some(outs) => outs,
            None => node
                .outputs
                .iter()
                .map(|&v| {
                    let n = volume(&dims(v));
                    match g.value(v).map(|i| i.dtype) {
                        Some(DType::F32) => Ok(Buf::F32(self.device.alloc(n)?)),
                        Some(DType::U32) => Ok(Buf::U32(self.device.alloc(n)?)),
                        _ => Err(unsupported("an op can produce only f32 or u32 values")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let out = outs
            .first()
            .cloned()
            .ok_or_else(|| unsupported("missing output"))?;
        let input = |i: usize| -> Result<Buf, ExecError> {
            bufs.get(&node.inputs[i])
                .cloned()
                .ok_or_else(|| unsupported("an input has no buffer (released or never computed)"))
        };
        // Element counts of the inputs (weights: their whole buffer) and of
        // the output: a planned buffer may be longer than its value.
        let lens: Vec<usize> = node
            .inputs
            .iter()
            .map(|&v| match g.value(v).map(|i| &i.def) {
                Some(Def::Weight) => usize::MAX,
                _ => volume(&dims(v)),
            })
            .collect();
        let out_len = volume(&out_dims);
        let mut launch = match &node.op {
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let f = match node.op {
                    Op::Add => ops::add,
                    Op::Sub => ops::sub,
                    Op::Mul => ops::mul,
                    _ => ops::div,
                };
                let b_len = volume(&dims(node.inputs[1])).max(1);
                Launch::new(node.name.clone(), move |k| {
                    let (a, b) = (cut_in::<f32>(k, 0, &lens)?, cut_in::<f32>(k, 1, &lens)?);
                    let mut out = cut_out::<f32>(k, out_len)?;
                    for (o, x) in out.chunks_mut(b_len).zip(a.chunks(b_len)) {
                        f(x, &b, o)?;
                    }
                    Ok(())
                })
            }
            Op::Unary(u) => {
                let u = *u;
                Launch::new(node.name.clone(), move |k| {
                    let x = cut_in::<f32>(k, 0, &lens)?;
                    let mut out = cut_out::<f32>(k, out_len)?;
                    match u {
                        Unary::Silu => ops::silu(&x, &mut out)?,
                        Unary::Gelu { tanh } => {
                            let approx = if tanh {
                                GeluApprox::Tanh
                            } else {
                                GeluApprox::Erf
                            };
                            ops::gelu(&x, &mut out, approx)?
                        }
                        Unary::Scale(f) => ops::scale(&x, f, &mut out)?,
                    }
                    Ok(())
                })
            }
            Op::SwiGlu => Launch::new(node.name.clone(), move |k| {
                let (gate, up) = (cut_in::<f32>(k, 0, &lens)?, cut_in::<f32>(k, 1, &lens)?);
                ops::swiglu(&gate, &up, &mut cut_out::<f32>(k, out_len)?)?;
                Ok(())
            }),
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
                let d = out_dims.last().copied().unwrap_or(1).max(1);
                let rows = volume(&out_dims) / d;
                let (eps, layer) = (*eps, matches!(node.op, Op::LayerNorm { .. }));
                Launch::new(node.name.clone(), move |k| {
                    let (x, w) = (cut_in::<f32>(k, 0, &lens)?, cut_in::<f32>(k, 1, &lens)?);
                    let mut out = cut_out::<f32>(k, out_len)?;
                    if layer {
                        let b = cut_in::<f32>(k, 2, &lens)?;
                        let p = LayerNormParams { eps };
                        ops::layer_norm(&x, &w, Some(&b), &mut out, rows, d, &p)?;
                    } else {
                        ops::rms_norm(&x, &w, &mut out, rows, d, &RmsNormParams { eps })?;
                    }
                    Ok(())
                })
            }
            Op::Softmax => {
                let cols = out_dims.last().copied().unwrap_or(1).max(1);
                let rows = volume(&out_dims) / cols;
                Launch::new(node.name.clone(), move |k| {
                    let x = cut_in::<f32>(k, 0, &lens)?;
                    let mut out = cut_out::<f32>(k, out_len)?;
                    out.copy_from_slice(&x);
                    ops::softmax(&mut out, rows, cols)?;
                    Ok(())
                })
            }
            Op::MatMul | Op::Linear(_) => {
                let spec = match node.op {
                    Op::Linear(l) => l,
                    _ => Linear::MATMUL,
                };
                return self.launch_linear(stream, node, spec, sizes, bufs, outs, lens, mode);
            }
            Op::Rope {
                head_dim,
                neox,
                theta,
            } => {
                let params = RopeParams {
                    style: if *neox {
                        RopeStyle::NeoX
                    } else {
                        RopeStyle::Interleaved
                    },
                    theta: *theta,
                    rotary_dim: None,
                };
                let (head_dim, heads) = (*head_dim, out_dims[1] / *head_dim);
                Launch::new(node.name.clone(), move |k| {
                    let (x, pos) = (cut_in::<f32>(k, 0, &lens)?, cut_in::<u32>(k, 1, &lens)?);
                    let mut out = cut_out::<f32>(k, out_len)?;
                    out.copy_from_slice(&x);
                    ops::rope(&mut out, &pos, heads, head_dim, &params)?;
                    Ok(())
                })
            }
            Op::Embedding => {
                let t_id = node.inputs[0];
                let format = match g.value(t_id).map(|i| i.dtype) {
                    Some(DType::Weights(f)) => f,
                    _ => Format::Element(ElementFormat::F32),
                };
                let t_dims = dims(t_id);
                let (vocab, dim) = (t_dims[0], t_dims[1]);
                let table = self
                    .weight_as_bytes(t_id)
                    .ok_or_else(|| unsupported("the table must be a bound weight"))?;
                let launch = Launch::new(node.name.clone(), move |k| {
                    let (bytes, ids) = (cut_in::<u8>(k, 0, &lens)?, cut_in::<u32>(k, 1, &lens)?);
                    let rows = QuantizedRows {
                        bytes: &bytes,
                        format,
                        vocab,
                        dim,
                    };
                    ops::embedding(&rows, &ids, &mut cut_out::<f32>(k, out_len)?)?;
                    Ok(())
                });
                let launch = input(1)?.input_of(launch.input(&table));
                submit(stream, out.output_of(launch), out_id, out, bufs)?;
                return Ok(0);
            }
            Op::Reshape(_) => match out {
                Buf::F32(_) => Launch::new(node.name.clone(), move |k| {
                    cut_out::<f32>(k, out_len)?.copy_from_slice(&cut_in::<f32>(k, 0, &lens)?);
                    Ok(())
                }),
                _ => Launch::new(node.name.clone(), move |k| {
                    cut_out::<u32>(k, out_len)?.copy_from_slice(&cut_in::<u32>(k, 0, &lens)?);
                    Ok(())
                }),
            },
            Op::Fused(program) => {
                let program = program.clone();
                let n_in = node.inputs.len();
                Launch::new(node.name.clone(), move |k| {
                    let ins = (0..n_in)
                        .map(|i| cut_in::<f32>(k, i, &lens))
                        .collect::<Result<Vec<_>, _>>()?;
                    let slices: Vec<&[f32]> = ins.iter().map(|r| &r[..]).collect();
                    run_fused(&program, &slices, &mut cut_out::<f32>(k, out_len)?)?;
                    Ok(())
                })
            }
            Op::Transpose(perm) => {
                let (in_dims, perm) = (dims(node.inputs[0]), perm.clone());
                Launch::new(node.name.clone(), move |k| {
                    let x = cut_in::<f32>(k, 0, &lens)?;
                    ops::transpose(&x, &in_dims, &perm, &mut cut_out::<f32>(k, out_len)?)?;
                    Ok(())
                })
            }
            Op::Slice { axis, start, end } => {
                let in_dims = dims(node.inputs[0]);
                let (outer, inner) = (volume(&in_dims[..*axis]), volume(&in_dims[*axis + 1..]));
                let (len, start, end) = (in_dims[*axis], *start, *end);
                Launch::new(node.name.clone(), move |k| {
                    let x = cut_in::<f32>(k, 0, &lens)?;
                    let mut out = cut_out::<f32>(k, out_len)?;
                    ops::slice_axis(&x, outer, len, inner, start, end, &mut out)?;
                    Ok(())
                })
            }
            Op::Concat { axis } => {
                let axis = *axis;
                let (outer, inner) = (volume(&out_dims[..axis]), volume(&out_dims[axis + 1..]));
                let axes: Vec<usize> = node.inputs.iter().map(|&v| dims(v)[axis]).collect();
                Launch::new(node.name.clone(), move |k| {
                    let ins = (0..axes.len())
                        .map(|i| cut_in::<f32>(k, i, &lens))
                        .collect::<Result<Vec<_>, _>>()?;
                    let parts: Vec<(&[f32], usize)> =
                        ins.iter().zip(&axes).map(|(r, &a)| (&r[..], a)).collect();
                    ops::concat_axis(&parts, outer, inner, &mut cut_out::<f32>(k, out_len)?)?;
                    Ok(())
                })
            }
            Op::Reduce { mean } => {
                let in_dims = dims(node.inputs[0]);
                let cols = in_dims.last().copied().unwrap_or(1);
                let (rows, mean) = (out_len, *mean);
                Launch::new(node.name.clone(), move |k| {
                    let x = cut_in::<f32>(k, 0, &lens)?;
                    ops::sum_rows(&x, rows, cols, mean, &mut cut_out::<f32>(k, out_len)?)?;
                    Ok(())
                })
            }
            Op::Attention { heads, scale } => {
                let DType::KvCache(layout) =
                    g.value(node.inputs[3]).map_or(DType::F32, |i| i.dtype)
                else {
                    return Err(unsupported("input 3 is not a KV cache"));
                };
                let params = AttentionParams {
                    n_heads: *heads,
                    scale: *scale,
                };
                let tokens = out_dims[0];
                // Launch inputs: q, k, v, block table, start; outputs: the
                // result, then the cache (written).
                let in_lens: Vec<usize> = [0, 1, 2, 4, 5].iter().map(|&i| lens[i]).collect();
                let launch = Launch::new(node.name.clone(), move |k| {
                    let (q, kk, v) = (
                        cut_in::<f32>(k, 0, &in_lens)?,
                        cut_in::<f32>(k, 1, &in_lens)?,
                        cut_in::<f32>(k, 2, &in_lens)?,
                    );
                    let (table, start) = (
                        cut_in::<u32>(k, 3, &in_lens)?,
                        cut_in::<u32>(k, 4, &in_lens)?,
                    );
                    let start = start.first().copied().unwrap_or(0) as usize;
                    let mut pool = k.output::<u8>(1)?;
                    let mut cache = PagedKvCache::new(layout, &mut pool[..])?;
                    cache.write(&table, start, &kk, &v, tokens)?;
                    let seq = SeqSpan {
                        block_table: &table,
                        start_pos: start,
                        n_q: tokens,
                    };
                    let mut out = cut_out::<f32>(k, out_len)?;
                    paged_attention(&cache, &[seq], &q, &mut out, &params)?;
                    Ok(())
                });
                let mut launch = launch;
                for i in [0, 1, 2, 4, 5] {
                    launch = input(i)?.input_of(launch);
                }
                let launch = input(3)?.output_of(out.output_of(launch));
                submit(stream, launch, out_id, out, bufs)?;
                return Ok(0);
            }
            Op::Argmax => {
                let in_dims = dims(node.inputs[0]);
                let cols = in_dims.last().copied().unwrap_or(1).max(1);
                let rows = volume(&in_dims) / cols;
                Launch::new(node.name.clone(), move |k| {
                    let x = cut_in::<f32>(k, 0, &lens)?;
                    ops::argmax(&x, rows, cols, &mut cut_out::<u32>(k, out_len)?)?;
                    Ok(())
                })
            }
        };
        for i in 0..node.inputs.len() {
            launch = input(i)?.input_of(launch);
        }
        submit(stream, out.output_of(launch), out_id, out, bufs)?;
        Ok(0)
    }

    /// Launches a linear layer (a plain matmul being the simplest): in
    /// graph mode with its weights packed when they run in the prefill
    /// regime. Returns the launch's workspace bytes.
    #[allow(clippy::too_many_arguments)]
    fn launch_linear(
        &self,
        stream: &Stream,
        node: &Node,
        spec: Linear,
        sizes: &[usize],
        bufs: &mut HashMap<ValueId, Buf>,
        outs: Vec<Buf>,
        lens: Vec<usize>,
        mode: Mode,
    ) -> Result<usize, ExecError> {
        let g = &self.graph;
        let unsupported = |reason: &str| ExecError::Unsupported {
            node: node.name.clone(),
            op: node.op.name(),
            reason: reason.to_owned(),
        };
        let dims = |v: ValueId| {
            g.value(v)
                .map(|i| concrete(&i.shape, sizes))
                .unwrap_or_default()
        };
        let x_dims = dims(node.inputs[0]);
        let (rows, k) = (
            x_dims.first().copied().unwrap_or(0),
            x_dims.get(1).copied().unwrap_or(0),
        );
        let first = spec.first_weight();
        let w_ids = &node.inputs[first..first + spec.weights];
        let mut weights = Vec::with_capacity(w_ids.len());
        let mut w_bufs = Vec::with_capacity(w_ids.len());
        for &w in w_ids {
            let format = match g.value(w).map(|i| i.dtype) {
                Some(DType::Weights(f)) => f,
                _ => Format::Element(ElementFormat::F32),
            };
            weights.push((format, dims(w)[0]));
            w_bufs.push(self.weight_as_bytes(w).ok_or_else(|| {
                unsupported("W must be a bound weight (a computed W arrives with attention)")
            })?);
        }
        let packed = match mode {
            Mode::Graph => self.packs_for(w_ids, &weights, &w_bufs, rows, k)?,
            Mode::Eager => None,
        };
        let run = LinearLaunch {
            spec,
            rows,
            k,
            weights,
            lens,
            packed,
        };
        let workspace = run.workspace_bytes();
        let outputs = run.outputs();
        if outs.len() != outputs {
            return Err(unsupported("output count does not fit the layer"));
        }
        let input = |i: usize| -> Result<Buf, ExecError> {
            bufs.get(&node.inputs[i])
                .cloned()
                .ok_or_else(|| unsupported("an input has no buffer (released or never computed)"))
        };
        let mut launch =
            input(0)?.input_of(Launch::new(node.name.clone(), move |kern| run.run(kern)));
        if spec.rms_norm.is_some() {
            launch = input(1)?.input_of(launch);
        }
        for w in &w_bufs {
            launch = launch.input(w);
        }
        if spec.epilogue == crate::ir::Epilogue::Residual {
            launch = input(first + spec.weights)?.input_of(launch);
        }
        for out in &outs {
            launch = out.output_of(launch);
        }
        stream.launch(launch)?;
        for (&v, out) in node.outputs.iter().zip(outs) {
            bufs.insert(v, out);
        }
        Ok(workspace)
    }

    /// The weights `w_ids` packed for the prefill regime at `rows` rows,
    /// with their tilings, if every one of them runs in that regime (a pack
    /// is made once per weight and panel size, then shared).
    fn packs_for(
        &self,
        w_ids: &[ValueId],
        weights: &[(Format, usize)],
        w_bufs: &[DeviceBuffer<u8>],
        rows: usize,
        k: usize,
    ) -> Result<Option<Packs>, ExecError> {
        let threads = pool::global().threads();
        let mut out = Vec::with_capacity(w_ids.len());
        let mut packs = self.packs.lock().unwrap_or_else(PoisonError::into_inner);
        for ((&id, &(format, n)), buf) in w_ids.iter().zip(weights).zip(w_bufs) {
            let bytes = buf.to_host();
            let w = Weights::new(format, &bytes, n, k)?;
            let tiling = tiling_for(rows, &w, threads);
            if tiling.regime != Regime::Prefill {
                return Ok(None);
            }
            let key = (id, tiling.kc, tiling.nc);
            let pack = match packs.get(&key) {
                Some(p) => Arc::clone(p),
                None => {
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

    /// A bound weight as bytes (encoded weights as they are, f32 weights in
    /// their byte copy).
    fn weight_as_bytes(&self, v: ValueId) -> Option<DeviceBuffer<u8>> {
        match self.weights.get(&v) {
            Some(Buf::Bytes(b)) => Some(b.clone()),
            Some(Buf::F32(_)) => self.weight_bytes.get(&v).cloned(),
            _ => None,
        }
    }
}

/// Launches `launch` on `stream` and records `out` as the buffer of
/// `out_id`.
fn submit(
    stream: &Stream,
    launch: Launch,
    out_id: ValueId,
    out: Buf,
    bufs: &mut HashMap<ValueId, Buf>,
) -> Result<(), ExecError> {
    stream.launch(launch)?;
    bufs.insert(out_id, out);
    Ok(())
}

/// Elements per chunk of a fused program: its registers stay in L1.
const FUSED_CHUNK: usize = 1024;

/// Runs a fused elementwise program chunk by chunk: each register holds
/// one chunk; an input as long as the output is read in place, a shorter
/// (broadcast) one is tiled into its register. Every step is one
/// exodus-kernels op on the chunk, so the arithmetic is bit for bit that of
/// the unfused nodes.
fn run_fused(
    program: &Program,
    inputs: &[&[f32]],
    out: &mut [f32],
) -> Result<(), exodus_kernels::KernelError> {
    let total = out.len();
    let n_in = inputs.len();
    let mut regs: Vec<Vec<f32>> = vec![vec![0f32; FUSED_CHUNK]; n_in + program.steps.len()];
    for start in (0..total).step_by(FUSED_CHUNK) {
        let len = FUSED_CHUNK.min(total - start);
        for (i, input) in inputs.iter().enumerate() {
            if input.len() != total && !input.is_empty() {
                for (j, r) in regs[i][..len].iter_mut().enumerate() {
                    *r = input[(start + j) % input.len()];
                }
            }
        }
        for (s, step) in program.steps.iter().enumerate() {
            let dst = n_in + s;
            let mut target = std::mem::take(&mut regs[dst]);
            {
                let read = |r: usize| -> &[f32] {
                    if r < n_in && inputs[r].len() == total {
                        &inputs[r][start..start + len]
                    } else {
                        &regs[r][..len]
                    }
                };
                let o = &mut target[..len];
                match *step {
                    Step::Unary(Unary::Silu, a) => ops::silu(read(a), o)?,
                    Step::Unary(Unary::Gelu { tanh }, a) => {
                        let approx = if tanh {
                            GeluApprox::Tanh
                        } else {
                            GeluApprox::Erf
                        };
                        ops::gelu(read(a), o, approx)?
                    }
                    Step::Unary(Unary::Scale(f), a) => ops::scale(read(a), f, o)?,
                    Step::Binary(op, a, b) => {
                        let f = match op {
                            Binary::Add => ops::add,
                            Binary::Sub => ops::sub,
                            Binary::Mul => ops::mul,
                            Binary::Div => ops::div,
                            Binary::SwiGlu => ops::swiglu,
                        };
                        f(read(a), read(b), o)?
                    }
                }
            }
            regs[dst] = target;
        }
        let last = regs.len() - 1;
        out[start..start + len].copy_from_slice(&regs[last][..len]);
    }
    Ok(())
}

/// Input `i` of a running launch cut to `lens[i]` elements (`usize::MAX`:
/// the whole buffer).
pub(crate) fn cut_in<'k, T: exodus_runtime::Pod>(
    k: &'k exodus_runtime::Kernel<'_>,
    i: usize,
    lens: &[usize],
) -> Result<std::cell::Ref<'k, [T]>, exodus_runtime::TaskError> {
    let len = lens.get(i).copied().unwrap_or(usize::MAX);
    let whole = k.input::<T>(i)?;
    if len != usize::MAX && whole.len() < len {
        return Err(format!("input {i}: buffer of {} for {len} values", whole.len()).into());
    }
    Ok(std::cell::Ref::map(whole, |s| &s[..len.min(s.len())]))
}

/// The (first) output of a running launch cut to `len` elements.
fn cut_out<'k, T: exodus_runtime::Pod>(
    k: &'k exodus_runtime::Kernel<'_>,
    len: usize,
) -> Result<std::cell::RefMut<'k, [T]>, exodus_runtime::TaskError> {
    cut_out_at(k, 0, len)
}

/// Output `i` of a running launch cut to `len` elements.
pub(crate) fn cut_out_at<'k, T: exodus_runtime::Pod>(
    k: &'k exodus_runtime::Kernel<'_>,
    i: usize,
    len: usize,
) -> Result<std::cell::RefMut<'k, [T]>, exodus_runtime::TaskError> {
    let whole = k.output::<T>(i)?;
    if whole.len() < len {
        return Err(format!("output {i}: buffer of {} for {len} values", whole.len()).into());
    }
    Ok(std::cell::RefMut::map(whole, |s| &mut s[..len]))
}
