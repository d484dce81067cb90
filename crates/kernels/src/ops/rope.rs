//! Rotary position embedding (RoPE), in place, in the two layouts models
//! use: GPT-J's interleaved pairs and GPT-NeoX's rotate-half.
//!
//! For pair `i` of a head (`0 <= i < rotary_dim / 2`) at position `p` the
//! angle is `p * theta^(-2i / rotary_dim)`; the pair `(a, b)` becomes
//! `(a cos - b sin, a sin + b cos)`. The cosines and sines are computed
//! once per row in f64 and shared by every head; only the rotation itself
//! is vectorized, so the SIMD paths differ from the scalar one by FMA
//! rounding only.

use exodus_numerics::cpu::{self, SimdLevel};

use super::check;
use super::dispatch::{path, Path};
use crate::error::Result;

/// Which elements of a head form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RopeStyle {
    /// GPT-J / GGUF `LLAMA` style: pairs `(2i, 2i + 1)`.
    #[default]
    Interleaved,
    /// GPT-NeoX / Hugging Face `rotate_half` style: pairs `(i, i + rotary_dim / 2)`.
    NeoX,
}

impl RopeStyle {
    /// The two elements of rotated pair `i` of a head whose first
    /// `rotary_dim` values are rotated.
    pub fn pair(self, rotary_dim: usize, i: usize) -> (usize, usize) {
        match self {
            RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            RopeStyle::NeoX => (i, i + rotary_dim / 2),
        }
    }
}

/// Options of [`rope`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    /// Pair layout.
    pub style: RopeStyle,
    /// Frequency base (10000 for Llama 2, 100000 for SmolLM2, 500000 for Llama 3).
    pub theta: f32,
    /// Leading dimensions of each head that are rotated (even, at most
    /// `head_dim`); the rest pass through. `None` rotates the whole head.
    pub rotary_dim: Option<usize>,
}

impl Default for RopeParams {
    fn default() -> Self {
        Self {
            style: RopeStyle::Interleaved,
            theta: 10000.0,
            rotary_dim: None,
        }
    }
}

/// Rotate `x` in place, on the active SIMD level.
///
/// Shapes: `x`: `[rows, n_heads, head_dim]`; `positions`: `[rows]` (the
/// absolute position of each row's token).
pub fn rope(
    x: &mut [f32],
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    params: &RopeParams,
) -> Result<()> {
    rope_with(cpu::active(), x, positions, n_heads, head_dim, params)
}

/// [`rope`] on a given SIMD level (an unsupported one runs the scalar path).
pub fn rope_with(
    level: SimdLevel,
    x: &mut [f32],
    positions: &[u32],
    n_heads: usize,
    head_dim: usize,
    params: &RopeParams,
) -> Result<()> {
    const K: &str = "rope";
    check::nonzero(K, "n_heads", n_heads)?;
    check::nonzero(K, "head_dim", head_dim)?;
    let rot = params.rotary_dim.unwrap_or(head_dim);
    if rot == 0 || !rot.is_multiple_of(2) || rot > head_dim {
        return Err(check::bad_shape(
            K,
            format!("rotary_dim {rot} must be even, positive and at most head_dim {head_dim}"),
        ));
    }
    if !(params.theta.is_finite() && params.theta > 0.0) {
        return Err(check::bad_shape(
            K,
            format!("theta {} must be positive", params.theta),
        ));
    }
    let row = check::product(K, &[n_heads, head_dim])?;
    check::len(K, "x", x.len(), check::product(K, &[positions.len(), row])?)?;

    let half = rot / 2;
    // freq[i] = theta^(-2i / rot), in f64 so the angle keeps its precision
    // at large positions.
    let freqs: Vec<f64> = (0..half)
        .map(|i| (params.theta as f64).powf(-2.0 * i as f64 / rot as f64))
        .collect();
    let mut cos = vec![0f32; half];
    let mut sin = vec![0f32; half];
    let p = path(level);
    for (x, &pos) in x.chunks_exact_mut(row).zip(positions) {
        for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(&freqs) {
            let (sa, ca) = (pos as f64 * f).sin_cos();
            *c = ca as f32;
            *s = sa as f32;
        }
        let table = RopeRow {
            style: params.style,
            head_dim,
            cos: &cos,
            sin: &sin,
        };
        match p {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => super::x86::rope_row(&table, x),
            #[cfg(target_arch = "aarch64")]
            Path::Neon => super::neon::rope_row(&table, x),
            Path::Scalar => rope_row_scalar(&table, x),
        }
    }
    Ok(())
}

/// The rotation of one row: its style, head size and per-pair cos/sin
/// (`rotary_dim / 2` each).
pub(crate) struct RopeRow<'a> {
    pub(crate) style: RopeStyle,
    pub(crate) head_dim: usize,
    pub(crate) cos: &'a [f32],
    pub(crate) sin: &'a [f32],
}

/// Rotate every head of one row (`[n_heads, head_dim]`).
pub(crate) fn rope_row_scalar(t: &RopeRow<'_>, x: &mut [f32]) {
    let rot = 2 * t.cos.len();
    for head in x.chunks_exact_mut(t.head_dim) {
        for (i, (&c, &s)) in t.cos.iter().zip(t.sin).enumerate() {
            let (ia, ib) = t.style.pair(rot, i);
            let (a, b) = (head[ia], head[ib]);
            head[ia] = a * c - b * s;
            head[ib] = a * s + b * c;
        }
    }
}
