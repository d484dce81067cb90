//! One launch for a linear layer ([`Op::Linear`](crate::Op::Linear), and a
//! plain matmul as its simplest case): the optional RMS norm of x, the
//! matmuls of every weight against it, and the epilogue (a residual
//! addition, or SwiGLU of the two results).
//!
//! - With several weights in the decode regime the matmuls run as one job
//!   (`matmul_group_in`: x quantized once, one fork/join).
//! - In graph mode the session packs the weights once per shape bucket when
//!   they run in the prefill regime ([`PackedWeights`]); the launch then
//!   works through x in chunks of [`CHUNK_ROWS`] rows, so the norm's output
//!   and SwiGLU's two operands exist only a chunk at a time (the
//!   [`workspace`](LinearLaunch::workspace_bytes)), never as whole tensors.
//!   Every chunk uses the tiling chosen for all the rows, and each output
//!   row depends on its own input row alone, so the results are the bits
//!   the unfused nodes give.
//! - In graph mode a launch of one row (a decode step) reads Q4_0 / Q4_1
//!   weights through their [`DecodePack`] where the CPU's dots have a
//!   kernel for it (AVX-512 VNNI): the same bits, at about the memory's
//!   speed instead of a third of it.
//! - In eager mode (no packs) the rows run as one chunk.

use std::sync::Arc;

use exodus_kernels::matmul::{
    matmul_group_in, matmul_prepacked, matmul_swiglu_in, DecodePack, PackedWeights, Weights,
};
use exodus_kernels::ops::{self, RmsNormParams};
use exodus_kernels::{pool, Tiling};
use exodus_numerics::cpu;
use exodus_numerics::Format;
use exodus_runtime::{Kernel, TaskError};

use crate::args::Args;
use crate::ir::{Epilogue, Linear};

/// Weights packed for the prefill regime, each with the tiling it was
/// packed for.
pub(crate) type Packs = Vec<(Tiling, Arc<PackedWeights>)>;

/// Rows of x per chunk when the weights are packed (prefill).
pub(crate) const CHUNK_ROWS: usize = 64;

/// Everything one linear launch needs besides its buffers.
pub(crate) struct LinearLaunch {
    /// What the layer computes.
    pub spec: Linear,
    /// Rows of x.
    pub rows: usize,
    /// Width of x (and of every weight).
    pub k: usize,
    /// Format and output width of each weight.
    pub weights: Vec<(Format, usize)>,
    /// Where the operands live.
    pub args: Args,
    /// The weights packed for the prefill regime, with the tiling they
    /// were packed for (graph mode; `None`: unpacked, one chunk).
    pub packed: Option<Packs>,
    /// Per weight, its [`DecodePack`] where it has one (graph mode, one row
    /// of x; empty otherwise).
    pub decode_packs: Vec<Option<Arc<DecodePack>>>,
    /// The output was planned on the residual's range: the matmul result
    /// is added into it where it is.
    pub residual_in_place: bool,
}

impl LinearLaunch {
    /// Element count of output `i`.
    fn out_len(&self, i: usize) -> usize {
        self.rows * self.weights[i].1
    }

    /// Outputs of the launch.
    pub(crate) fn outputs(&self) -> usize {
        match self.spec.epilogue {
            Epilogue::None => self.spec.weights,
            Epilogue::Residual | Epilogue::SwiGlu => 1,
        }
    }

    /// Rows per chunk.
    fn chunk_rows(&self) -> usize {
        match self.packed {
            Some(_) => CHUNK_ROWS,
            None => self.rows.max(1),
        }
    }

    /// Bytes of scratch one run holds besides its inputs and outputs: the
    /// normalized rows and SwiGLU's two operands, one chunk of each.
    pub(crate) fn workspace_bytes(&self) -> usize {
        let m = self.chunk_rows().min(self.rows);
        let norm = if self.spec.rms_norm.is_some() {
            m * self.k
        } else {
            0
        };
        let epilogue = match self.spec.epilogue {
            // One unpacked row: the kernel applies the activation per task
            // and never holds the gate and up vectors.
            Epilogue::SwiGlu if self.packed.is_none() && self.rows == 1 => 0,
            Epilogue::SwiGlu => 2 * m * self.weights[0].1,
            Epilogue::Residual if self.residual_in_place => m * self.weights[0].1,
            _ => 0,
        };
        4 * (norm + epilogue)
    }

    /// Runs the layer on a launch's buffers: inputs `[x, norm weight?, W..,
    /// residual?]`, outputs as [`outputs`](Self::outputs) says.
    pub(crate) fn run(&self, kern: &Kernel<'_>) -> Result<(), TaskError> {
        let (rows, k, first) = (self.rows, self.k, self.spec.first_weight());
        let a = &self.args;
        let x = a.f32_in(kern, 0)?;
        let norm = match self.spec.rms_norm {
            Some(eps) => Some((eps, a.f32_in(kern, 1)?)),
            None => None,
        };
        let bytes = (0..self.spec.weights)
            .map(|i| a.in_of::<u8>(kern, first + i))
            .collect::<Result<Vec<_>, _>>()?;
        let ws = bytes
            .iter()
            .zip(&self.weights)
            .enumerate()
            .map(|(i, (b, &(format, n)))| {
                let w = Weights::new(format, b, n, k)?;
                match self.decode_packs.get(i) {
                    Some(Some(pack)) => w.with_decode_pack(pack),
                    _ => Ok(w),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let biases = match self.spec.bias {
            true => (0..self.spec.weights)
                .map(|i| a.f32_in(kern, self.spec.first_bias() + i))
                .collect::<Result<Vec<_>, _>>()?,
            false => Vec::new(),
        };
        let add_bias = |i: usize, rows: &mut [f32]| {
            if let Some(b) = biases.get(i) {
                for row in rows.chunks_mut(b.len().max(1)) {
                    row.iter_mut().zip(b.iter()).for_each(|(o, b)| *o += b);
                }
            }
        };
        let residual = match self.spec.epilogue {
            Epilogue::Residual if !self.residual_in_place => {
                Some(a.f32_in(kern, self.spec.arity() - 1)?)
            }
            _ => None,
        };
        let mut outs = (0..self.outputs())
            .map(|i| a.f32_out(kern, i))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(i) = (0..outs.len()).find(|&i| outs[i].len() != self.out_len(i)) {
            return Err(format!(
                "output {i} has {} values, not {}",
                outs[i].len(),
                self.out_len(i)
            )
            .into());
        }
        let chunk = self.chunk_rows();
        let (mut normed, mut gate, mut up) = (Vec::new(), Vec::new(), Vec::new());
        for r0 in (0..rows).step_by(chunk) {
            let m = chunk.min(rows - r0);
            let xc = &x[r0 * k..(r0 + m) * k];
            let xin: &[f32] = match &norm {
                Some((eps, w)) => {
                    normed.resize(m * k, 0.0);
                    let params = RmsNormParams { eps: *eps };
                    ops::rms_norm(xc, w, &mut normed[..m * k], m, k, &params)?;
                    &normed[..m * k]
                }
                None => xc,
            };
            let span = |i: usize| r0 * self.weights[i].1..(r0 + m) * self.weights[i].1;
            match self.spec.epilogue {
                Epilogue::None => {
                    let mut views: Vec<&mut [f32]> = outs
                        .iter_mut()
                        .enumerate()
                        .map(|(i, o)| &mut o[span(i)])
                        .collect();
                    self.matmuls(xin, m, &ws, &mut views)?;
                    for (i, v) in views.iter_mut().enumerate() {
                        add_bias(i, v);
                    }
                }
                Epilogue::Residual => {
                    // The same single addition `add` does (in either
                    // order: f32 addition commutes exactly).
                    let o = &mut outs[0][span(0)];
                    match &residual {
                        Some(r) => {
                            self.matmuls(xin, m, &ws, &mut [&mut *o])?;
                            add_bias(0, o);
                            o.iter_mut().zip(&r[span(0)]).for_each(|(o, r)| *o += r);
                        }
                        None => {
                            // `o` holds the residual: the product goes to
                            // scratch and is added into it.
                            let n = o.len();
                            gate.resize(n, 0.0);
                            self.matmuls(xin, m, &ws, &mut [&mut gate[..n]])?;
                            add_bias(0, &mut gate[..n]);
                            o.iter_mut().zip(&gate[..n]).for_each(|(o, p)| *o += p);
                        }
                    }
                }
                Epilogue::SwiGlu if self.packed.is_none() => {
                    let o = &mut outs[0][span(0)];
                    matmul_swiglu_in(pool::global(), xin, m, &ws[0], &ws[1], o)?;
                }
                Epilogue::SwiGlu => {
                    let n = self.weights[0].1;
                    gate.resize(m * n, 0.0);
                    up.resize(m * n, 0.0);
                    self.matmuls(xin, m, &ws, &mut [&mut gate[..m * n], &mut up[..m * n]])?;
                    ops::swiglu(&gate[..m * n], &up[..m * n], &mut outs[0][span(0)])?;
                }
            }
        }
        Ok(())
    }

    /// `outs[i] = x · W_iᵀ` for `m` rows: from the packs when there are
    /// some, else as one group.
    fn matmuls(
        &self,
        x: &[f32],
        m: usize,
        ws: &[Weights<'_>],
        outs: &mut [&mut [f32]],
    ) -> Result<(), exodus_kernels::KernelError> {
        match &self.packed {
            Some(packs) => {
                let level = cpu::active();
                for ((w, (tiling, packed)), out) in ws.iter().zip(packs.iter()).zip(outs.iter_mut())
                {
                    matmul_prepacked(pool::global(), level, tiling, x, m, w, packed, out)?;
                }
                Ok(())
            }
            None => {
                let refs: Vec<&Weights<'_>> = ws.iter().collect();
                matmul_group_in(pool::global(), x, m, &refs, outs)
            }
        }
    }
}
