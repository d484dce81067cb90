//! Argmax and top-k: against a sort-based reference on random rows with
//! many ties, NaN ordering, and identical indices on every SIMD level.

mod ops_util;

use exodus_kernels::ops;
use exodus_numerics::sample::SplitMix64;
use ops_util::{levels, range, SIZES};

/// Reference: stable sort of (value, index) by value descending, NaN last.
fn sorted(row: &[f32]) -> Vec<(f32, u32)> {
    let mut v: Vec<(f32, u32)> = row
        .iter()
        .enumerate()
        .map(|(i, &x)| (x, i as u32))
        .collect();
    v.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.0.partial_cmp(&a.0).unwrap(),
    });
    v
}

/// A row of small integers (ties everywhere), with some NaN and -inf.
fn tied_row(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.next_u64() % 20 {
            0 => f32::NAN,
            1 => f32::NEG_INFINITY,
            r => (r % 7) as f32 - 3.0,
        })
        .collect()
}

#[test]
fn argmax_and_top_k_match_a_stable_sort() {
    let mut rng = SplitMix64::new(21);
    for &cols in SIZES.iter().chain(&[4099, 49152]) {
        let rows = range(&mut rng, 1, 4);
        let x: Vec<f32> = (0..rows).flat_map(|_| tied_row(&mut rng, cols)).collect();
        for k in [1, 2, 5, 40].into_iter().filter(|&k| k <= cols) {
            for level in levels() {
                let mut idx = vec![0u32; rows * k];
                let mut val = vec![0f32; rows * k];
                ops::top_k_with(level, &x, rows, cols, k, &mut idx, &mut val).unwrap();
                for (r, row) in x.chunks(cols).enumerate() {
                    let want = &sorted(row)[..k];
                    let got_idx = &idx[r * k..(r + 1) * k];
                    let want_idx: Vec<u32> = want.iter().map(|e| e.1).collect();
                    assert_eq!(got_idx, want_idx, "{level:?} cols {cols} k {k} row {r}");
                    for (g, w) in val[r * k..(r + 1) * k].iter().zip(want) {
                        assert!(g == &w.0 || (g.is_nan() && w.0.is_nan()));
                    }
                }
            }
        }
        for level in levels() {
            let mut out = vec![0u32; rows];
            ops::argmax_with(level, &x, rows, cols, &mut out).unwrap();
            for (r, row) in x.chunks(cols).enumerate() {
                assert_eq!(
                    out[r],
                    sorted(row)[0].1,
                    "{level:?} argmax cols {cols} row {r}"
                );
            }
        }
    }
}

#[test]
fn argmax_special_rows() {
    for level in levels() {
        let mut out = [9u32; 3];
        let x = [
            [f32::NAN; 9],
            [
                f32::NAN,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::NEG_INFINITY,
                f32::NAN,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        ]
        .concat();
        ops::argmax_with(level, &x, 3, 9, &mut out).unwrap();
        assert_eq!(out, [0, 5, 8], "{level:?}");
    }
}
