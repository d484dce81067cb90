//! Lowering one node to one runtime launch, the same in both modes: where
//! its operands live ([`Args`]: a launch buffer or a range of the bucket's
//! arena), which exodus-kernels call it makes, and whether it runs in place
//! (the memory plan put its output on the range of an input it reads for
//! the last time).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use exodus_kernels::attention::{
    paged_attention_centered, AttentionParams, KvCentering, KvLayout, PagedKvCache, SeqSpan,
};
use exodus_kernels::ops::{
    self, GeluApprox, LayerNormParams, QuantizedRows, RmsNormParams, RopeParams, RopeStyle,
};
use exodus_kernels::pool;
use exodus_numerics::cpu;
use exodus_numerics::{ElementFormat, Format};
use exodus_runtime::{Arena, Device, Kernel, Launch, Stream, TaskError};

use crate::args::{Args, Place};
use crate::exec::{concrete, volume, Buf, ExecError, Mode, Session};
use crate::fused::{run_fused, FusedInput, FUSED_CHUNK};
use crate::ir::{Def, Epilogue, Graph, KvCentered, Linear, Node, Op, Unary};
use crate::linear::LinearLaunch;
use crate::types::DType;
use crate::ValueId;

/// Where a value lives during a run.
#[derive(Clone)]
pub(crate) enum Loc {
    /// Its own runtime buffer.
    Buf(Buf),
    /// Elements of the bucket's f32 arena (graph mode's planned memory).
    Arena(Range<usize>),
}

/// The error for a node the executor cannot lower as it is.
fn unsupported(node: &Node, reason: &str) -> ExecError {
    ExecError::Unsupported {
        node: node.name.clone(),
        op: node.op.name(),
        reason: reason.to_owned(),
    }
}

/// The concrete dims of value `v` under the binding `sizes` (none for a
/// value that does not exist).
fn dims_of(g: &Graph, v: ValueId, sizes: &[usize]) -> Vec<usize> {
    g.value(v)
        .map(|i| concrete(&i.shape, sizes))
        .unwrap_or_default()
}

/// Attention over a paged KV cache, for one sequence or a batch: writes
/// each sequence's new K/V rows, then attends its queries.
#[derive(Clone, Copy)]
struct Attend {
    layout: KvLayout,
    params: AttentionParams,
    /// Where a centered op's `k_mean`, `v_mean` and RoPE table inputs
    /// start, and its RoPE style.
    centering_at: Option<(usize, KvCentered)>,
    /// The launch output that is the cache.
    cache_at: usize,
    /// Rows of the step (all sequences).
    tokens: usize,
}

impl Attend {
    /// Inputs 0-2 are q, k, v; sequence `i` uses row `i` of `tables`
    /// (`blocks` entries each), starts at `starts[i]` and has `lens[i]`
    /// of the step's rows, one sequence after the other.
    fn run(
        &self,
        k: &Kernel<'_>,
        a: &Args,
        tables: &[u32],
        blocks: usize,
        starts: &[u32],
        lens: &[u32],
    ) -> Result<(), TaskError> {
        let tokens = self.tokens;
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        if total != tokens {
            return Err(format!(
                "the sequences' lengths sum to {total}, the step has {tokens} tokens"
            )
            .into());
        }
        let (q, kk, v) = (a.f32_in(k, 0)?, a.f32_in(k, 1)?, a.f32_in(k, 2)?);
        let offsets = match self.centering_at {
            Some((at, how)) => Some((
                a.f32_in(k, at)?,
                a.f32_in(k, at + 1)?,
                a.f32_in(k, at + 2)?,
                how.style(),
            )),
            None => None,
        };
        let centering = match &offsets {
            Some((k_mean, v_mean, rope, style)) => Some(KvCentering::new(
                &self.layout,
                k_mean,
                v_mean,
                rope,
                *style,
            )?),
            None => None,
        };
        let kv_width = self.layout.n_kv_heads() * self.layout.head_dim();
        let mut pool = k.output::<u8>(self.cache_at)?;
        let mut cache = PagedKvCache::new(self.layout, &mut pool[..])?;
        let mut spans = Vec::with_capacity(lens.len());
        let mut row = 0;
        for (i, (&start, &len)) in starts.iter().zip(lens).enumerate() {
            let (start, len) = (start as usize, len as usize);
            let table = &tables[i * blocks..(i + 1) * blocks];
            let rows = row * kv_width..(row + len) * kv_width;
            let (k_rows, v_rows) = (&kk[rows.clone()], &v[rows]);
            cache.write_centered(table, start, k_rows, v_rows, len, centering.as_ref())?;
            spans.push(SeqSpan {
                block_table: table,
                start_pos: start,
                n_q: len,
            });
            row += len;
        }
        let mut out = a.f32_out(k, 0)?;
        paged_attention_centered(
            cpu::active(),
            pool::global(),
            &cache,
            centering.as_ref(),
            &spans,
            &q,
            &mut out,
            &self.params,
        )?;
        Ok(())
    }
}

/// An op's kernel body over its operands.
type KernelFn = Box<dyn Fn(&Kernel<'_>, &Args) -> Result<(), TaskError> + Send + Sync>;

/// A buffer to name on the launch, in order: as an input or as an output.
enum Reg {
    In(Buf),
    Out(Buf),
}

/// What an op's kernel runs on: the places and the arena.
struct Lowered {
    args: Args,
    regs: Vec<Reg>,
}

impl Session {
    /// Launches `node` on `stream`: its outputs go where `planned` says
    /// (graph mode) or into fresh buffers (eager), and `locs` learns where
    /// they are. Returns the bytes of scratch the launch holds while it
    /// runs besides its operands (its workspace).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_node(
        &self,
        stream: &Stream,
        node: &Node,
        sizes: &[usize],
        locs: &mut HashMap<ValueId, Loc>,
        planned: Option<Vec<Loc>>,
        arena: Option<&Arc<Arena<f32>>>,
        mode: Mode,
    ) -> Result<usize, ExecError> {
        let g = self.graph();
        let unsupported = |reason: &str| unsupported(node, reason);
        let dims = |v: ValueId| dims_of(g, v, sizes);
        let outs = match planned {
            Some(outs) => outs,
            None => node
                .outputs
                .iter()
                .map(|&v| {
                    let n = volume(&dims(v));
                    match g.value(v).map(|i| i.dtype) {
                        Some(DType::F32) => Ok(Loc::Buf(Buf::F32(self.device().alloc(n)?))),
                        Some(DType::U32) => Ok(Loc::Buf(Buf::U32(self.device().alloc(n)?))),
                        _ => Err(unsupported("an op can produce only f32 or u32 values")),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let lowered = self.place(node, sizes, locs, &outs, arena)?;
        let (launch, workspace) = self.kernel_for(node, sizes, lowered.args, mode)?;
        let mut launch = launch;
        for reg in &lowered.regs {
            launch = match reg {
                Reg::In(b) => b.input_of(launch),
                Reg::Out(b) => b.output_of(launch),
            };
        }
        stream.launch(launch)?;
        for (&v, loc) in node.outputs.iter().zip(outs) {
            locs.insert(v, loc);
        }
        Ok(workspace)
    }

    /// The places of `node`'s operands, and the buffers the launch names
    /// (inputs first, then outputs, then a KV cache the node writes).
    fn place(
        &self,
        node: &Node,
        sizes: &[usize],
        locs: &HashMap<ValueId, Loc>,
        outs: &[Loc],
        arena: Option<&Arc<Arena<f32>>>,
    ) -> Result<Lowered, ExecError> {
        let g = self.graph();
        let unsupported = |reason: &str| unsupported(node, reason);
        let len_of = |v: ValueId| match g.value(v).map(|i| &i.def) {
            Some(Def::Weight) => usize::MAX,
            _ => g.value(v).map_or(0, |i| volume(&concrete(&i.shape, sizes))),
        };
        // Inputs read as encoded bytes: a linear layer's weights, an
        // embedding's table. A KV cache is written: named as an output.
        let as_bytes = |i: usize| match &node.op {
            Op::MatMul => i == 1,
            Op::Linear(l) => (l.first_weight()..l.first_weight() + l.weights).contains(&i),
            Op::Embedding => i == 0,
            _ => false,
        };
        let written_state = |i: usize| {
            matches!(node.op, Op::Attention { .. } | Op::AttentionBatch { .. }) && i == 3
        };
        let mut regs = Vec::new();
        let (mut n_in, mut n_out) = (0, 0);
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut deferred = None;
        for (i, &v) in node.inputs.iter().enumerate() {
            let loc = locs.get(&v).ok_or_else(|| {
                unsupported("an input has no buffer (released or never computed)")
            })?;
            let place = match loc {
                Loc::Arena(r) => Place::Arena(r.clone()),
                Loc::Buf(_) if written_state(i) => {
                    // Named after the outputs; its index is set below.
                    deferred = Some((i, loc.clone()));
                    Place::Arg {
                        index: usize::MAX,
                        len: usize::MAX,
                    }
                }
                Loc::Buf(b) => {
                    let buf = if as_bytes(i) {
                        Buf::Bytes(self.weight_as_bytes(v).ok_or_else(|| {
                            unsupported("a weight operand must be a bound weight")
                        })?)
                    } else {
                        b.clone()
                    };
                    regs.push(Reg::In(buf));
                    n_in += 1;
                    Place::Arg {
                        index: n_in - 1,
                        len: len_of(v),
                    }
                }
            };
            inputs.push(place);
        }
        let mut outputs = Vec::with_capacity(outs.len());
        for (loc, &v) in outs.iter().zip(&node.outputs) {
            outputs.push(match loc {
                Loc::Arena(r) => Place::Arena(r.clone()),
                Loc::Buf(b) => {
                    regs.push(Reg::Out(b.clone()));
                    n_out += 1;
                    Place::Arg {
                        index: n_out - 1,
                        len: len_of(v),
                    }
                }
            });
        }
        if let Some((i, Loc::Buf(state))) = deferred {
            inputs[i] = Place::Arg {
                index: n_out,
                len: usize::MAX,
            };
            regs.push(Reg::Out(state));
        }
        let uses_arena = inputs
            .iter()
            .chain(&outputs)
            .any(|p| matches!(p, Place::Arena(_)));
        Ok(Lowered {
            args: Args {
                inputs,
                outputs,
                arena: uses_arena.then(|| arena.cloned()).flatten(),
            },
            regs,
        })
    }

    /// The launch (its kernel closure) for `node` over `args`, and its
    /// workspace bytes.
    fn kernel_for(
        &self,
        node: &Node,
        sizes: &[usize],
        args: Args,
        mode: Mode,
    ) -> Result<(Launch, usize), ExecError> {
        let g = self.graph();
        let unsupported = |reason: &str| unsupported(node, reason);
        let dims = |v: ValueId| dims_of(g, v, sizes);
        let out_dims = dims(node.outputs[0]);
        let name = node.name.clone();
        let aliased: Vec<bool> = (0..node.inputs.len()).map(|i| args.aliased(i, 0)).collect();
        let in_place = |i: usize| aliased.get(i).copied().unwrap_or(false);
        let out_in_arena = matches!(args.outputs.first(), Some(Place::Arena(_)));
        let cache_place = args.inputs.get(3).cloned();
        let mut args = Some(args);
        let mut launch = |f: KernelFn| {
            let args = args.take().unwrap_or_default();
            Launch::new(name.clone(), move |k| f(k, &args))
        };
        let launch = match &node.op {
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let f = match node.op {
                    Op::Add => ops::add,
                    Op::Sub => ops::sub,
                    Op::Mul => ops::mul,
                    _ => ops::div,
                };
                let b_len = volume(&dims(node.inputs[1])).max(1);
                let alias = in_place(0);
                launch(Box::new(move |k, a| {
                    let b = a.f32_in(k, 1)?;
                    let mut out = a.f32_out(k, 0)?;
                    if alias {
                        // a is in `out`: each piece is copied out, then
                        // overwritten by `f` (exact ops: same bits).
                        let mut piece = [0f32; FUSED_CHUNK];
                        for row in out.chunks_mut(b_len) {
                            for (s, o) in row.chunks_mut(FUSED_CHUNK).enumerate() {
                                let x = &mut piece[..o.len()];
                                x.copy_from_slice(o);
                                let at = s * FUSED_CHUNK;
                                f(x, &b[at..at + o.len()], o)?;
                            }
                        }
                    } else {
                        let x = a.f32_in(k, 0)?;
                        for (o, x) in out.chunks_mut(b_len).zip(x.chunks(b_len)) {
                            f(x, &b, o)?;
                        }
                    }
                    Ok(())
                }))
            }
            Op::Unary(u) => {
                let (u, alias) = (*u, in_place(0));
                launch(Box::new(move |k, a| {
                    let apply = |x: &[f32], o: &mut [f32]| match u {
                        Unary::Silu => ops::silu(x, o),
                        Unary::Gelu { tanh } => {
                            let approx = if tanh {
                                GeluApprox::Tanh
                            } else {
                                GeluApprox::Erf
                            };
                            ops::gelu(x, o, approx)
                        }
                        Unary::Scale(f) => ops::scale(x, f, o),
                    };
                    let mut out = a.f32_out(k, 0)?;
                    if alias {
                        let mut piece = [0f32; FUSED_CHUNK];
                        for o in out.chunks_mut(FUSED_CHUNK) {
                            let x = &mut piece[..o.len()];
                            x.copy_from_slice(o);
                            apply(x, o)?;
                        }
                    } else {
                        apply(&a.f32_in(k, 0)?, &mut out)?;
                    }
                    Ok(())
                }))
            }
            Op::SwiGlu => launch(Box::new(move |k, a| {
                let (gate, up) = (a.f32_in(k, 0)?, a.f32_in(k, 1)?);
                ops::swiglu(&gate, &up, &mut a.f32_out(k, 0)?)?;
                Ok(())
            })),
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
                let d = out_dims.last().copied().unwrap_or(1).max(1);
                let rows = volume(&out_dims) / d;
                let (eps, layer) = (*eps, matches!(node.op, Op::LayerNorm { .. }));
                launch(Box::new(move |k, a| {
                    let (x, w) = (a.f32_in(k, 0)?, a.f32_in(k, 1)?);
                    let mut out = a.f32_out(k, 0)?;
                    if layer {
                        let b = a.f32_in(k, 2)?;
                        let p = LayerNormParams { eps };
                        ops::layer_norm(&x, &w, Some(&b), &mut out, rows, d, &p)?;
                    } else {
                        ops::rms_norm(&x, &w, &mut out, rows, d, &RmsNormParams { eps })?;
                    }
                    Ok(())
                }))
            }
            Op::Softmax => {
                let cols = out_dims.last().copied().unwrap_or(1).max(1);
                let rows = volume(&out_dims) / cols;
                let alias = in_place(0);
                launch(Box::new(move |k, a| {
                    let mut out = a.f32_out(k, 0)?;
                    if !alias {
                        out.copy_from_slice(&a.f32_in(k, 0)?);
                    }
                    ops::softmax(&mut out, rows, cols)?;
                    Ok(())
                }))
            }
            Op::MatMul | Op::Linear(_) => {
                let spec = match node.op {
                    Op::Linear(l) => l,
                    _ => Linear::MATMUL,
                };
                let args = args.take().unwrap_or_default();
                return self.linear_launch(node, spec, sizes, args, mode);
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
                let alias = in_place(0);
                launch(Box::new(move |k, a| {
                    let pos = a.in_of::<u32>(k, 1)?;
                    let mut out = a.f32_out(k, 0)?;
                    if !alias {
                        out.copy_from_slice(&a.f32_in(k, 0)?);
                    }
                    ops::rope(&mut out, &pos, heads, head_dim, &params)?;
                    Ok(())
                }))
            }
            Op::Embedding => {
                let t_id = node.inputs[0];
                let format = match g.value(t_id).map(|i| i.dtype) {
                    Some(DType::Weights(f)) => f,
                    _ => Format::Element(ElementFormat::F32),
                };
                let t_dims = dims(t_id);
                let (vocab, dim) = (t_dims[0], t_dims[1]);
                launch(Box::new(move |k, a| {
                    let (bytes, ids) = (a.in_of::<u8>(k, 0)?, a.in_of::<u32>(k, 1)?);
                    let rows = QuantizedRows {
                        bytes: &bytes,
                        format,
                        vocab,
                        dim,
                    };
                    ops::embedding(&rows, &ids, &mut a.f32_out(k, 0)?)?;
                    Ok(())
                }))
            }
            Op::Reshape(_) => {
                let alias = in_place(0);
                let is_f32 =
                    out_in_arena || g.value(node.outputs[0]).map(|i| i.dtype) == Some(DType::F32);
                launch(Box::new(move |k, a| {
                    match (alias, is_f32) {
                        // Same elements, same place: nothing to do.
                        (true, _) => {}
                        (false, true) => a.f32_out(k, 0)?.copy_from_slice(&a.f32_in(k, 0)?),
                        (false, false) => a
                            .out_of::<u32>(k, 0)?
                            .copy_from_slice(&a.in_of::<u32>(k, 0)?),
                    }
                    Ok(())
                }))
            }
            Op::Fused(program) => {
                let program = program.clone();
                let n_in = node.inputs.len();
                let row = out_dims.last().copied().unwrap_or(1);
                let alias = (0..n_in).find(|&i| in_place(i));
                launch(Box::new(move |k, a| {
                    let ins = (0..n_in)
                        .map(|i| match alias == Some(i) {
                            true => Ok(None),
                            false => a.f32_in(k, i).map(Some),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let inputs: Vec<FusedInput<'_>> = ins
                        .iter()
                        .map(|r| match r {
                            Some(r) => FusedInput::Values(r),
                            None => FusedInput::InOutput,
                        })
                        .collect();
                    run_fused(&program, &inputs, row, &mut a.f32_out(k, 0)?)?;
                    Ok(())
                }))
            }
            Op::Transpose(perm) => {
                let (in_dims, perm) = (dims(node.inputs[0]), perm.clone());
                launch(Box::new(move |k, a| {
                    let x = a.f32_in(k, 0)?;
                    ops::transpose(&x, &in_dims, &perm, &mut a.f32_out(k, 0)?)?;
                    Ok(())
                }))
            }
            Op::Slice { axis, start, end } => {
                let in_dims = dims(node.inputs[0]);
                let (outer, inner) = (volume(&in_dims[..*axis]), volume(&in_dims[*axis + 1..]));
                let (len, start, end) = (in_dims[*axis], *start, *end);
                launch(Box::new(move |k, a| {
                    let x = a.f32_in(k, 0)?;
                    let mut out = a.f32_out(k, 0)?;
                    ops::slice_axis(&x, outer, len, inner, start, end, &mut out)?;
                    Ok(())
                }))
            }
            Op::Concat { axis } => {
                let axis = *axis;
                let (outer, inner) = (volume(&out_dims[..axis]), volume(&out_dims[axis + 1..]));
                let axes: Vec<usize> = node.inputs.iter().map(|&v| dims(v)[axis]).collect();
                launch(Box::new(move |k, a| {
                    let ins = (0..axes.len())
                        .map(|i| a.f32_in(k, i))
                        .collect::<Result<Vec<_>, _>>()?;
                    let parts: Vec<(&[f32], usize)> =
                        ins.iter().zip(&axes).map(|(r, &n)| (&r[..], n)).collect();
                    ops::concat_axis(&parts, outer, inner, &mut a.f32_out(k, 0)?)?;
                    Ok(())
                }))
            }
            Op::Reduce { mean } => {
                let in_dims = dims(node.inputs[0]);
                let cols = in_dims.last().copied().unwrap_or(1);
                let (rows, mean) = (volume(&out_dims), *mean);
                launch(Box::new(move |k, a| {
                    let x = a.f32_in(k, 0)?;
                    ops::sum_rows(&x, rows, cols, mean, &mut a.f32_out(k, 0)?)?;
                    Ok(())
                }))
            }
            Op::Gather => {
                let width = out_dims.get(1).copied().unwrap_or(0);
                launch(Box::new(move |k, a| {
                    let (x, rows) = (a.f32_in(k, 0)?, a.in_of::<u32>(k, 1)?);
                    ops::gather_rows(&x, width, &rows, &mut a.f32_out(k, 0)?)?;
                    Ok(())
                }))
            }
            Op::TopK { k } => {
                let in_dims = dims(node.inputs[0]);
                let cols = in_dims.last().copied().unwrap_or(1).max(1);
                let (rows, k) = (volume(&in_dims) / cols, *k);
                launch(Box::new(move |kern, a| {
                    let x = a.f32_in(kern, 0)?;
                    let mut values = a.f32_out(kern, 0)?;
                    let mut indices = a.out_of::<u32>(kern, 1)?;
                    ops::top_k(&x, rows, cols, k, &mut indices, &mut values)?;
                    Ok(())
                }))
            }
            Op::Split { axis, sizes } => {
                let in_dims = dims(node.inputs[0]);
                let (outer, inner) = (volume(&in_dims[..*axis]), volume(&in_dims[*axis + 1..]));
                let len = in_dims[*axis];
                let sizes = sizes.clone();
                launch(Box::new(move |k, a| {
                    let x = a.f32_in(k, 0)?;
                    let mut start = 0;
                    for (i, &part) in sizes.iter().enumerate() {
                        let mut out = a.f32_out(k, i)?;
                        ops::slice_axis(&x, outer, len, inner, start, start + part, &mut out)?;
                        start += part;
                    }
                    Ok(())
                }))
            }
            Op::Attention {
                heads,
                scale,
                centered,
            }
            | Op::AttentionBatch {
                heads,
                scale,
                centered,
            } => {
                let DType::KvCache(layout) =
                    g.value(node.inputs[3]).map_or(DType::F32, |i| i.dtype)
                else {
                    return Err(unsupported("input 3 is not a KV cache"));
                };
                let Some(Place::Arg {
                    index: cache_at, ..
                }) = cache_place
                else {
                    return Err(unsupported("the KV cache must be a launch buffer"));
                };
                // A centered op's three extra inputs come last.
                let extra = KvCentered::inputs(centered);
                let attend = Attend {
                    layout,
                    params: AttentionParams {
                        n_heads: *heads,
                        scale: *scale,
                    },
                    centering_at: centered.map(|c| (node.inputs.len() - extra, c)),
                    cache_at,
                    tokens: out_dims[0],
                };
                if matches!(node.op, Op::Attention { .. }) {
                    // One sequence: a batch of one, its table a single row.
                    launch(Box::new(move |k, a| {
                        let (table, start) = (a.in_of::<u32>(k, 4)?, a.in_of::<u32>(k, 5)?);
                        let start = start.first().copied().unwrap_or(0);
                        let len = attend.tokens as u32;
                        attend.run(k, a, &table, table.len(), &[start], &[len])
                    }))
                } else {
                    let blocks = dims(node.inputs[4]).get(1).copied().unwrap_or(0);
                    launch(Box::new(move |k, a| {
                        let tables = a.in_of::<u32>(k, 4)?;
                        let (starts, lens) = (a.in_of::<u32>(k, 5)?, a.in_of::<u32>(k, 6)?);
                        attend.run(k, a, &tables, blocks, &starts, &lens)
                    }))
                }
            }
            Op::AllReduce => {
                let alias = in_place(0);
                let collective = self.collective();
                launch(Box::new(move |k, a| {
                    let mut out = a.f32_out(k, 0)?;
                    if !alias {
                        out.copy_from_slice(&a.f32_in(k, 0)?);
                    }
                    if let Some(c) = &collective {
                        c.all_reduce_sum(&mut out)?;
                    }
                    Ok(())
                }))
            }
            Op::AllGather { offset, total } => {
                let (offset, total) = (*offset, *total);
                let in_dims = dims(node.inputs[0]);
                let width = in_dims.last().copied().unwrap_or(0);
                let collective = self.collective();
                launch(Box::new(move |k, a| {
                    let x = a.f32_in(k, 0)?;
                    let mut out = a.f32_out(k, 0)?;
                    out.fill(0.0);
                    if width > 0 {
                        for (row, part) in out.chunks_exact_mut(total).zip(x.chunks_exact(width)) {
                            row[offset..offset + width].copy_from_slice(part);
                        }
                    }
                    if let Some(c) = &collective {
                        c.all_reduce_sum(&mut out)?;
                    }
                    Ok(())
                }))
            }
            Op::Argmax => {
                let in_dims = dims(node.inputs[0]);
                let cols = in_dims.last().copied().unwrap_or(1).max(1);
                let rows = volume(&in_dims) / cols;
                launch(Box::new(move |k, a| {
                    let x = a.f32_in(k, 0)?;
                    ops::argmax(&x, rows, cols, &mut a.out_of::<u32>(k, 0)?)?;
                    Ok(())
                }))
            }
        };
        Ok((launch, 0))
    }

    /// A linear layer's launch (a plain matmul being the simplest): in
    /// graph mode with its weights packed when they run in the prefill
    /// regime; with its residual in place when the plan put the output
    /// there.
    fn linear_launch(
        &self,
        node: &Node,
        spec: Linear,
        sizes: &[usize],
        args: Args,
        mode: Mode,
    ) -> Result<(Launch, usize), ExecError> {
        let g = self.graph();
        let dims = |v: ValueId| dims_of(g, v, sizes);
        let x_dims = dims(node.inputs[0]);
        let rows = x_dims.first().copied().unwrap_or(0);
        let k = x_dims.get(1).copied().unwrap_or(0);
        let first = spec.first_weight();
        let w_ids = &node.inputs[first..first + spec.weights];
        let weights: Vec<(Format, usize)> = w_ids
            .iter()
            .map(|&w| {
                let format = match g.value(w).map(|i| i.dtype) {
                    Some(DType::Weights(f)) => f,
                    _ => Format::Element(ElementFormat::F32),
                };
                (format, dims(w)[0])
            })
            .collect();
        let packed = match mode {
            Mode::Graph => self.packs_for(w_ids, &weights, rows, k)?,
            Mode::Eager => None,
        };
        // The decode dots of one row read re-laid weights where the CPU has
        // a kernel for them (the same bits, see `DecodePack`).
        let decode_packs = match (mode, &packed) {
            (Mode::Graph, None) if rows == 1 => self.decode_packs_for(w_ids, &weights, k)?,
            _ => Vec::new(),
        };
        let residual_in_place =
            spec.epilogue == Epilogue::Residual && args.aliased(first + spec.weights, 0);
        let run = LinearLaunch {
            spec,
            rows,
            k,
            weights,
            args,
            packed,
            decode_packs,
            residual_in_place,
        };
        let workspace = run.workspace_bytes();
        let name = node.name.clone();
        Ok((Launch::new(name, move |kern| run.run(kern)), workspace))
    }
}
