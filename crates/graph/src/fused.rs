//! Running a fused elementwise program ([`Op::Fused`](crate::Op::Fused)):
//! one launch, chunk by chunk, with the intermediates in L1-sized
//! registers instead of whole tensors.

use exodus_kernels::ops::{self, GeluApprox, LayerNormParams, RmsNormParams};
use exodus_kernels::KernelError;

use crate::ir::{Binary, Program, Step, Unary};

/// Elements per chunk of a fused program: its registers stay in L1. A
/// multiple of every SIMD width, so each step's vector tail falls where a
/// whole-tensor call's would.
pub(crate) const FUSED_CHUNK: usize = 1024;

/// Elements per chunk: [`FUSED_CHUNK`], or for a program that normalizes
/// rows of `row` values, whole rows: the smallest multiple of both `row`
/// and 16 (so SIMD tails still fall where a whole-tensor call's would),
/// repeated up to about [`FUSED_CHUNK`].
fn chunk_len(program: &Program, row: usize) -> usize {
    if !program.has_norm() || row == 0 {
        return FUSED_CHUNK;
    }
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let unit = row / gcd(row, 16) * 16;
    unit * (FUSED_CHUNK / unit).max(1)
}

/// An input of a fused program.
#[derive(Clone, Copy)]
pub(crate) enum FusedInput<'a> {
    /// Values as long as the output, or shorter (broadcast: tiled).
    Values(&'a [f32]),
    /// The output buffer itself holds this input (computed in place): each
    /// chunk is read before the chunk is written.
    InOutput,
}

/// Runs a fused elementwise program chunk by chunk: each register holds
/// one chunk; an input as long as the output is read where it is, a
/// shorter (broadcast) one is tiled into its register, the in-place one is
/// copied from the output chunk before that chunk is overwritten. Every
/// step is one exodus-kernels op on the chunk, so the arithmetic is bit for
/// bit that of the unfused nodes.
pub(crate) fn run_fused(
    program: &Program,
    inputs: &[FusedInput<'_>],
    row: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let total = out.len();
    let n_in = inputs.len();
    let chunk = chunk_len(program, row);
    let mut regs: Vec<Vec<f32>> = vec![vec![0f32; chunk]; n_in + program.steps.len()];
    let direct =
        |r: usize| matches!(inputs.get(r), Some(FusedInput::Values(v)) if v.len() == total);
    for start in (0..total).step_by(chunk) {
        let len = chunk.min(total - start);
        for (i, input) in inputs.iter().enumerate() {
            match input {
                FusedInput::Values(v) if v.len() != total && !v.is_empty() => {
                    for (j, r) in regs[i][..len].iter_mut().enumerate() {
                        *r = v[(start + j) % v.len()];
                    }
                }
                FusedInput::InOutput => regs[i][..len].copy_from_slice(&out[start..start + len]),
                FusedInput::Values(_) => {}
            }
        }
        for (s, step) in program.steps.iter().enumerate() {
            let dst = n_in + s;
            let mut target = std::mem::take(&mut regs[dst]);
            {
                let read = |r: usize| -> &[f32] {
                    match inputs.get(r) {
                        Some(FusedInput::Values(v)) if direct(r) => &v[start..start + len],
                        _ => &regs[r][..len],
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
                    Step::Norm {
                        layer,
                        x,
                        weight,
                        bias,
                        eps,
                    } => {
                        let rows = len / row.max(1);
                        let w = &read(weight)[..row];
                        if layer {
                            let b = bias.map(|b| &read(b)[..row]);
                            let p = LayerNormParams { eps };
                            ops::layer_norm(read(x), w, b, o, rows, row, &p)?
                        } else {
                            ops::rms_norm(read(x), w, o, rows, row, &RmsNormParams { eps })?
                        }
                    }
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
