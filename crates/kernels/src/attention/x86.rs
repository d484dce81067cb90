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
    let padded = n.next_multiple_of(LANES);
    for (s, kj) in scores[..n].iter_mut().zip(k.chunks_exact(d)) {
        *s = dot(q, kj);
    }
    // Padding lanes are -inf: they add nothing to the max, and exp gives 0.
    scores[n..padded].fill(f32::NEG_INFINITY);
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in scores[..padded].chunks_exact(LANES) {
        vmax = _mm256_max_ps(load(c), vmax);
    }
    let m = st.m.max(hmax(vmax));
    if m == f32::NEG_INFINITY {
        return;
    }
    let c = (st.m - m).exp();
    if c != 1.0 {
        st.l *= c;
        let vc = _mm256_set1_ps(c);
        let main = d - d % LANES;
        for i in (0..main).step_by(LANES) {
            let y = _mm256_mul_ps(load(&acc[i..]), vc);
            store(&mut acc[i..], y);
        }
        acc[main..].iter_mut().for_each(|a| *a *= c);
    }
    let vm = _mm256_set1_ps(m);
    let mut vsum = _mm256_setzero_ps();
    for ch in scores[..padded].chunks_exact_mut(LANES) {
        let p = exp(_mm256_sub_ps(load(ch), vm));
        vsum = _mm256_add_ps(vsum, p);
        store(ch, p);
    }
    st.l += hsum(vsum);
    for (&p, vj) in scores[..n].iter().zip(v.chunks_exact(d)) {
        axpy(acc, p, vj);
    }
    st.m = m;
}
