//! Scalar quantizers of the K formats Q4_K, Q6_K and Q8_K.
//!
//! The `gguf` package has no K-format quantizer, so these follow the
//! reference algorithm of ggml (`quantize_row_q{4,6,8}_K_ref`, described here
//! in our own words and code):
//!
//! * Q4_K: each 32-element sub-block gets an affine fit `x ~ s * q - m` with
//!   `q` in 0..=15, found by `fit_affine` (a weighted least-squares search
//!   over 21 candidate inverse scales, weights `rms(sub-block) + |x|`). The 8
//!   scales and 8 mins are then quantized to 6 bits against the super-block
//!   factors `d = max_s / 63`, `dmin = max_m / 63`, and the quants are
//!   recomputed with the scales as they will be decoded.
//! * Q6_K: each 16-element group gets a symmetric fit `x ~ s * q` with `q` in
//!   -32..=31, found by `fit_symmetric` (weights `x^2`, 19 candidate
//!   scales); the 16 scales are stored as i8 against `d = -max_s / 128`.
//! * Q8_K: `d = max / -127` with `max` the element of largest magnitude.
//!
//! Rounding to integers is "nearest, ties to even" as in ggml's
//! `nearest_int`. The result is tested for round-trip error and for being
//! decoded identically by the `gguf` package, not for bit equality with ggml.

use super::layout::{f16_at, off, put_f16, scale_min_k4, QK_K};

/// Groups whose largest magnitude is below this are stored as zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest, ties to even, saturating (NaN gives 0).
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Affine fit of `x` (weights `w`) to `scale * q - min_out` with `q` in
/// `0..=nmax` and `min_out >= 0`. Writes the chosen quants to `q` and returns
/// `(scale, min_out)`.
///
/// Starts from the plain min/max grid, then tries the inverse scales
/// `(nmax + rmin + rdelta * k) / (max - min)` for `k = 0..=nstep`; for each
/// candidate rounding it solves the weighted least-squares problem for scale
/// and offset (offset clamped to `<= 0`) and keeps the one with the smallest
/// weighted squared error.
fn fit_affine(
    x: &[f32],
    w: &[f32],
    nmax: i32,
    q: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut lo = x[0];
    let mut hi = x[0];
    let mut sum_w = 0.0f32;
    let mut sum_x = 0.0f32;
    for (&xi, &wi) in x.iter().zip(w) {
        lo = lo.min(xi);
        hi = hi.max(xi);
        sum_w += wi;
        sum_x += wi * xi;
    }
    if lo > 0.0 {
        lo = 0.0;
    }
    if hi == lo {
        q.fill(0);
        return (0.0, -lo);
    }
    let quant = |iscale: f32, xi: f32, lo: f32| nearest_int(iscale * (xi - lo)).clamp(0, nmax);

    let iscale = nmax as f32 / (hi - lo);
    let mut scale = 1.0 / iscale;
    let mut best_err = 0.0f32;
    for i in 0..n {
        let l = quant(iscale, x[i], lo);
        q[i] = l as u8;
        let diff = scale * l as f32 + lo - x[i];
        best_err += w[i] * diff * diff;
    }
    let mut cand = [0u8; QK_K];
    let cand = &mut cand[..n];
    for k in 0..=nstep {
        let iscale = (rmin + rdelta * k as f32 + nmax as f32) / (hi - lo);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = quant(iscale, x[i], lo);
            cand[i] = l as u8;
            let lf = l as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut err = 0.0f32;
            for i in 0..n {
                let diff = this_scale * cand[i] as f32 + this_min - x[i];
                err += w[i] * diff * diff;
            }
            if err < best_err {
                q.copy_from_slice(cand);
                best_err = err;
                scale = this_scale;
                lo = this_min;
            }
        }
    }
    (scale, -lo)
}

/// The largest magnitude of `x` and the element (with its sign) that has it;
/// the first one wins a tie, NaNs are skipped.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    x.iter().fold((0.0f32, 0.0f32), |(amax, max), &v| {
        if v.abs() > amax {
            (v.abs(), v)
        } else {
            (amax, max)
        }
    })
}

/// Symmetric fit of `x` to `scale * l`, `l` in `-nmax..nmax`, weights `x^2`.
/// Returns the scale (its sign is that of `-max`, `max` the element of largest
/// magnitude). Tries the inverse scales `-(nmax + 0.1 k) / max`, `k` in
/// `-9..=9`, and keeps the one whose least-squares scale explains the most
/// weighted energy.
fn fit_symmetric(x: &[f32], nmax: i32) -> f32 {
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let (sumlx, suml2) = sums(-(nmax as f32) / max);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for k in -9..=9 {
        if k == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * k as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Quantizes 256 floats to one Q4_K block.
pub fn quant_q4k(x: &[f32], b: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut w = [0.0f32; 32];
        for (wi, &v) in w.iter_mut().zip(xs) {
            *wi = av_x + v.abs();
        }
        let (s, m) = fit_affine(xs, &w, 15, &mut l[32 * j..32 * j + 32], -1.0, 0.1, 20);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let packed = &mut b[off::Q4K_SCALES..off::Q4K_SCALES + 12];
    packed.fill(0);
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8;
        let lm = nearest_int(inv_min * mins[j]).clamp(0, 63) as u8;
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    put_f16(b, 0, max_scale / 63.0);
    put_f16(b, off::Q4K_DMIN, max_min / 63.0);
    let d_all = f16_at(b, 0);
    let dmin_all = f16_at(b, off::Q4K_DMIN);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b[off::Q4K_SCALES..off::Q4K_SCALES + 12]);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / d).clamp(0, 15) as u8;
        }
    }
    let qs = &mut b[off::Q4K_QS..off::Q4K_QS + QK_K / 2];
    for (c, q) in qs.chunks_exact_mut(32).enumerate() {
        for (i, o) in q.iter_mut().enumerate() {
            *o = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}

/// Quantizes 256 floats to one Q6_K block.
pub fn quant_q6k(x: &[f32], b: &mut [u8]) {
    let mut scales = [0.0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for (g, s) in scales.iter_mut().enumerate() {
        *s = fit_symmetric(&x[16 * g..16 * g + 16], 32);
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = *s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        b.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(b, off::Q6K_D, 1.0 / iscale);
    for (g, &s) in scales.iter().enumerate() {
        let v = nearest_int(iscale * s).clamp(-128, 127);
        b[off::Q6K_SCALES + g] = v as i8 as u8;
    }
    let d_all = f16_at(b, off::Q6K_D);
    let mut l = [32u8; QK_K];
    for g in 0..16 {
        let d = d_all * b[off::Q6K_SCALES + g] as i8 as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * g..16 * g + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for half in 0..2 {
        let lh = &l[128 * half..128 * half + 128];
        for i in 0..32 {
            let (q1, q2, q3, q4) = (lh[i], lh[i + 32], lh[i + 64], lh[i + 96]);
            b[64 * half + i] = (q1 & 0x0F) | ((q3 & 0x0F) << 4);
            b[64 * half + i + 32] = (q2 & 0x0F) | ((q4 & 0x0F) << 4);
            b[off::Q6K_QH + 32 * half + i] =
                (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
}

/// Quantizes 256 floats to one Q8_K block (with its 16 group sums).
pub fn quant_q8k(x: &[f32], b: &mut [u8]) {
    let (amax, max) = signed_absmax(x);
    b.fill(0);
    if amax == 0.0 {
        return;
    }
    let iscale = -127.0 / max;
    b[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    let mut qs = [0i8; QK_K];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).clamp(-128, 127) as i8;
    }
    for (i, &q) in qs.iter().enumerate() {
        b[off::Q8K_QS + i] = q as u8;
    }
    for (g, chunk) in qs.chunks_exact(16).enumerate() {
        let sum: i16 = chunk.iter().map(|&q| q as i16).sum();
        let at = off::Q8K_BSUMS + 2 * g;
        b[at..at + 2].copy_from_slice(&sum.to_le_bytes());
    }
}
