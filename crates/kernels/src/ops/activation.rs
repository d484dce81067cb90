//! Activations on f32 slices: SiLU, GELU (tanh approximation or exact
//! erf) and SwiGLU (`silu(gate) * up`).
//!
//! The scalar references evaluate in f64 and round once (erf by its Taylor
//! series and continued fraction, see `math.rs`); the SIMD paths use f32
//! polynomial `exp` and Eigen's rational `erf`: SiLU, SwiGLU and the tanh
//! GELU within ~1e-6 relative; the erf GELU within `1.5e-7 (1 + |x|)`
//! absolute (for x < -2, `1 + erf` cancels in f32, so the tiny outputs
//! there keep only that absolute accuracy).

use exodus_numerics::cpu::{self, SimdLevel};

use super::check;
use super::dispatch::{path, Path};
use super::math::erf_f64;
use crate::error::Result;

/// Which GELU formula [`gelu`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeluApprox {
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))`: GPT-2's `gelu_new`,
    /// PyTorch's `approximate="tanh"`.
    #[default]
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt(2)))`: the exact definition, PyTorch's default.
    Erf,
}

/// `out = x * sigmoid(x)` elementwise, on the active SIMD level.
///
/// Shapes: `x`, `out`: `[n]`.
pub fn silu(x: &[f32], out: &mut [f32]) -> Result<()> {
    silu_with(cpu::active(), x, out)
}

/// [`silu`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn silu_with(level: SimdLevel, x: &[f32], out: &mut [f32]) -> Result<()> {
    check::len("silu", "out", out.len(), x.len())?;
    match path(level) {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => super::x86::silu(x, out),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => super::neon::silu(x, out),
        Path::Scalar => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = silu_scalar(v);
            }
        }
    }
    Ok(())
}

/// The scalar reference of SiLU, evaluated in f64.
fn silu_scalar(v: f32) -> f32 {
    let v = v as f64;
    (v / (1.0 + (-v).exp())) as f32
}

/// GELU elementwise with the formula `approx`, on the active SIMD level.
///
/// Shapes: `x`, `out`: `[n]`.
pub fn gelu(x: &[f32], out: &mut [f32], approx: GeluApprox) -> Result<()> {
    gelu_with(cpu::active(), x, out, approx)
}

/// [`gelu`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn gelu_with(level: SimdLevel, x: &[f32], out: &mut [f32], approx: GeluApprox) -> Result<()> {
    check::len("gelu", "out", out.len(), x.len())?;
    match (path(level), approx) {
        #[cfg(target_arch = "x86_64")]
        (Path::Avx2, GeluApprox::Tanh) => super::x86::gelu_tanh(x, out),
        #[cfg(target_arch = "x86_64")]
        (Path::Avx2, GeluApprox::Erf) => super::x86::gelu_erf(x, out),
        #[cfg(target_arch = "aarch64")]
        (Path::Neon, GeluApprox::Tanh) => super::neon::gelu_tanh(x, out),
        #[cfg(target_arch = "aarch64")]
        (Path::Neon, GeluApprox::Erf) => super::neon::gelu_erf(x, out),
        (_, GeluApprox::Tanh) => {
            for (o, &v) in out.iter_mut().zip(x) {
                let v = v as f64;
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
                // 0.5 (1 + tanh y) = sigmoid(2y), without the cancellation
                // of `1 + tanh y` for negative x.
                *o = (v / (1.0 + (-2.0 * inner).exp())) as f32;
            }
        }
        (_, GeluApprox::Erf) => {
            for (o, &v) in out.iter_mut().zip(x) {
                let v = v as f64;
                *o = (0.5 * v * (1.0 + erf_f64(v * std::f64::consts::FRAC_1_SQRT_2))) as f32;
            }
        }
    }
    Ok(())
}

/// `out = silu(gate) * up` elementwise (the gated MLP of Llama-family
/// models), on the active SIMD level.
///
/// Shapes: `gate`, `up`, `out`: `[n]`.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<()> {
    swiglu_with(cpu::active(), gate, up, out)
}

/// [`swiglu`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn swiglu_with(level: SimdLevel, gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<()> {
    check::len("swiglu", "up", up.len(), gate.len())?;
    check::len("swiglu", "out", out.len(), gate.len())?;
    match path(level) {
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => super::x86::swiglu(gate, up, out),
        #[cfg(target_arch = "aarch64")]
        Path::Neon => super::neon::swiglu(gate, up, out),
        Path::Scalar => {
            for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                *o = silu_scalar(g) * u;
            }
        }
    }
    Ok(())
}
