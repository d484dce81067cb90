//! Advanced SIMD (NEON) kernels of the simplest ops (aarch64): RMS norm,
//! SiLU, SwiGLU and elementwise arithmetic. The other ops run their scalar
//! path on aarch64.
//!
//! Every aarch64 CPU has NEON; the functions are still compiled with
//! `#[target_feature(enable = "neon")]` and entered only when
//! [`SimdLevel::Neon`](exodus_numerics::cpu::SimdLevel::Neon) is selected.
//! Memory is touched only through the bounds-checked `load`/`store`
//! helpers. The `exp` is the same Cephes polynomial as the AVX2 one.
#![allow(clippy::excessive_precision)]

use std::arch::aarch64::*;

use super::elementwise::Binary;

const LANES: usize = 4;

#[inline]
#[target_feature(enable = "neon")]
fn load(s: &[f32]) -> float32x4_t {
    let s = &s[..LANES];
    // SAFETY: `s` holds 4 f32s.
    unsafe { vld1q_f32(s.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn store(d: &mut [f32], v: float32x4_t) {
    let d = &mut d[..LANES];
    // SAFETY: `d` holds 4 f32s.
    unsafe { vst1q_f32(d.as_mut_ptr(), v) }
}

/// `e^x` lane-wise, as `ops::x86::vmath::exp`.
#[inline]
#[target_feature(enable = "neon")]
fn exp(x: float32x4_t) -> float32x4_t {
    let lo = vdupq_n_f32(-87.336_544_750_553_1);
    let xc = vminq_f32(vmaxq_f32(x, lo), vdupq_n_f32(88.0));
    let n = vrndnq_f32(vmulq_n_f32(xc, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(xc, n, vdupq_n_f32(0.693_359_375));
    let r = vfmsq_f32(r, n, vdupq_n_f32(-2.121_944_40e-4));
    let mut p = vdupq_n_f32(1.987_569_150_0e-4);
    for c in [
        1.398_199_950_7e-3,
        8.333_451_907_3e-3,
        4.166_579_589_4e-2,
        1.666_666_545_9e-1,
        5.000_000_120_1e-1,
    ] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    let y = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0));
    let pow2 = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
    let y = vmulq_f32(y, vreinterpretq_f32_s32(pow2));
    let under = vcltq_f32(x, lo);
    let over = vcgtq_f32(x, vdupq_n_f32(88.722_839_052_068_35));
    let y = vbslq_f32(under, vdupq_n_f32(0.0), y);
    vbslq_f32(over, vdupq_n_f32(f32::INFINITY), y)
}

#[inline]
#[target_feature(enable = "neon")]
fn silu_v(x: float32x4_t) -> float32x4_t {
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp(vnegq_f32(x))))
}

fn silu_1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// One row of RMS norm.
pub(crate) fn rms_norm_row(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) {
    // SAFETY: NEON was selected at run time (always present on aarch64).
    unsafe { rms_norm_row_neon(x, w, out, eps) }
}

#[target_feature(enable = "neon")]
fn rms_norm_row_neon(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) {
    let n = x.len();
    let main = n - n % LANES;
    let mut acc = vdupq_n_f32(0.0);
    for c in x[..main].chunks_exact(LANES) {
        let v = load(c);
        acc = vfmaq_f32(acc, v, v);
    }
    let ss = vaddvq_f32(acc) + x[main..].iter().map(|v| v * v).sum::<f32>();
    let inv = 1.0 / (ss / n as f32 + eps).sqrt();
    for ((o, c), w) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
        .zip(w[..main].chunks_exact(LANES))
    {
        store(o, vmulq_f32(vmulq_n_f32(load(c), inv), load(w)));
    }
    for ((o, &v), &w) in out[main..].iter_mut().zip(&x[main..]).zip(&w[main..]) {
        *o = v * inv * w;
    }
}

/// SiLU.
pub(crate) fn silu(x: &[f32], out: &mut [f32]) {
    // SAFETY: NEON was selected at run time (always present on aarch64).
    unsafe { silu_neon(x, out) }
}

#[target_feature(enable = "neon")]
fn silu_neon(x: &[f32], out: &mut [f32]) {
    let main = x.len() - x.len() % LANES;
    for (o, c) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
    {
        store(o, silu_v(load(c)));
    }
    for (o, &v) in out[main..].iter_mut().zip(&x[main..]) {
        *o = silu_1(v);
    }
}

/// `silu(gate) * up`.
pub(crate) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    // SAFETY: NEON was selected at run time (always present on aarch64).
    unsafe { swiglu_neon(gate, up, out) }
}

#[target_feature(enable = "neon")]
fn swiglu_neon(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let main = gate.len() - gate.len() % LANES;
    for ((o, g), u) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(gate[..main].chunks_exact(LANES))
        .zip(up[..main].chunks_exact(LANES))
    {
        store(o, vmulq_f32(silu_v(load(g)), load(u)));
    }
    for ((o, &g), &u) in out[main..].iter_mut().zip(&gate[main..]).zip(&up[main..]) {
        *o = silu_1(g) * u;
    }
}

/// `a + b` or `a * b`.
pub(crate) fn binary(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) {
    // SAFETY: NEON was selected at run time (always present on aarch64).
    unsafe { binary_neon(op, a, b, out) }
}

#[target_feature(enable = "neon")]
fn binary_neon(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) {
    let main = a.len() - a.len() % LANES;
    for ((o, x), y) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(a[..main].chunks_exact(LANES))
        .zip(b[..main].chunks_exact(LANES))
    {
        let (x, y) = (load(x), load(y));
        store(
            o,
            match op {
                Binary::Add => vaddq_f32(x, y),
                Binary::Mul => vmulq_f32(x, y),
            },
        );
    }
    for ((o, &x), &y) in out[main..].iter_mut().zip(&a[main..]).zip(&b[main..]) {
        *o = match op {
            Binary::Add => x + y,
            Binary::Mul => x * y,
        };
    }
}

/// `x * s`.
pub(crate) fn scale(x: &[f32], s: f32, out: &mut [f32]) {
    // SAFETY: NEON was selected at run time (always present on aarch64).
    unsafe { scale_neon(x, s, out) }
}

#[target_feature(enable = "neon")]
fn scale_neon(x: &[f32], s: f32, out: &mut [f32]) {
    let main = x.len() - x.len() % LANES;
    for (o, c) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
    {
        store(o, vmulq_n_f32(load(c), s));
    }
    for (o, &v) in out[main..].iter_mut().zip(&x[main..]) {
        *o = v * s;
    }
}
