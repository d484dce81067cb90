//! NEON twin of `online::fold_scalar` (aarch64), mirroring the AVX2 fold in
//! `attention::x86` four lanes at a time: the block's scores as 4-wide dot
//! products (two accumulators), their max (NaN scores skipped, as the
//! scalar `f32::max` skips them) and `exp` as vectors (the Cephes
//! polynomial of `ops::neon::vmath`), and the weighted V accumulation with
//! `vfmaq_n_f32`.
//!
//! [`fold`] is entered only once [`SimdLevel::Neon`] was selected and
//! found supported (`ops::dispatch::path`); memory is touched only through
//! the bounds-checked `vmath::load`/`store`, and tails shorter than a
//! vector run the scalar formula.
//!
//! [`SimdLevel::Neon`]: exodus_numerics::cpu::SimdLevel::Neon

use std::arch::aarch64::*;

use super::online::State;
use crate::ops::neon::vmath::{exp, hmax, hsum, load, max_num, store, LANES};

/// Fold `n` keys into `st` / `acc`; shapes as `online::fold_scalar`, with
/// `scores` at least `n` rounded up to 4.
pub(crate) fn fold(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    st: &mut State,
    acc: &mut [f32],
    scores: &mut [f32],
) {
    // SAFETY: reached only once `SimdLevel::Neon` was selected and found
    // supported; every aarch64 CPU has NEON.
    unsafe { fold_neon(q, k, v, n, st, acc, scores) }
}

/// `a · b` over `a.len()` elements.
#[target_feature(enable = "neon")]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let d = a.len();
    let main = d - d % LANES;
    let mut s0 = vdupq_n_f32(0.0);
    let mut s1 = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 2 * LANES <= main {
        s0 = vfmaq_f32(s0, load(&a[i..]), load(&b[i..]));
        s1 = vfmaq_f32(s1, load(&a[i + LANES..]), load(&b[i + LANES..]));
        i += 2 * LANES;
    }
    if i < main {
        s0 = vfmaq_f32(s0, load(&a[i..]), load(&b[i..]));
    }
    let mut s = hsum(vaddq_f32(s0, s1));
    for j in main..d {
        s += a[j] * b[j];
    }
    s
}

/// `acc += p * x`, lane-wise.
#[target_feature(enable = "neon")]
fn axpy(acc: &mut [f32], p: f32, x: &[f32]) {
    let d = acc.len();
    let main = d - d % LANES;
    for (a, x) in acc[..main]
        .chunks_exact_mut(LANES)
        .zip(x[..main].chunks_exact(LANES))
    {
        let y = vfmaq_n_f32(load(a), load(x), p);
        store(a, y);
    }
    for (a, &x) in acc[main..].iter_mut().zip(&x[main..d]) {
        *a += p * x;
    }
}

#[target_feature(enable = "neon")]
fn fold_neon(
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
    let mut vmax = vdupq_n_f32(f32::NEG_INFINITY);
    for c in scores[..padded].chunks_exact(LANES) {
        vmax = max_num(load(c), vmax);
    }
    let m = st.m.max(hmax(vmax));
    if m == f32::NEG_INFINITY {
        return;
    }
    let c = (st.m - m).exp();
    if c != 1.0 {
        st.l *= c;
        let main = d - d % LANES;
        for a in acc[..main].chunks_exact_mut(LANES) {
            let y = vmulq_n_f32(load(a), c);
            store(a, y);
        }
        acc[main..].iter_mut().for_each(|a| *a *= c);
    }
    let vm = vdupq_n_f32(m);
    let mut vsum = vdupq_n_f32(0.0);
    for ch in scores[..padded].chunks_exact_mut(LANES) {
        let p = exp(vsubq_f32(load(ch), vm));
        vsum = vaddq_f32(vsum, p);
        store(ch, p);
    }
    st.l += hsum(vsum);
    for (&p, vj) in scores[..n].iter().zip(v.chunks_exact(d)) {
        axpy(acc, p, vj);
    }
    st.m = m;
}

#[cfg(test)]
mod tests {
    use exodus_numerics::sample::SplitMix64;

    use super::super::online::{fold_scalar, State};
    use super::fold;

    fn normal(rng: &mut SplitMix64, n: usize, sigma: f64) -> Vec<f32> {
        (0..n).map(|_| (rng.normal() * sigma) as f32).collect()
    }

    const EMPTY: State = State {
        m: f32::NEG_INFINITY,
        l: 0.0,
    };

    /// Several blocks of ragged sizes (so the running max rises and the
    /// accumulator is rescaled) at head dims that are not multiples of 4 or
    /// 8, against the scalar fold.
    #[test]
    fn fold_matches_scalar_over_ragged_blocks() {
        let mut rng = SplitMix64::new(51);
        for d in [1, 3, 4, 5, 8, 12, 13, 20, 64, 67] {
            let bs = 9usize;
            let q = normal(&mut rng, d, 1.0);
            let (mut sn, mut ss) = (EMPTY, EMPTY);
            let (mut an, mut as_) = (vec![0f32; d], vec![0f32; d]);
            let mut scores = vec![0f32; bs.next_multiple_of(8)];
            for (blk, n) in [1usize, 9, 4, 7, 3].into_iter().enumerate() {
                // Later blocks score higher: the max moves.
                let k = normal(&mut rng, bs * d, 1.0 + blk as f64);
                let v = normal(&mut rng, bs * d, 1.0);
                fold(&q, &k, &v, n, &mut sn, &mut an, &mut scores);
                fold_scalar(&q, &k, &v, n, &mut ss, &mut as_, &mut scores);
                assert!((sn.m - ss.m).abs() <= 1e-5 * (1.0 + ss.m.abs()), "d {d} m");
                assert!((sn.l - ss.l).abs() <= 1e-5 * ss.l, "d {d} l");
                for (i, (&a, &b)) in an.iter().zip(&as_).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "d {d} acc[{i}]");
                }
            }
        }
    }

    /// A NaN score is skipped by the max and poisons the sum, as in the
    /// scalar fold.
    #[test]
    fn nan_scores_poison_like_scalar() {
        let d = 5;
        let q = vec![1.0f32; d];
        let mut k = vec![0.5f32; 6 * d];
        k[2 * d + 1] = f32::NAN;
        let v = vec![1.0f32; 6 * d];
        let mut scores = vec![0f32; 8];
        let mut st = EMPTY;
        let mut acc = vec![0f32; d];
        fold(&q, &k, &v, 6, &mut st, &mut acc, &mut scores);
        assert_eq!(st.m, 2.5);
        assert!(st.l.is_nan() && acc.iter().all(|a| a.is_nan()));
    }
}
