//! AVX2 + FMA twin of `online::fold_scalar` (x86_64): the block's scores
//! as 8-wide dot products, their max and `exp` as vectors, and the
//! weighted V accumulation with FMA.
//!
//! [`fold`] is entered only after the run-time check for
//! AVX2/FMA/F16C (`ops::dispatch::path`); memory is touched only through
//! the bounds-checked `vmath::load`/`store`.

use std::arch::x86_64::*;

use super::online::State;
use crate::ops::x86::vmath::{exp, hmax, hsum, load, store, LANES};

/// Fold `n` keys into `st` / `acc`; shapes as `online::fold_scalar`, with
/// `scores` at least `n` rounded up to 8.
pub(crate) fn fold(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    st: &mut State,
    acc: &mut [f32],
    scores: &mut [f32],
) {
    // SAFETY: reached only after the run-time AVX2/FMA/F16C check.
    unsafe { fold_avx2(q, k, v, n, st, acc, scores) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let d = a.len();
    let main = d - d % LANES;
    let mut s0 = _mm256_setzero_ps();
    let mut s1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 2 * LANES <= main {
        s0 = _mm256_fmadd_ps(load(&a[i..]), load(&b[i..]), s0);
        s1 = _mm256_fmadd_ps(load(&a[i + LANES..]), load(&b[i + LANES..]), s1);
        i += 2 * LANES;
    }
    if i < main {
        s0 = _mm256_fmadd_ps(load(&a[i..]), load(&b[i..]), s0);
    }
    let mut s = hsum(_mm256_add_ps(s0, s1));
    for j in main..d {
        s += a[j] * b[j];
    }
    s
}

/// `acc += p * x`, lane-wise.
#[target_feature(enable = "avx2,fma,f16c")]
fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
    let d = acc.len();
    let main = d - d % LANES;
    let vp = _mm256_set1_ps(p);
    for i in (0..main).step_by(LANES) {
        let y = _mm256_fmadd_ps(vp, load(&x[i..]), load(&acc[i..]));
        store(&mut acc[i..], y);
    }
    for j in main..d {
        acc[j] += p * x[j];
    }
}

/// Widest head this file's register-resident path takes (16 vectors of 8).
const MAX_REGS: usize = 16;

/// The dots of `q` with 8 consecutive K rows (`k[..8 * d]`), as one vector:
/// eight FMA chains, then a transpose-add tree instead of eight horizontal
/// sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dots8(q: &[__m256], k: &[f32], d: usize) -> __m256 {
    let mut s = [_mm256_setzero_ps(); 8];
    for (r, acc) in s.iter_mut().enumerate() {
        let row = &k[r * d..(r + 1) * d];
        for (j, qv) in q.iter().enumerate() {
            *acc = _mm256_fmadd_ps(*qv, load(&row[j * LANES..]), *acc);
        }
    }
    // hadd pairs rows within 128-bit halves; two rounds leave, per half,
    // the four rows' partial sums; the halves are then added across.
    let a = _mm256_hadd_ps(s[0], s[1]);
    let b = _mm256_hadd_ps(s[2], s[3]);
    let c = _mm256_hadd_ps(s[4], s[5]);
    let e = _mm256_hadd_ps(s[6], s[7]);
    let ab = _mm256_hadd_ps(a, b); // rows 0..4: low half lanes 0..4, high half lanes 0..4
    let ce = _mm256_hadd_ps(c, e); // rows 4..8
    let lo = _mm256_permute2f128_ps::<0x20>(ab, ce);
    let hi = _mm256_permute2f128_ps::<0x31>(ab, ce);
    _mm256_add_ps(lo, hi)
}

/// The softmax step of a fold, shared by both folds: pads `scores[..n]`
/// with `-inf` to whole vectors, takes the new running max, turns the
/// scores into `exp(score - max)` in place and updates `st` (the running
/// sum rescaled, then the block's added). Returns the factor the weighted
/// V sum must be rescaled by, or `None` when no key is visible (nothing to
/// fold).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn softmax_step(scores: &mut [f32], n: usize, st: &mut State) -> Option<f32> {
    let padded = n.next_multiple_of(LANES);
    // Padding lanes are -inf: they add nothing to the max, and exp gives 0.
    scores[n..padded].fill(f32::NEG_INFINITY);
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in scores[..padded].chunks_exact(LANES) {
        vmax = _mm256_max_ps(load(c), vmax);
    }
    let m = st.m.max(hmax(vmax));
    if m == f32::NEG_INFINITY {
        return None;
    }
    let c = (st.m - m).exp();
    st.l *= c;
    let vm = _mm256_set1_ps(m);
    let mut vsum = _mm256_setzero_ps();
    for ch in scores[..padded].chunks_exact_mut(LANES) {
        let p = exp(_mm256_sub_ps(load(ch), vm));
        vsum = _mm256_add_ps(vsum, p);
        store(ch, p);
    }
    st.l += hsum(vsum);
    st.m = m;
    Some(c)
}

/// [`fold_avx2`] for heads of `8 * m` values, `m <= MAX_REGS`: the dots
/// come eight keys at a time ([`dots8`]) and the weighted V sum stays in
/// registers for the whole block instead of a load and a store per key.
#[target_feature(enable = "avx2,fma,f16c")]
fn fold_regs(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    st: &mut State,
    acc: &mut [f32],
    scores: &mut [f32],
) {
    let d = q.len();
    let m_regs = d / LANES;
    let mut qv = [_mm256_setzero_ps(); MAX_REGS];
    for (j, r) in qv.iter_mut().enumerate().take(m_regs) {
        *r = load(&q[j * LANES..]);
    }
    let full = n - n % LANES;
    for c in (0..full).step_by(LANES) {
        store(&mut scores[c..], dots8(&qv[..m_regs], &k[c * d..], d));
    }
    for (s, kj) in scores[full..n]
        .iter_mut()
        .zip(k[full * d..].chunks_exact(d))
    {
        *s = dot(q, kj);
    }
    let Some(c) = softmax_step(scores, n, st) else {
        return;
    };
    let vc = _mm256_set1_ps(c);
    let mut av = [_mm256_setzero_ps(); MAX_REGS];
    for (j, r) in av.iter_mut().enumerate().take(m_regs) {
        *r = _mm256_mul_ps(load(&acc[j * LANES..]), vc);
    }
    for (&p, vj) in scores[..n].iter().zip(v.chunks_exact(d)) {
        let vp = _mm256_set1_ps(p);
        for (j, r) in av.iter_mut().enumerate().take(m_regs) {
            *r = _mm256_fmadd_ps(vp, load(&vj[j * LANES..]), *r);
        }
    }
    for (j, r) in av.iter().enumerate().take(m_regs) {
        store(&mut acc[j * LANES..], *r);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn fold_avx2(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    st: &mut State,
    acc: &mut [f32],
    scores: &mut [f32],
) {
    let d = q.len();
    if d.is_multiple_of(LANES) && d / LANES <= MAX_REGS {
        return fold_regs(q, k, v, n, st, acc, scores);
    }
    for (s, kj) in scores[..n].iter_mut().zip(k.chunks_exact(d)) {
        *s = dot(q, kj);
    }
    let Some(c) = softmax_step(scores, n, st) else {
        return;
    };
    if c != 1.0 {
        let vc = _mm256_set1_ps(c);
        let main = d - d % LANES;
        for i in (0..main).step_by(LANES) {
            let y = _mm256_mul_ps(load(&acc[i..]), vc);
            store(&mut acc[i..], y);
        }
        acc[main..].iter_mut().for_each(|a| *a *= c);
    }
    for (&p, vj) in scores[..n].iter().zip(v.chunks_exact(d)) {
        axpy(acc, p, vj);
    }
}
