//! AVX2 + FMA kernels of the ops (x86_64).
//!
//! Each `pub(crate)` function here is safe to call only after
//! [`SimdLevel::Avx2`](exodus_numerics::cpu::SimdLevel::Avx2) was found
//! supported (the dispatchers check it through `ops::dispatch::path`).
//! Inside, every `unsafe` block is a call into a `target_feature` function,
//! sound because of that check; memory is touched only through the
//! bounds-checked [`vmath::load`] / [`vmath::store`]. Tails shorter than a
//! vector run the scalar formula.

pub(crate) mod vmath;

use std::arch::x86_64::*;

use vmath::{exp, hmax, hsum, load, store, LANES};

use super::elementwise::Binary;
use super::rope::{RopeRow, RopeStyle};
use super::select::{above, TopK};

/// Split `n` into the part handled by whole vectors and the tail.
#[inline]
fn split(n: usize) -> usize {
    n - n % LANES
}

macro_rules! avx2_entry {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $inner:ident) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: callers reach this only after the run-time check for
            // AVX2/FMA/F16C (see the module doc).
            unsafe { $inner($($arg),*) }
        }
    };
}

avx2_entry!(
    /// One row of RMS norm.
    fn rms_norm_row(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) => rms_norm_row_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn rms_norm_row_avx2(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) {
    let n = x.len();
    let main = split(n);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut chunks = x[..main].chunks_exact(LANES);
    for (i, c) in chunks.by_ref().enumerate() {
        let v = load(c);
        acc[i % 4] = _mm256_fmadd_ps(v, v, acc[i % 4]);
    }
    let acc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut ss = hsum(acc);
    for &v in &x[main..] {
        ss += v * v;
    }
    let inv = 1.0 / (ss / n as f32 + eps).sqrt();
    let vinv = _mm256_set1_ps(inv);
    for ((o, c), w) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
        .zip(w[..main].chunks_exact(LANES))
    {
        store(o, _mm256_mul_ps(_mm256_mul_ps(load(c), vinv), load(w)));
    }
    for ((o, &v), &w) in out[main..].iter_mut().zip(&x[main..]).zip(&w[main..]) {
        *o = v * inv * w;
    }
}

avx2_entry!(
    /// One row of layer norm.
    fn layer_norm_row(x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32], eps: f32) => layer_norm_row_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn layer_norm_row_avx2(x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32], eps: f32) {
    let n = x.len();
    let main = split(n);
    let mut acc = _mm256_setzero_ps();
    for c in x[..main].chunks_exact(LANES) {
        acc = _mm256_add_ps(acc, load(c));
    }
    let mean = (hsum(acc) + x[main..].iter().sum::<f32>()) / n as f32;
    let vmean = _mm256_set1_ps(mean);
    let mut acc = _mm256_setzero_ps();
    for c in x[..main].chunks_exact(LANES) {
        let d = _mm256_sub_ps(load(c), vmean);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    let var = (hsum(acc)
        + x[main..]
            .iter()
            .map(|&v| (v - mean) * (v - mean))
            .sum::<f32>())
        / n as f32;
    let inv = 1.0 / (var + eps).sqrt();
    let vinv = _mm256_set1_ps(inv);
    for (i, (o, c)) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
        .enumerate()
    {
        let at = i * LANES;
        let y = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_sub_ps(load(c), vmean), vinv),
            load(&w[at..]),
        );
        let y = match b {
            Some(b) => _mm256_add_ps(y, load(&b[at..])),
            None => y,
        };
        store(o, y);
    }
    for i in main..n {
        let y = (x[i] - mean) * inv * w[i];
        out[i] = b.map_or(y, |b| y + b[i]);
    }
}

avx2_entry!(
    /// Softmax of one row, in place.
    fn softmax_row(row: &mut [f32]) => softmax_row_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn softmax_row_avx2(row: &mut [f32]) {
    let n = row.len();
    let main = split(n);
    // `max_ps(v, acc)` returns `acc` when `v` is NaN: NaN lanes are skipped
    // (a NaN still poisons the sum below, as in the scalar path).
    let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in row[..main].chunks_exact(LANES) {
        acc = _mm256_max_ps(load(c), acc);
    }
    let max = row[main..].iter().fold(hmax(acc), |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        super::softmax::fill_masked(row);
        return;
    }
    let vmax = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    for c in row[..main].chunks_exact_mut(LANES) {
        let e = exp(_mm256_sub_ps(load(c), vmax));
        sum = _mm256_add_ps(sum, e);
        store(c, e);
    }
    let mut total = hsum(sum);
    for v in &mut row[main..] {
        *v = (*v - max).exp();
        total += *v;
    }
    let inv = 1.0 / total;
    let vinv = _mm256_set1_ps(inv);
    for c in row[..main].chunks_exact_mut(LANES) {
        store(c, _mm256_mul_ps(load(c), vinv));
    }
    row[main..].iter_mut().for_each(|v| *v *= inv);
}

/// `x * sigmoid(k x)` for `k = 1` (SiLU) lane-wise: `x / (1 + e^(-k x))`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn silu_v(x: __m256) -> __m256 {
    let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

fn silu_1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Apply a lane-wise function to `x` into `out`, the tail through `scalar`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn map(x: &[f32], out: &mut [f32], vector: impl Fn(__m256) -> __m256, scalar: impl Fn(f32) -> f32) {
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

avx2_entry!(
    /// SiLU.
    fn silu(x: &[f32], out: &mut [f32]) => silu_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn silu_avx2(x: &[f32], out: &mut [f32]) {
    map(x, out, |v| silu_v(v), silu_1);
}

avx2_entry!(
    /// GELU, tanh approximation, written as `x * sigmoid(2 y)`
    /// (`0.5 (1 + tanh y) = sigmoid(2 y)`), which has no cancellation.
    fn gelu_tanh(x: &[f32], out: &mut [f32]) => gelu_tanh_avx2
);

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

#[target_feature(enable = "avx2,fma,f16c")]
fn gelu_tanh_avx2(x: &[f32], out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn v(x: __m256) -> __m256 {
        // -2y = x * (-2k - 2k * 0.044715 x²)
        let x2 = _mm256_mul_ps(x, x);
        let a = _mm256_set1_ps(-2.0 * SQRT_2_OVER_PI * 0.044715);
        let m2y = _mm256_mul_ps(
            x,
            _mm256_fmadd_ps(a, x2, _mm256_set1_ps(-2.0 * SQRT_2_OVER_PI)),
        );
        _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), exp(m2y)))
    }
    let s = |x: f32| {
        let y = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
        x / (1.0 + (-2.0 * y).exp())
    };
    map(x, out, |x| v(x), s);
}

avx2_entry!(
    /// GELU, exact (erf) form.
    fn gelu_erf(x: &[f32], out: &mut [f32]) => gelu_erf_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn gelu_erf_avx2(x: &[f32], out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn v(x: __m256) -> __m256 {
        let e = vmath::erf(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        let half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
        _mm256_fmadd_ps(half_x, e, half_x)
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

avx2_entry!(
    /// `silu(gate) * up`.
    fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) => swiglu_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn swiglu_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let main = split(gate.len());
    for ((o, g), u) in out[..main]
        .chunks_exact_mut(LANES)
        .zip(gate[..main].chunks_exact(LANES))
        .zip(up[..main].chunks_exact(LANES))
    {
        store(o, _mm256_mul_ps(silu_v(load(g)), load(u)));
    }
    for ((o, &g), &u) in out[main..].iter_mut().zip(&gate[main..]).zip(&up[main..]) {
        *o = silu_1(g) * u;
    }
}

avx2_entry!(
    /// `a + b` or `a * b`.
    fn binary(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) => binary_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn binary_avx2(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) {
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
                Binary::Add => _mm256_add_ps(x, y),
                Binary::Sub => _mm256_sub_ps(x, y),
                Binary::Mul => _mm256_mul_ps(x, y),
                Binary::Div => _mm256_div_ps(x, y),
            },
        );
    }
    for ((o, &x), &y) in out[main..].iter_mut().zip(&a[main..]).zip(&b[main..]) {
        *o = op.apply(x, y);
    }
}

avx2_entry!(
    /// `x * s`.
    fn scale(x: &[f32], s: f32, out: &mut [f32]) => scale_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn scale_avx2(x: &[f32], s: f32, out: &mut [f32]) {
    let vs = _mm256_set1_ps(s);
    map(x, out, |v| _mm256_mul_ps(v, vs), |v| v * s);
}

avx2_entry!(
    /// Rotate every head of one row.
    fn rope_row(t: &RopeRow<'_>, x: &mut [f32]) => rope_row_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn rope_row_avx2(t: &RopeRow<'_>, x: &mut [f32]) {
    let half = t.cos.len();
    match t.style {
        RopeStyle::Interleaved => {
            // Lanes hold (a0, b0, a1, b1, ...): out = x * (c, c) + swap(x) * (-s, s).
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
                    let swapped = _mm256_permute_ps::<0b10_11_00_01>(v);
                    store(
                        h,
                        _mm256_fmadd_ps(v, load(c), _mm256_mul_ps(swapped, load(s))),
                    );
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
                    store(&mut lo[i..], _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
                    store(&mut hi[i..], _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
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

avx2_entry!(
    /// Index of the largest value of a row (NaN lowest, lower index on ties).
    fn argmax_row(row: &[f32]) -> usize => argmax_row_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn argmax_row_avx2(row: &[f32]) -> usize {
    let main = split(row.len());
    // Pass 1: the largest non-NaN value (`max_ps(v, acc)` skips a NaN `v`).
    let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in row[..main].chunks_exact(LANES) {
        acc = _mm256_max_ps(load(c), acc);
    }
    let max = row[main..].iter().fold(hmax(acc), |m, &v| m.max(v));
    // Pass 2: its first occurrence. None means the row is all NaN: index 0.
    let target = _mm256_set1_ps(max);
    for (i, c) in row[..main].chunks_exact(LANES).enumerate() {
        let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(load(c), target));
        if mask != 0 {
            return i * LANES + mask.trailing_zeros() as usize;
        }
    }
    row[main..]
        .iter()
        .position(|&v| v == max)
        .map_or(0, |p| main + p)
}

avx2_entry!(
    /// Offer a whole row to `best`, skipping vectors with nothing above the
    /// current threshold.
    fn top_k_row(row: &[f32], best: &mut TopK) => top_k_row_avx2
);

#[target_feature(enable = "avx2,fma,f16c")]
fn top_k_row_avx2(row: &[f32], best: &mut TopK) {
    let main = split(row.len());
    for (i, c) in row[..main].chunks_exact(LANES).enumerate() {
        let first = i * LANES;
        match best.threshold() {
            // Only a value strictly above a numeric threshold gets in; NaN
            // lanes compare false, as they should.
            Some(t) if !t.is_nan() => {
                let mut mask =
                    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(load(c), _mm256_set1_ps(t)));
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
