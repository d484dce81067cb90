//! Type and shape rules: for each op, the output types and shapes its
//! inputs imply, or why they do not fit. The builder applies these when a
//! node is added; the verifier applies them again to a whole graph.

use crate::ir::{Epilogue, KvCentered, Linear, Op, Program, Step, Unary};
use crate::types::{DType, Dim, Shape};

/// An input as the rules see it.
pub(crate) type Operand<'a> = (&'a DType, &'a Shape);

/// The outputs of `op` on `inputs`, or a reason naming the mismatch
/// (shapes printed with `symbols`).
pub(crate) fn infer(
    op: &Op,
    inputs: &[Operand<'_>],
    symbols: &[String],
) -> Result<Vec<(DType, Shape)>, String> {
    if let Some(arity) = op.arity() {
        if inputs.len() != arity {
            return Err(format!("takes {arity} inputs, got {}", inputs.len()));
        }
    }
    let show = |s: &Shape| s.display(symbols).to_string();
    let f32_input = |i: usize| -> Result<&Shape, String> {
        let (dtype, shape) = inputs[i];
        if *dtype != DType::F32 {
            return Err(format!("input {i} must be f32, is {dtype}"));
        }
        Ok(shape)
    };
    let min_rank = |i: usize, shape: &Shape, rank: usize| -> Result<(), String> {
        if shape.rank() < rank {
            return Err(format!(
                "input {i} needs rank >= {rank}, has shape {}",
                show(shape)
            ));
        }
        Ok(())
    };
    match op {
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let (a, b) = (f32_input(0)?, f32_input(1)?);
            let suffix = b.rank() <= a.rank() && a.0[a.rank() - b.rank()..] == b.0[..];
            if !suffix {
                return Err(format!(
                    "shapes {} and {} do not broadcast (the second must equal the first's trailing dims)",
                    show(a),
                    show(b)
                ));
            }
            Ok(vec![(DType::F32, a.clone())])
        }
        Op::Unary(u) => {
            let x = f32_input(0)?;
            if let Unary::Scale(f) = u {
                if !f.is_finite() {
                    return Err(format!("scale factor {f} is not finite"));
                }
            }
            Ok(vec![(DType::F32, x.clone())])
        }
        Op::SwiGlu => {
            let (gate, up) = (f32_input(0)?, f32_input(1)?);
            if gate != up {
                return Err(format!("gate {} and up {} differ", show(gate), show(up)));
            }
            Ok(vec![(DType::F32, gate.clone())])
        }
        Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
            if !(eps.is_finite() && *eps >= 0.0) {
                return Err(format!("eps {eps} must be finite and >= 0"));
            }
            let x = f32_input(0)?;
            min_rank(0, x, 1)?;
            let want = Shape(vec![x.last().unwrap_or(Dim::Fixed(0))]);
            for i in 1..inputs.len() {
                let p = f32_input(i)?;
                if *p != want {
                    return Err(format!(
                        "input {i} must have shape {} (the last axis of x), has {}",
                        show(&want),
                        show(p)
                    ));
                }
            }
            Ok(vec![(DType::F32, x.clone())])
        }
        Op::Softmax => {
            let x = f32_input(0)?;
            min_rank(0, x, 1)?;
            Ok(vec![(DType::F32, x.clone())])
        }
        Op::MatMul => matmul(inputs, &show),
        Op::Rope {
            head_dim, theta, ..
        } => {
            let x = f32_input(0)?;
            let (pdtype, pos) = inputs[1];
            if *pdtype != DType::U32 {
                return Err(format!("positions must be u32, are {pdtype}"));
            }
            if x.rank() != 2 || pos.rank() != 1 || x.0[0] != pos.0[0] {
                return Err(format!(
                    "needs x[tokens, width] and positions[tokens], got {} and {}",
                    show(x),
                    show(pos)
                ));
            }
            if *head_dim == 0 || head_dim % 2 != 0 {
                return Err(format!("head_dim {head_dim} must be even and > 0"));
            }
            if !(theta.is_finite() && *theta > 0.0) {
                return Err(format!("theta {theta} must be finite and > 0"));
            }
            match x.0[1] {
                Dim::Fixed(w) if w % head_dim == 0 => Ok(vec![(DType::F32, x.clone())]),
                d => Err(format!(
                    "width {} is not a fixed multiple of head_dim {head_dim}",
                    show(&Shape(vec![d]))
                )),
            }
        }
        Op::Embedding => {
            let (tdtype, table) = inputs[0];
            let (idtype, ids) = inputs[1];
            if matches!(tdtype, DType::U32) {
                return Err("the table must be f32 or weights, is u32".into());
            }
            if *idtype != DType::U32 {
                return Err(format!("ids must be u32, are {idtype}"));
            }
            let [Dim::Fixed(_), d @ Dim::Fixed(_)] = table.0[..] else {
                return Err(format!(
                    "the table must be [vocab, dim] with fixed sizes, is {}",
                    show(table)
                ));
            };
            let mut out = ids.0.clone();
            out.push(d);
            Ok(vec![(DType::F32, Shape(out))])
        }
        Op::Reshape(target) => {
            let (dtype, x) = inputs[0];
            if matches!(dtype, DType::Weights(_)) {
                return Err("weights cannot be reshaped".into());
            }
            if x.volume() != target.volume() {
                return Err(format!(
                    "cannot reshape {} to {}: element counts differ",
                    show(x),
                    show(target)
                ));
            }
            Ok(vec![(*dtype, target.clone())])
        }
        Op::AllReduce => {
            let x = f32_input(0)?;
            Ok(vec![(DType::F32, x.clone())])
        }
        Op::AllGather { offset, total } => {
            let x = f32_input(0)?;
            min_rank(0, x, 1)?;
            let mut dims = x.0.clone();
            let last = dims.len() - 1;
            let fits = matches!(dims[last], Dim::Fixed(w) if offset + w <= *total);
            if !fits {
                return Err(format!(
                    "columns {offset}.. of {} do not fit in {total}",
                    show(x)
                ));
            }
            dims[last] = Dim::Fixed(*total);
            Ok(vec![(DType::F32, Shape(dims))])
        }
        Op::Argmax => {
            let x = f32_input(0)?;
            min_rank(0, x, 1)?;
            Ok(vec![(DType::U32, Shape(x.0[..x.rank() - 1].to_vec()))])
        }
        Op::Gather => {
            let x = f32_input(0)?;
            let (id, idx) = inputs[1];
            match (&x.0[..], &idx.0[..]) {
                ([_, d], [n]) if *id == DType::U32 => Ok(vec![(DType::F32, Shape(vec![*n, *d]))]),
                _ => Err(format!(
                    "needs x[rows, width] and u32 row indices [n], got {} and {id}{}",
                    show(x),
                    show(idx)
                )),
            }
        }
        Op::TopK { k } => {
            let x = f32_input(0)?;
            min_rank(0, x, 1)?;
            match x.last() {
                Some(Dim::Fixed(n)) if *k >= 1 && *k <= n => {
                    let mut out = x.clone();
                    out.0[x.rank() - 1] = Dim::Fixed(*k);
                    Ok(vec![(DType::F32, out.clone()), (DType::U32, out)])
                }
                _ => Err(format!(
                    "k = {k} does not fit the last axis of {} (fixed, at least k)",
                    show(x)
                )),
            }
        }
        Op::Split { axis, sizes } => {
            let x = f32_input(0)?;
            match x.0.get(*axis) {
                Some(Dim::Fixed(n)) if !sizes.is_empty() && sizes.iter().sum::<usize>() == *n => {
                    Ok(sizes
                        .iter()
                        .map(|&part| {
                            let mut out = x.clone();
                            out.0[*axis] = Dim::Fixed(part);
                            (DType::F32, out)
                        })
                        .collect())
                }
                _ => Err(format!(
                    "parts {sizes:?} do not split axis {axis} of {} (fixed, summing to its length)",
                    show(x)
                )),
            }
        }
        Op::Fused(program) => fused(program, inputs, &show),
        Op::Transpose(perm) => {
            let x = f32_input(0)?;
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..x.rank()).collect::<Vec<_>>() {
                return Err(format!(
                    "{perm:?} is not a permutation of the {} axes of {}",
                    x.rank(),
                    show(x)
                ));
            }
            Ok(vec![(
                DType::F32,
                Shape(perm.iter().map(|&p| x.0[p]).collect()),
            )])
        }
        Op::Slice { axis, start, end } => {
            let x = f32_input(0)?;
            match x.0.get(*axis) {
                Some(Dim::Fixed(n)) if start <= end && end <= n => {
                    let mut out = x.clone();
                    out.0[*axis] = Dim::Fixed(end - start);
                    Ok(vec![(DType::F32, out)])
                }
                _ => Err(format!(
                    "{start}..{end} of axis {axis} does not fit {} (the axis must be fixed)",
                    show(x)
                )),
            }
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err("concat needs inputs".into());
            }
            let first = f32_input(0)?;
            let mut total = 0usize;
            for i in 0..inputs.len() {
                let x = f32_input(i)?;
                let same_elsewhere = x.rank() == first.rank()
                    && (0..x.rank()).all(|a| a == *axis || x.0[a] == first.0[a]);
                match (same_elsewhere, x.0.get(*axis)) {
                    (true, Some(Dim::Fixed(n))) => total += n,
                    _ => {
                        return Err(format!(
                            "input {i} {} does not join {} along axis {axis} (fixed there, equal elsewhere)",
                            show(x),
                            show(first)
                        ))
                    }
                }
            }
            let mut out = first.clone();
            out.0[*axis] = Dim::Fixed(total);
            Ok(vec![(DType::F32, out)])
        }
        Op::Reduce { .. } => {
            let x = f32_input(0)?;
            min_rank(0, x, 1)?;
            Ok(vec![(DType::F32, Shape(x.0[..x.rank() - 1].to_vec()))])
        }
        Op::Attention {
            heads,
            scale,
            centered,
        } => {
            centering(centered, inputs, &show)?;
            attention(*heads, *scale, inputs, &show)
        }
        Op::AttentionBatch {
            heads,
            scale,
            centered,
        } => {
            centering(centered, inputs, &show)?;
            attention_batch(*heads, *scale, inputs, &show)
        }
        Op::Linear(l) => linear(l, inputs, &show),
    }
}

/// A fused linear layer: x `[rows, k]`, the norm weight `[k]`, weights of
/// one `k`, and what the epilogue needs.
fn linear(
    l: &Linear,
    inputs: &[Operand<'_>],
    show: &dyn Fn(&Shape) -> String,
) -> Result<Vec<(DType, Shape)>, String> {
    let want = match l.epilogue {
        Epilogue::None => None,
        Epilogue::Residual => Some(1),
        Epilogue::SwiGlu => Some(2),
    };
    if l.weights == 0 || want.is_some_and(|w| w != l.weights) {
        return Err(format!(
            "{} weights do not fit the {:?} epilogue",
            l.weights, l.epilogue
        ));
    }
    if let Some(eps) = l.rms_norm {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(format!("eps {eps} must be finite and >= 0"));
        }
        let (xd, x) = inputs[0];
        let (nd, norm) = inputs[1];
        let k = x.last();
        if *xd != DType::F32
            || *nd != DType::F32
            || k.is_none()
            || norm.0 != [k.unwrap_or(Dim::Fixed(0))]
        {
            return Err(format!(
                "the norm needs f32 x and an f32 weight of x's last axis, got {xd}{} and {nd}{}",
                show(x),
                show(norm)
            ));
        }
    }
    let first = l.first_weight();
    let mut outs = Vec::with_capacity(l.weights);
    for i in first..first + l.weights {
        let out = matmul(&[inputs[0], inputs[i]], show)
            .map_err(|e| format!("weight {}: {e}", i - first))?;
        outs.extend(out);
    }
    if l.bias {
        for i in 0..l.weights {
            let (bd, b) = inputs[l.first_bias() + i];
            let n = outs[i].1.last();
            if *bd != DType::F32 || n.is_none() || b.0 != [n.unwrap_or(Dim::Fixed(0))] {
                return Err(format!(
                    "bias {i} must be f32 of the output width {}, is {bd}{}",
                    show(&outs[i].1),
                    show(b)
                ));
            }
        }
    }
    match l.epilogue {
        Epilogue::None => Ok(outs),
        Epilogue::Residual => {
            let (rd, r) = inputs[l.arity() - 1];
            if *rd != DType::F32 || *r != outs[0].1 {
                return Err(format!(
                    "the residual must be f32{}, is {rd}{}",
                    show(&outs[0].1),
                    show(r)
                ));
            }
            Ok(outs)
        }
        Epilogue::SwiGlu => {
            if outs[0].1 != outs[1].1 {
                return Err(format!(
                    "gate {} and up {} differ",
                    show(&outs[0].1),
                    show(&outs[1].1)
                ));
            }
            outs.truncate(1);
            Ok(outs)
        }
    }
}

/// Attention's operands: q/k/v rows of the cache's head layout, a KV cache
/// with `heads` a multiple of its KV heads, a u32 block table and a u32
/// start position.
fn attention(
    heads: usize,
    scale: Option<f32>,
    inputs: &[Operand<'_>],
    show: &dyn Fn(&Shape) -> String,
) -> Result<Vec<(DType, Shape)>, String> {
    let DType::KvCache(layout) = inputs[3].0 else {
        return Err(format!("input 3 must be a KV cache, is {}", inputs[3].0));
    };
    let (kv, hd) = (layout.n_kv_heads(), layout.head_dim());
    if heads == 0 || !heads.is_multiple_of(kv) {
        return Err(format!(
            "{heads} query heads are not a multiple of the cache's {kv} KV heads"
        ));
    }
    if let Some(s) = scale {
        if !s.is_finite() {
            return Err(format!("scale {s} is not finite"));
        }
    }
    let q = inputs[0].1;
    for (i, width) in [(0, heads * hd), (1, kv * hd), (2, kv * hd)] {
        let (dtype, shape) = inputs[i];
        let fits = *dtype == DType::F32
            && shape.rank() == 2
            && shape.0[1] == Dim::Fixed(width)
            && shape.0[0] == q.0.first().copied().unwrap_or(Dim::Fixed(0));
        if !fits {
            return Err(format!(
                "input {i} must be f32[tokens, {width}] (tokens as in q), is {dtype}{}",
                show(shape)
            ));
        }
    }
    let (tdtype, table) = inputs[4];
    let (pdtype, pos) = inputs[5];
    if *tdtype != DType::U32 || table.rank() != 1 {
        return Err(format!(
            "the block table must be u32[blocks], is {tdtype}{}",
            show(table)
        ));
    }
    if *pdtype != DType::U32 || *pos != Shape(vec![Dim::Fixed(1)]) {
        return Err(format!(
            "start_pos must be u32[1], is {pdtype}{}",
            show(pos)
        ));
    }
    Ok(vec![(DType::F32, q.clone())])
}

/// A centered attention's extra operands (the last three):
/// `k_mean`, `v_mean` `f32[kv_heads * head_dim]` and the RoPE table
/// `f32[positions, 2 * head_dim]`.
fn centering(
    centered: &Option<KvCentered>,
    inputs: &[Operand<'_>],
    show: &dyn Fn(&Shape) -> String,
) -> Result<(), String> {
    if centered.is_none() {
        return Ok(());
    }
    let extra = &inputs[inputs.len() - KvCentered::inputs(centered)..];
    let DType::KvCache(layout) = inputs[3].0 else {
        return Err(format!("input 3 must be a KV cache, is {}", inputs[3].0));
    };
    let (kv, hd) = (layout.n_kv_heads(), layout.head_dim());
    let width = Shape(vec![Dim::Fixed(kv * hd)]);
    for (i, name) in [(0, "k_mean"), (1, "v_mean")] {
        let (dtype, shape) = extra[i];
        if *dtype != DType::F32 || *shape != width {
            return Err(format!(
                "{name} must be f32{}, is {dtype}{}",
                show(&width),
                show(shape)
            ));
        }
    }
    let (dtype, shape) = extra[2];
    if *dtype != DType::F32 || shape.rank() != 2 || shape.0[1] != Dim::Fixed(2 * hd) {
        return Err(format!(
            "the RoPE table must be f32[positions, {}], is {dtype}{}",
            2 * hd,
            show(shape)
        ));
    }
    Ok(())
}

/// Batched attention's operands: q/k/v and the cache as for one sequence,
/// then per sequence a block-table row, a start and a length (u32, one
/// number of sequences throughout).
fn attention_batch(
    heads: usize,
    scale: Option<f32>,
    inputs: &[Operand<'_>],
    show: &dyn Fn(&Shape) -> String,
) -> Result<Vec<(DType, Shape)>, String> {
    // q/k/v/cache as `attention` checks them, with a stand-in table/start.
    let (u32_t, blocks, one) = (
        DType::U32,
        Shape(vec![Dim::Fixed(1)]),
        Shape(vec![Dim::Fixed(1)]),
    );
    let single = [
        inputs[0],
        inputs[1],
        inputs[2],
        inputs[3],
        (&u32_t, &blocks),
        (&u32_t, &one),
    ];
    let out = attention(heads, scale, &single, show)?;
    let (td, tables) = inputs[4];
    let seqs = match (&tables.0[..], td) {
        ([s, _], DType::U32) => *s,
        _ => {
            return Err(format!(
                "the block tables must be u32[seqs, blocks], are {td}{}",
                show(tables)
            ))
        }
    };
    for (i, name) in [(5, "starts"), (6, "lens")] {
        let (d, s) = inputs[i];
        if *d != DType::U32 || s.0 != [seqs] {
            return Err(format!(
                "{name} must be u32{} (one per sequence), is {d}{}",
                show(&Shape(vec![seqs])),
                show(s)
            ));
        }
    }
    Ok(out)
}

/// A fused program: f32 inputs that all broadcast against the largest
/// one, registers read only after they are written, at least one step.
fn fused(
    program: &Program,
    inputs: &[Operand<'_>],
    show: &dyn Fn(&Shape) -> String,
) -> Result<Vec<(DType, Shape)>, String> {
    let full = inputs
        .iter()
        .map(|(_, s)| *s)
        .max_by_key(|s| s.rank())
        .ok_or("a fused node needs inputs")?;
    for (i, (dtype, shape)) in inputs.iter().enumerate() {
        if **dtype != DType::F32 {
            return Err(format!("input {i} must be f32, is {dtype}"));
        }
        let suffix =
            shape.rank() <= full.rank() && full.0[full.rank() - shape.rank()..] == shape.0[..];
        if !suffix {
            return Err(format!(
                "input {i} {} does not broadcast against {}",
                show(shape),
                show(full)
            ));
        }
    }
    if program.steps.is_empty() {
        return Err("an empty program".into());
    }
    for (i, step) in program.steps.iter().enumerate() {
        let written = inputs.len() + i;
        let reads = match *step {
            Step::Unary(_, a) => [a, a, a],
            Step::Binary(_, a, b) => [a, b, b],
            Step::Norm {
                x,
                weight,
                bias,
                eps,
                ..
            } => {
                if !(eps.is_finite() && eps >= 0.0) {
                    return Err(format!("step {i}: eps {eps} must be finite and >= 0"));
                }
                // Weight and bias: inputs of the rows' width.
                let row = Shape(vec![full.last().unwrap_or(Dim::Fixed(0))]);
                for p in std::iter::once(weight).chain(bias) {
                    let fits = inputs.get(p).is_some_and(|(_, s)| **s == row);
                    if !fits || full.rank() == 0 {
                        return Err(format!(
                            "step {i}: norm parameter register {p} must be an input of shape {}",
                            show(&row)
                        ));
                    }
                }
                [x, weight, bias.unwrap_or(weight)]
            }
        };
        if let Some(r) = reads.iter().find(|&&r| r >= written) {
            return Err(format!("step {i} reads register {r} before it is written"));
        }
        if let Step::Unary(Unary::Scale(f), _) = step {
            if !f.is_finite() {
                return Err(format!("step {i}: scale factor {f} is not finite"));
            }
        }
    }
    Ok(vec![(DType::F32, full.clone())])
}

/// `x[m, k] · W[n, k]ᵀ`.
fn matmul(
    inputs: &[Operand<'_>],
    show: &dyn Fn(&Shape) -> String,
) -> Result<Vec<(DType, Shape)>, String> {
    let (xd, x) = inputs[0];
    let (wd, w) = inputs[1];
    if *xd != DType::F32 {
        return Err(format!("x must be f32, is {xd}"));
    }
    if *wd == DType::U32 {
        return Err("W must be f32 or weights, is u32".into());
    }
    let (m, kx) = match x.0[..] {
        [m, k] => (m, k),
        _ => return Err(format!("x must be [rows, k], is {}", show(x))),
    };
    let (n, k) = match w.0[..] {
        [Dim::Fixed(n), Dim::Fixed(k)] => (n, k),
        _ => return Err(format!("W must be [n, k] with fixed sizes, is {}", show(w))),
    };
    if kx != Dim::Fixed(k) {
        return Err(format!("x {} and W {} disagree on k", show(x), show(w)));
    }
    if let DType::Weights(format) = wd {
        let block = format.block_elems();
        if k % block != 0 {
            return Err(format!(
                "k = {k} is not a multiple of {format}'s block of {block}"
            ));
        }
    }
    Ok(vec![(DType::F32, Shape(vec![m, Dim::Fixed(n)]))])
}
