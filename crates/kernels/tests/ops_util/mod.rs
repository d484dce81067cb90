//! Helpers shared by the ops and attention integration tests: seeded
//! random data, the SIMD levels to run, the sizes worth trying, and a
//! closeness assertion that names the first failing element.
#![allow(dead_code)]

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::sample::SplitMix64;

/// Row lengths that hit every tail: 1, primes, one short of and one past a
/// vector, and the SmolLM2 sizes.
pub const SIZES: &[usize] = &[1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 33, 64, 97, 576, 1031];

/// Every level this CPU supports (scalar first).
pub fn levels() -> Vec<SimdLevel> {
    SimdLevel::supported()
}

/// `n` values `N(0, sigma²)` from `rng`.
pub fn normal(rng: &mut SplitMix64, n: usize, sigma: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * sigma) as f32).collect()
}

/// Uniform integer in `lo..hi`.
pub fn range(rng: &mut SplitMix64, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u64() % (hi - lo) as u64) as usize
}

/// Assert `|got - want| <= atol + rtol |want|` elementwise (NaN only
/// matches NaN), naming the first element that is off.
pub fn assert_close(got: &[f32], want: &[f32], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        }
        let tol = atol + rtol * (w as f64).abs();
        assert!(
            ((g as f64) - (w as f64)).abs() <= tol || g == w,
            "{what}[{i}]: got {g}, want {w} (tolerance {tol:e})"
        );
    }
}
