//! `out = x · Wᵀ` against weights in any exodus-numerics format.
//!
//! # The one convention
//!
//! ```text
//! x   : f32, row-major [rows, k]   (rows = tokens, k = input features)
//! W   : [n, k] row-major, each row encoded in a weight format (Weights)
//! out : f32, row-major [rows, n]   out[r, j] = sum_i x[r, i] * W[j, i]
//! ```
//!
//! # Paths
//!
//! - [`Regime::Decode`] (few rows, memory-bound): W is streamed once; GGUF
//!   Q4_0 / Q4_1 / Q8_0 / Q4_K / Q5_K / Q6_K and MXFP4 use int8 dot
//!   products against x quantized to int8 blocks; f32 / f16 / bf16 / FP8 /
//!   MXFP8 decode W in registers and use f32 FMA; other formats dequantize
//!   each row first. Outputs are split over the pool.
//! - [`Regime::Prefill`] (many rows, compute-bound): packed, tiled GEMM with
//!   a 6x16 micro-kernel (AVX2+FMA, NEON; AVX-512 runs 12x32 over two A
//!   and two B slivers); quantized W is dequantized into the packed
//!   panels. Row blocks are split over the pool. On AVX-512 VNNI CPUs,
//!   Q4_0 / Q4_1 / Q8_0 / Q4_K / MXFP4 weights take an integer GEMM
//!   instead (`int8_prefill.rs`: W repacked per call, x quantized to int8
//!   blocks of 32, `vpdpbusd`); [`int8_x_block`] says which path a call
//!   takes.
//!
//! Kernels by level: `x86` (AVX2 for every format, `x86::avx512` where
//! AVX-512 pays: VNNI Q8_0 / Q4_0 / Q4_1 dots, E4M3 dots, the GEMM) and
//! `neon` (every row dot and the GEMM).
//!
//! Every path has a scalar twin, selected by [`SimdLevel::Scalar`] (or
//! `EXODUS_FORCE_SCALAR=1` through [`exodus_numerics::cpu::active`]), and
//! [`matmul_reference`] is the exact reference.
//!
//! # Error budget
//!
//! Float paths: differences from the reference are f32 rounding of a
//! k-term sum. Int8 paths: x is quantized per block of 32 (or 256) with
//! step `d = amax / 127`, so each x value moves by at most `d / 2` and an
//! output moves by at most `sum over blocks of (d_b / 2) * sum |W|` in the
//! block; on Gaussian data that is an RMS relative error around 0.5 %.
//! The tests assert both the per-output bound and a 1 % RMS budget.

mod decode;
mod decode_pack;
mod dot_scalar;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod int8_prefill;
#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
mod neon;
mod packed;
mod prefill;
mod quant_x;
mod reference;
mod scratch;
mod weights;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

use exodus_numerics::cpu::{self, SimdLevel};
use exodus_numerics::Format;

pub use decode_pack::DecodePack;
pub use packed::{matmul_prepacked, PackedWeights};
pub use reference::matmul_reference;
pub use weights::Weights;

use crate::error::{KernelError, Result};
use crate::pool::{self, ThreadPool};
use crate::tiling::{CacheSizes, Regime, Tiling};

/// The SIMD kernels a call runs: scalar, or AVX2 / AVX-512 / NEON with the
/// proof token.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Simd {
    /// Portable code.
    Scalar,
    /// AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    /// AVX-512 kernels where there are some, the AVX2 ones elsewhere.
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::avx512::Avx512),
    /// Advanced SIMD (aarch64).
    #[cfg(target_arch = "aarch64")]
    Neon(neon::Neon),
}

impl Simd {
    /// The kernels for `level` (the scalar ones if the CPU lacks it).
    pub(crate) fn new(level: SimdLevel) -> Simd {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = x86::avx512::Avx512::new(level) {
            return Simd::Avx512(t);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = x86::Avx2::new(level) {
            return Simd::Avx2(t);
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(t) = neon::Neon::new(level) {
            return Simd::Neon(t);
        }
        let _ = level;
        Simd::Scalar
    }

    /// The AVX2 token, at the AVX2 and AVX-512 levels.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn avx2(self) -> Option<x86::Avx2> {
        match self {
            Simd::Avx2(t) => Some(t),
            Simd::Avx512(t) => Some(t.avx2()),
            Simd::Scalar => None,
        }
    }
}

/// The block size in which [`matmul_with`] at `level` with `tiling`
/// quantizes x to int8 for the weights `w` (its error budget is then the
/// int8 one of the module docs), or `None` if that path multiplies in f32.
///
/// Decode: the GGUF Q4_0 / Q4_1 / Q8_0 and MXFP4 kernels (32) and Q4_K /
/// Q5_K / Q6_K (256), at every level. Prefill: Q4_0 / Q4_1 / Q8_0 / Q4_K /
/// MXFP4 at [`SimdLevel::Avx512`] (blocks of 32, VNNI integer GEMM);
/// everything else dequantizes W into an f32 GEMM.
pub fn int8_x_block(level: SimdLevel, tiling: &Tiling, w: &Weights) -> Option<usize> {
    match tiling.regime {
        Regime::Decode => decode::RowKernel::for_weights(w)
            .int8_x()
            .map(|(block, _)| block),
        Regime::Prefill => {
            #[cfg(target_arch = "x86_64")]
            if let (Simd::Avx512(_), Some(_)) = (Simd::new(level), int8_prefill::Int8Kind::of(w)) {
                return Some(int8_prefill::BLOCK);
            }
            let _ = level;
            None
        }
    }
}

/// Whether each row of `x` gets the same bits from a matmul against `w` at
/// `level` whatever the number of rows it runs with (a batch of one
/// sequence's decode token or of many sequences' tokens, a prefill chunk of
/// any size): true where the decode dots and the prefill GEMM share one
/// canonical order (Q4_0 / Q4_1 / Q8_0 at [`SimdLevel::Avx512`]). A serving
/// engine needs it for a request's tokens to be the same alone and in a
/// batch; elsewhere the two regimes differ in rounding (or, where prefill
/// multiplies in f32 and decode in int8, in the quantization of x).
pub fn row_results_independent_of_batch(level: SimdLevel, format: Format) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = Simd::new(level) {
        use exodus_numerics::gguf::GgufBlockType as G;
        return matches!(format, Format::Gguf(G::Q4_0 | G::Q4_1 | G::Q8_0));
    }
    let _ = (level, format);
    false
}

/// The checks every matmul entry point makes, and the empty cases: `Ok(false)`
/// when there is nothing left to compute (no rows or no outputs, or `k = 0`,
/// for which `out` is set to zeros).
pub(crate) fn preflight(
    tiling: &Tiling,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
) -> Result<bool> {
    check_shapes(x, rows, w, out)?;
    tiling.check(w.k_block())?;
    if rows == 0 || w.n() == 0 {
        return Ok(false);
    }
    if w.k() == 0 {
        out.fill(0.0);
        return Ok(false);
    }
    Ok(true)
}

/// Checks `x: [rows, k]` and `out: [rows, n]` against `w: [n, k]`.
pub(crate) fn check_shapes(x: &[f32], rows: usize, w: &Weights, out: &[f32]) -> Result<()> {
    for (what, dim, got) in [("x", w.k(), x.len()), ("out", w.n(), out.len())] {
        let expected = rows.checked_mul(dim).ok_or_else(|| KernelError::BadShape {
            kernel: "matmul",
            reason: format!("{what}: {rows} x {dim} overflows usize"),
        })?;
        if expected != got {
            return Err(KernelError::LengthMismatch {
                kernel: "matmul",
                what,
                expected,
                got,
            });
        }
    }
    Ok(())
}

/// The tiling [`matmul_in`] uses for `rows` rows of x against `w` on
/// `threads` threads ([`Tiling::choose`] with the detected cache sizes).
pub fn tiling_for(rows: usize, w: &Weights, threads: usize) -> Tiling {
    Tiling::choose(
        rows,
        w.n(),
        w.k(),
        w.k_block(),
        threads,
        &CacheSizes::detect(),
    )
}

/// Flops per round of [`fma_probe`] at `level`: 12 independent chains of
/// 8 lanes (AVX2, scalar) or 16 lanes (AVX-512), 2 flops per fused
/// multiply-add.
pub fn fma_probe_flops_per_round(level: SimdLevel) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = Simd::new(level) {
        return x86::avx512::FMA_PROBE_FLOPS_PER_ROUND;
    }
    let _ = level;
    12 * 8 * 2
}

/// Runs `rounds` rounds of independent fused multiply-adds on the calling
/// thread with the kernels of `level` (12 vector chains: the micro-kernel's
/// instruction mix without its loads) and returns a value that depends on
/// every one, so benchmarks can measure the FMA peak of the level the GEMM
/// runs on in the same run (`fma_probe_flops_per_round(level) * rounds`
/// flops).
pub fn fma_probe(level: SimdLevel, rounds: usize, seed: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match Simd::new(level) {
        Simd::Avx512(t) => return x86::avx512::fma_probe(t, rounds, seed),
        Simd::Avx2(t) => return x86::gemm::fma_probe(t, rounds, seed),
        Simd::Scalar => {}
    }
    let _ = level;
    let mut acc = [seed; 12 * 8];
    for _ in 0..rounds {
        for v in acc.iter_mut() {
            *v = *v * 0.999_99 + 1e-7;
        }
    }
    acc.iter().sum()
}

/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ` on the [global](pool::global)
/// pool, the active SIMD level and the chosen tiling.
pub fn matmul(x: &[f32], rows: usize, w: &Weights, out: &mut [f32]) -> Result<()> {
    matmul_in(pool::global(), x, rows, w, out)
}

/// [`matmul`] on an explicit pool.
pub fn matmul_in(
    pool: &ThreadPool,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
) -> Result<()> {
    let tiling = tiling_for(rows, w, pool.threads());
    matmul_with(pool, cpu::active(), &tiling, x, rows, w, out)
}

/// `outs[i][rows, n_i] = x[rows, k] · W_iᵀ` for several weights against
/// the same x (the q/k/v or gate/up projections of a layer), each output
/// the same bits [`matmul_in`] gives for its weight alone. When every
/// weight has one format and one `k` and [`matmul_in`] would run each in the
/// decode regime, they run as one job: x is quantized once and a single
/// parallel pass covers all their outputs (one fork/join instead of one per
/// weight). Otherwise each runs as [`matmul_in`] would.
///
/// Errors: those of [`matmul_in`] for any weight, and
/// [`KernelError::LengthMismatch`] when `outs` and `ws` differ in number.
pub fn matmul_group_in(
    pool: &ThreadPool,
    x: &[f32],
    rows: usize,
    ws: &[&Weights],
    outs: &mut [&mut [f32]],
) -> Result<()> {
    if ws.len() != outs.len() {
        return Err(KernelError::LengthMismatch {
            kernel: "matmul group",
            what: "outputs",
            expected: ws.len(),
            got: outs.len(),
        });
    }
    let level = cpu::active();
    let tilings: Vec<Tiling> = ws
        .iter()
        .map(|w| tiling_for(rows, w, pool.threads()))
        .collect();
    let groupable = ws.iter().zip(&tilings).all(|(w, t)| {
        t.regime == Regime::Decode
            && decode::RowKernel::for_weights(w) == decode::RowKernel::for_weights(ws[0])
            && w.k() == ws[0].k()
    });
    if !groupable || ws.len() < 2 {
        for ((w, t), out) in ws.iter().zip(&tilings).zip(outs.iter_mut()) {
            matmul_with(pool, level, t, x, rows, w, out)?;
        }
        return Ok(());
    }
    for ((w, t), out) in ws.iter().zip(&tilings).zip(outs.iter()) {
        // Shapes and tilings checked as each call alone would check them
        // (nothing to run: an empty x or W is refused or skipped here).
        check_shapes(x, rows, w, out)?;
        t.check(w.k_block())?;
    }
    if rows == 0 || ws[0].k() == 0 {
        outs.iter_mut().for_each(|o| o.fill(0.0));
        return Ok(());
    }
    decode::decode_group(pool, level, &tilings[0], x, rows, ws, outs)
}

/// `out[rows, n] = silu(x · W_gateᵀ) * (x · W_upᵀ)`: the gate and up
/// projections of a SwiGLU MLP with the activation as their epilogue, the
/// same bits as [`matmul_in`] for each weight followed by
/// [`crate::ops::swiglu`]. For one row in the decode regime it runs as one
/// job that never holds the gate and up vectors (each task applies the
/// activation to its own columns); otherwise it computes both into scratch
/// and applies the activation after.
///
/// Errors: those of [`matmul_in`] for either weight, and
/// [`KernelError::LengthMismatch`] when the weights differ in shape.
pub fn matmul_swiglu_in(
    pool: &ThreadPool,
    x: &[f32],
    rows: usize,
    gate: &Weights,
    up: &Weights,
    out: &mut [f32],
) -> Result<()> {
    if (gate.n(), gate.k()) != (up.n(), up.k()) {
        return Err(KernelError::LengthMismatch {
            kernel: "matmul swiglu",
            what: "up rows",
            expected: gate.n(),
            got: up.n(),
        });
    }
    let level = cpu::active();
    let tiling = tiling_for(rows, gate, pool.threads());
    let fused = rows == 1
        && tiling.regime == Regime::Decode
        && tiling_for(rows, up, pool.threads()).regime == Regime::Decode
        && decode::RowKernel::for_weights(gate) == decode::RowKernel::for_weights(up);
    if fused {
        check_shapes(x, rows, gate, out)?;
        tiling.check(gate.k_block())?;
        if gate.n() == 0 {
            return Ok(());
        }
        if gate.k() == 0 {
            // Both dots are 0 and silu(0) * 0 is 0.
            out.fill(0.0);
            return Ok(());
        }
        return decode::decode_swiglu(pool, level, &tiling, x, gate, up, out);
    }
    let mut g = vec![0f32; out.len()];
    let mut u = vec![0f32; out.len()];
    matmul_group_in(pool, x, rows, &[gate, up], &mut [&mut g, &mut u])?;
    crate::ops::swiglu(&g, &u, out)
}

/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ` with everything explicit: the
/// pool, the SIMD level (a level the CPU lacks runs the scalar code) and
/// the tiling (which also picks the regime).
///
/// Errors: [`KernelError::LengthMismatch`] if `x` is not `rows * k` or
/// `out` not `rows * n` long; [`KernelError::BadShape`] if the tiling does
/// not fit the kernels or the format ([`Tiling::check`]).
pub fn matmul_with(
    pool: &ThreadPool,
    level: SimdLevel,
    tiling: &Tiling,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
) -> Result<()> {
    if !preflight(tiling, x, rows, w, out)? {
        return Ok(());
    }
    match tiling.regime {
        Regime::Decode => decode::decode(pool, level, tiling, x, rows, w, out),
        Regime::Prefill => prefill::prefill(pool, level, tiling, x, rows, w, out),
    }
}
