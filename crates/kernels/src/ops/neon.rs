//! Advanced SIMD (NEON) kernels of the ops (aarch64): the arithmetic of
//! the AVX2 kernels in `x86`, four f32 lanes at a time.
//!
//! Every aarch64 CPU has NEON; the kernels are still compiled with
//! `#[target_feature(enable = "neon")]` and entered only when
//! [`SimdLevel::Neon`](exodus_numerics::cpu::SimdLevel::Neon) is selected
//! (the dispatchers check it through `ops::dispatch::path`). Inside, every
//! `unsafe` block is a call into a `target_feature` function, sound because
//! of that check; memory is touched only through the bounds-checked
//! [`vmath::load`] / [`vmath::store`]. Tails shorter than a vector run the
//! scalar formula (the erf GELU pads its tail to a vector instead, so every
//! element sees the same approximation).

pub(crate) mod vmath;

use std::arch::aarch64::*;

use vmath::{bits, exp, hmax, hsum, load, max_num, store, LANES};

use super::elementwise::Binary;
use super::rope::{RopeRow, RopeStyle};
use super::select::{above, TopK};

/// Split `n` into the part handled by whole vectors and the tail.
#[inline]
fn split(n: usize) -> usize {
    n - n % LANES
}

/// The scalar twin of [`max_num`]: `v` if `v > m`, else `m` (a NaN `v` is
/// skipped).
#[inline]
fn max_num_1(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

macro_rules! neon_entry {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $inner:ident) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: callers reach this only once `SimdLevel::Neon` was
            // selected and found supported (see the module doc); every
            // aarch64 CPU has NEON.
            unsafe { $inner($($arg),*) }
        }
    };
}

neon_entry!(
    /// One row of RMS norm.
    fn rms_norm_row(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) => rms_norm_row_neon
);

#[target_feature(enable = "neon")]
fn rms_norm_row_neon(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) {
    let n = x.len();
    let main = split(n);
    let mut acc = vdupq_n_f32(0.0);
    for c in x[..main].chunks_exact(LANES) {
        let v = load(c);
        acc = vfmaq_f32(acc, v, v);
    }
    let ss = hsum(acc) + x[main..].iter().map(|v| v * v).sum::<f32>();
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

neon_entry!(
    /// One row of layer norm.
    fn layer_norm_row(x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32], eps: f32) => layer_norm_row_neon
);

#[target_feature(enable = "neon")]
fn layer_norm_row_neon(x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32], eps: f32) {
    let n = x.len();
    let main = split(n);
    let mut acc = vdupq_n_f32(0.0);
    for c in x[..main].chunks_exact(LANES) {
        acc = vaddq_f32(acc, load(c));
    }
    let mean = (hsum(acc) + x[main..].iter().sum::<f32>()) / n as f32;
    let vmean = vdupq_n_f32(mean);
    let mut acc = vdupq_n_f32(0.0);
    for c in x[..main].chunks_exact(LANES) {
        let d = vsubq_f32(load(c), vmean);
        acc = vfmaq_f32(acc, d, d);
    }
    let var = (hsum(acc)
        + x[main..]
            .iter()
            .map(|&v| (v - mean) * (v - mean))
            .sum::<f32>())
        / n as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for (i, (o, c)) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
        .enumerate()
    {
        let at = i * LANES;
        let y = vmulq_f32(vmulq_n_f32(vsubq_f32(load(c), vmean), inv), load(&w[at..]));
        let y = match b {
            Some(b) => vaddq_f32(y, load(&b[at..])),
            None => y,
        };
        store(o, y);
    }
    for i in main..n {
        let y = (x[i] - mean) * inv * w[i];
        out[i] = b.map_or(y, |b| y + b[i]);
    }
}

neon_entry!(
    /// Softmax of one row, in place.
    fn softmax_row(row: &mut [f32]) => softmax_row_neon
);

#[target_feature(enable = "neon")]
fn softmax_row_neon(row: &mut [f32]) {
    let n = row.len();
    let main = split(n);
    // `max_num` skips NaN lanes (a NaN still poisons the sum below, as in
    // the scalar path).
    let mut acc = vdupq_n_f32(f32::NEG_INFINITY);
    for c in row[..main].chunks_exact(LANES) {
        acc = max_num(load(c), acc);
    }
    let max = row[main..].iter().fold(hmax(acc), |m, &v| max_num_1(m, v));
    if max == f32::NEG_INFINITY {
        super::softmax::fill_masked(row);
        return;
    }
    let vmax = vdupq_n_f32(max);
    let mut sum = vdupq_n_f32(0.0);
    for c in row[..main].chunks_exact_mut(LANES) {
        let e = exp(vsubq_f32(load(c), vmax));
        sum = vaddq_f32(sum, e);
        store(c, e);
    }
    let mut total = hsum(sum);
    for v in &mut row[main..] {
        *v = (*v - max).exp();
        total += *v;
    }
    let inv = 1.0 / total;
    for c in row[..main].chunks_exact_mut(LANES) {
        store(c, vmulq_n_f32(load(c), inv));
    }
    row[main..].iter_mut().for_each(|v| *v *= inv);
}

/// SiLU lane-wise: `x / (1 + e^(-x))`.
#[inline]
#[target_feature(enable = "neon")]
fn silu_v(x: float32x4_t) -> float32x4_t {
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp(vnegq_f32(x))))
}

fn silu_1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Apply a lane-wise function to `x` into `out`, the tail through `scalar`.
#[inline]
#[target_feature(enable = "neon")]
fn map(
    x: &[f32],
    out: &mut [f32],
    vector: impl Fn(float32x4_t) -> float32x4_t,
    scalar: impl Fn(f32) -> f32,
) {
    let main = split(x.len());
    for (o, c) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
    {
        store(o, vector(load(c)));
    }
    for (o, &v) in out[main..].iter_mut().zip(&x[main..]) {
        *o = scalar(v);
    }
}

neon_entry!(
    /// SiLU.
    fn silu(x: &[f32], out: &mut [f32]) => silu_neon
);

#[target_feature(enable = "neon")]
fn silu_neon(x: &[f32], out: &mut [f32]) {
    map(x, out, |v| silu_v(v), silu_1);
}

neon_entry!(
    /// GELU, tanh approximation, written as `x * sigmoid(2 y)`
    /// (`0.5 (1 + tanh y) = sigmoid(2 y)`), which has no cancellation.
    fn gelu_tanh(x: &[f32], out: &mut [f32]) => gelu_tanh_neon
);

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

#[target_feature(enable = "neon")]
fn gelu_tanh_neon(x: &[f32], out: &mut [f32]) {
    #[target_feature(enable = "neon")]
    fn v(x: float32x4_t) -> float32x4_t {
        // -2y = x * (-2k - 2k * 0.044715 x²)
        let x2 = vmulq_f32(x, x);
        let a = vdupq_n_f32(-2.0 * SQRT_2_OVER_PI * 0.044715);
        let m2y = vmulq_f32(x, vfmaq_f32(vdupq_n_f32(-2.0 * SQRT_2_OVER_PI), a, x2));
        vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp(m2y)))
    }
    let s = |x: f32| {
        let y = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
        x / (1.0 + (-2.0 * y).exp())
    };
    map(x, out, |x| v(x), s);
}

neon_entry!(
    /// GELU, exact (erf) form.
    fn gelu_erf(x: &[f32], out: &mut [f32]) => gelu_erf_neon
);

#[target_feature(enable = "neon")]
fn gelu_erf_neon(x: &[f32], out: &mut [f32]) {
    #[target_feature(enable = "neon")]
    fn v(x: float32x4_t) -> float32x4_t {
        let e = vmath::erf(vmulq_n_f32(x, std::f32::consts::FRAC_1_SQRT_2));
        let half_x = vmulq_n_f32(x, 0.5);
        vfmaq_f32(half_x, half_x, e)
    }
    let main = split(x.len());
    map(&x[..main], &mut out[..main], |x| v(x), |x| x);
    // The tail through the vector formula too, padded, so every element
    // sees the same approximation.
    let tail = x.len() - main;
    if tail > 0 {
        let mut buf = [0f32; LANES];
        buf[..tail].copy_from_slice(&x[main..]);
        let y = v(load(&buf));
        store(&mut buf, y);
        out[main..].copy_from_slice(&buf[..tail]);
    }
}

neon_entry!(
    /// `silu(gate) * up`.
    fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) => swiglu_neon
);

#[target_feature(enable = "neon")]
fn swiglu_neon(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let main = split(gate.len());
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

neon_entry!(
    /// `a + b` or `a * b`.
    fn binary(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) => binary_neon
);

#[target_feature(enable = "neon")]
fn binary_neon(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) {
    let main = split(a.len());
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
                Binary::Sub => vsubq_f32(x, y),
                Binary::Mul => vmulq_f32(x, y),
                Binary::Div => vdivq_f32(x, y),
            },
        );
    }
    for ((o, &x), &y) in out[main..].iter_mut().zip(&a[main..]).zip(&b[main..]) {
        *o = op.apply(x, y);
    }
}

neon_entry!(
    /// `x * s`.
    fn scale(x: &[f32], s: f32, out: &mut [f32]) => scale_neon
);

#[target_feature(enable = "neon")]
fn scale_neon(x: &[f32], s: f32, out: &mut [f32]) {
    map(x, out, |v| vmulq_n_f32(v, s), |v| v * s);
}

neon_entry!(
    /// Rotate every head of one row.
    fn rope_row(t: &RopeRow<'_>, x: &mut [f32]) => rope_row_neon
);

#[target_feature(enable = "neon")]
fn rope_row_neon(t: &RopeRow<'_>, x: &mut [f32]) {
    let half = t.cos.len();
    match t.style {
        RopeStyle::Interleaved => {
            // Lanes hold (a0, b0, a1, b1): out = x * (c, c) + swap(x) * (-s, s).
            let rot = 2 * half;
            let main = split(rot);
            let mut cc = vec![0f32; main];
            let mut ss = vec![0f32; main];
            for i in 0..main / 2 {
                cc[2 * i] = t.cos[i];
                cc[2 * i + 1] = t.cos[i];
                ss[2 * i] = -t.sin[i];
                ss[2 * i + 1] = t.sin[i];
            }
            for head in x.chunks_exact_mut(t.head_dim) {
                for ((h, c), s) in head[..main]
                    .chunks_exact_mut(LANES)
                    .zip(cc.chunks_exact(LANES))
                    .zip(ss.chunks_exact(LANES))
                {
                    let v = load(h);
                    // (b0, a0, b1, a1): the two elements of each 64-bit half swapped.
                    let swapped = vrev64q_f32(v);
                    store(h, vfmaq_f32(vmulq_f32(swapped, load(s)), v, load(c)));
                }
                for i in main / 2..half {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    let (c, s) = (t.cos[i], t.sin[i]);
                    head[2 * i] = a * c - b * s;
                    head[2 * i + 1] = a * s + b * c;
                }
            }
        }
        RopeStyle::NeoX => {
            let main = split(half);
            for head in x.chunks_exact_mut(t.head_dim) {
                let (lo, hi) = head.split_at_mut(half);
                for i in (0..main).step_by(LANES) {
                    let (a, b) = (load(&lo[i..]), load(&hi[i..]));
                    let (c, s) = (load(&t.cos[i..]), load(&t.sin[i..]));
                    // a c - b s (FMA on `a c`, as AVX2's `fmsub`), a s + b c.
                    let bs = vmulq_f32(b, s);
                    store(&mut lo[i..], vnegq_f32(vfmsq_f32(bs, a, c)));
                    store(&mut hi[i..], vfmaq_f32(vmulq_f32(b, c), a, s));
                }
                for i in main..half {
                    let (a, b) = (lo[i], hi[i]);
                    let (c, s) = (t.cos[i], t.sin[i]);
                    lo[i] = a * c - b * s;
                    hi[i] = a * s + b * c;
                }
            }
        }
    }
}

neon_entry!(
    /// Index of the largest value of a row (NaN lowest, lower index on ties).
    fn argmax_row(row: &[f32]) -> usize => argmax_row_neon
);

#[target_feature(enable = "neon")]
fn argmax_row_neon(row: &[f32]) -> usize {
    let main = split(row.len());
    // Pass 1: the largest non-NaN value (`max_num` skips a NaN lane).
    let mut acc = vdupq_n_f32(f32::NEG_INFINITY);
    for c in row[..main].chunks_exact(LANES) {
        acc = max_num(load(c), acc);
    }
    let max = row[main..].iter().fold(hmax(acc), |m, &v| max_num_1(m, v));
    // Pass 2: its first occurrence. None means the row is all NaN: index 0.
    let target = vdupq_n_f32(max);
    for (i, c) in row[..main].chunks_exact(LANES).enumerate() {
        let mask = bits(vceqq_f32(load(c), target));
        if mask != 0 {
            return i * LANES + mask.trailing_zeros() as usize;
        }
    }
    row[main..]
        .iter()
        .position(|&v| v == max)
        .map_or(0, |p| main + p)
}

neon_entry!(
    /// Offer a whole row to `best`, skipping vectors with nothing above the
    /// current threshold.
    fn top_k_row(row: &[f32], best: &mut TopK) => top_k_row_neon
);

#[target_feature(enable = "neon")]
fn top_k_row_neon(row: &[f32], best: &mut TopK) {
    let main = split(row.len());
    for (i, c) in row[..main].chunks_exact(LANES).enumerate() {
        let first = i * LANES;
        match best.threshold() {
            // Only a value strictly above a numeric threshold gets in; NaN
            // lanes compare false, as they should.
            Some(t) if !t.is_nan() => {
                let mut mask = bits(vcgtq_f32(load(c), vdupq_n_f32(t)));
                while mask != 0 {
                    let lane = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    best.push(c[lane], (first + lane) as u32);
                }
            }
            _ => best.extend(c, first),
        }
    }
    best.extend(&row[main..], main);
    debug_assert!(best.threshold().is_none_or(|t| !above(f32::NAN, t)));
}

#[cfg(test)]
mod tests {
    //! Edge cases of the NEON kernels against the scalar path: NaN (quiet
    //! and signalling) in argmax / top-k / softmax, in the vector part and
    //! in the tail; ragged lengths that are not a multiple of 4; rope with
    //! odd positions and rotary dims whose pair count is odd.

    use exodus_numerics::cpu::SimdLevel::{Neon, Scalar};
    use exodus_numerics::sample::SplitMix64;

    use crate::ops::{self, GeluApprox, LayerNormParams, RopeParams, RopeStyle};

    /// A signalling NaN (quiet bit clear).
    const SNAN: f32 = f32::from_bits(0x7f80_0001);

    fn normal(rng: &mut SplitMix64, n: usize, sigma: f64) -> Vec<f32> {
        (0..n).map(|_| (rng.normal() * sigma) as f32).collect()
    }

    /// `|got - want| <= tol (1 + |want|)`, NaN only matching NaN.
    fn assert_near(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    /// Rows of every length 1..=13 with NaN, -inf and ties placed in the
    /// vector part, the tail, or both.
    fn special_rows() -> Vec<Vec<f32>> {
        let mut rows = Vec::new();
        for n in 1..=13usize {
            let base: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            rows.push(base.clone());
            for at in 0..n {
                for special in [f32::NAN, SNAN, f32::NEG_INFINITY, f32::INFINITY, 2.0] {
                    let mut r = base.clone();
                    r[at] = special;
                    rows.push(r);
                }
            }
            rows.push(vec![f32::NAN; n]);
            rows.push(vec![SNAN; n]);
            rows.push(vec![f32::NEG_INFINITY; n]);
            let mut mixed = vec![f32::NEG_INFINITY; n];
            mixed[0] = f32::NAN;
            rows.push(mixed);
            let mut zeros = vec![0.0f32; n];
            zeros[n / 2] = -0.0;
            rows.push(zeros);
        }
        rows
    }

    #[test]
    fn argmax_matches_scalar_with_nan_and_ties() {
        for row in special_rows() {
            let (mut a, mut b) = ([0u32], [0u32]);
            ops::argmax_with(Neon, &row, 1, row.len(), &mut a).unwrap();
            ops::argmax_with(Scalar, &row, 1, row.len(), &mut b).unwrap();
            assert_eq!(a, b, "{row:?}");
        }
    }

    #[test]
    fn top_k_matches_scalar_with_nan_and_ties() {
        for row in special_rows() {
            for k in 1..=row.len() {
                let (mut ia, mut va) = (vec![0u32; k], vec![0f32; k]);
                let (mut ib, mut vb) = (vec![0u32; k], vec![0f32; k]);
                ops::top_k_with(Neon, &row, 1, row.len(), k, &mut ia, &mut va).unwrap();
                ops::top_k_with(Scalar, &row, 1, row.len(), k, &mut ib, &mut vb).unwrap();
                assert_eq!(ia, ib, "k {k} {row:?}");
                for (a, b) in va.iter().zip(&vb) {
                    assert!(a.to_bits() == b.to_bits(), "k {k} {row:?}: {va:?} {vb:?}");
                }
            }
        }
    }

    #[test]
    fn softmax_matches_scalar_with_nan_and_masks() {
        for row in special_rows() {
            let (mut a, mut b) = (row.clone(), row.clone());
            ops::softmax_with(Neon, &mut a, 1, row.len()).unwrap();
            ops::softmax_with(Scalar, &mut b, 1, row.len()).unwrap();
            assert_near(&a, &b, 1e-6, &format!("softmax {row:?}"));
        }
    }

    #[test]
    fn ragged_lengths_match_scalar() {
        let mut rng = SplitMix64::new(41);
        for n in 1..=19 {
            let x = normal(&mut rng, n, 3.0);
            let w = normal(&mut rng, n, 1.0);
            let b = normal(&mut rng, n, 1.0);
            let p = LayerNormParams { eps: 1e-5 };
            for bias in [None, Some(&b[..])] {
                let (mut a, mut s) = (vec![0f32; n], vec![0f32; n]);
                ops::layer_norm_with(Neon, &x, &w, bias, &mut a, 1, n, &p).unwrap();
                ops::layer_norm_with(Scalar, &x, &w, bias, &mut s, 1, n, &p).unwrap();
                assert_near(&a, &s, 2e-6, &format!("layer_norm n {n}"));
            }
            for approx in [GeluApprox::Tanh, GeluApprox::Erf] {
                let (mut a, mut s) = (vec![0f32; n], vec![0f32; n]);
                ops::gelu_with(Neon, &x, &mut a, approx).unwrap();
                ops::gelu_with(Scalar, &x, &mut s, approx).unwrap();
                assert_near(&a, &s, 1e-6, &format!("gelu {approx:?} n {n}"));
            }
            let (mut a, mut s) = (x.clone(), x.clone());
            ops::softmax_with(Neon, &mut a, 1, n).unwrap();
            ops::softmax_with(Scalar, &mut s, 1, n).unwrap();
            assert_near(&a, &s, 1e-6, &format!("softmax n {n}"));
        }
    }

    #[test]
    fn erf_gelu_tail_sees_the_vector_formula() {
        // The padded tail gives each element exactly what it gets inside a
        // whole vector.
        let mut rng = SplitMix64::new(42);
        let x = normal(&mut rng, 16, 2.0);
        let mut whole = vec![0f32; 16];
        ops::gelu_with(Neon, &x, &mut whole, GeluApprox::Erf).unwrap();
        for n in 1..16 {
            let mut part = vec![0f32; n];
            ops::gelu_with(Neon, &x[..n], &mut part, GeluApprox::Erf).unwrap();
            assert_eq!(part[..], whole[..n], "n {n}");
        }
        let mut nan = [0f32; 3];
        ops::gelu_with(Neon, &[f32::NAN, 1.0, f32::NAN], &mut nan, GeluApprox::Erf).unwrap();
        assert!(nan[0].is_nan() && nan[2].is_nan() && !nan[1].is_nan());
    }

    #[test]
    fn rope_matches_scalar_at_odd_positions_and_rotary_dims() {
        let mut rng = SplitMix64::new(43);
        // (head_dim, rotary_dim): pair counts 1, 2, 3, 5, 8 and partial rotation.
        for (head_dim, rot) in [(2, 2), (4, 4), (6, 6), (10, 10), (16, 16), (12, 6), (9, 4)] {
            for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
                let p = RopeParams {
                    style,
                    theta: 10000.0,
                    rotary_dim: Some(rot),
                };
                let positions = [1u32, 3, 7, 33, 4095, 100_001];
                let n_heads = 3;
                let x = normal(&mut rng, positions.len() * n_heads * head_dim, 1.0);
                let (mut a, mut s) = (x.clone(), x.clone());
                ops::rope_with(Neon, &mut a, &positions, n_heads, head_dim, &p).unwrap();
                ops::rope_with(Scalar, &mut s, &positions, n_heads, head_dim, &p).unwrap();
                assert_near(&a, &s, 4e-7, &format!("rope {style:?} {head_dim}/{rot}"));
                // Dimensions past the rotary ones pass through untouched.
                for (ha, hx) in a.chunks(head_dim).zip(x.chunks(head_dim)) {
                    assert_eq!(ha[rot..], hx[rot..]);
                }
            }
        }
    }
}
