//! Rope: both styles against an f64 rotation, every SIMD level against the
//! scalar path, position 0 as the identity, the unrotated tail of a partial
//! rotary dimension untouched, and NeoX as interleaved on permuted lanes.

mod ops_util;

use exodus_kernels::ops::{self, RopeParams, RopeStyle};
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::sample::SplitMix64;
use ops_util::{assert_close, levels, normal, range};

/// The f64 rotation of one head.
fn rotate_f64(head: &[f32], pos: u32, p: &RopeParams) -> Vec<f32> {
    let d = head.len();
    let rot = p.rotary_dim.unwrap_or(d);
    let mut out = head.to_vec();
    for i in 0..rot / 2 {
        let angle = pos as f64 * (p.theta as f64).powf(-2.0 * i as f64 / rot as f64);
        let (ia, ib) = match p.style {
            RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            RopeStyle::NeoX => (i, i + rot / 2),
        };
        let (a, b) = (head[ia] as f64, head[ib] as f64);
        out[ia] = (a * angle.cos() - b * angle.sin()) as f32;
        out[ib] = (a * angle.sin() + b * angle.cos()) as f32;
    }
    out
}

#[test]
fn rope_matches_f64_rotation_on_every_level() {
    let mut rng = SplitMix64::new(11);
    for case in 0..200 {
        let head_dim = [2, 6, 8, 14, 16, 18, 64, 128][case % 8];
        let n_heads = range(&mut rng, 1, 5);
        let rows = range(&mut rng, 1, 4);
        let rotary_dim = match case % 3 {
            0 => None,
            _ => Some(2 * range(&mut rng, 1, head_dim / 2 + 1)),
        };
        let style = if case % 2 == 0 {
            RopeStyle::Interleaved
        } else {
            RopeStyle::NeoX
        };
        let p = RopeParams {
            style,
            theta: [10000.0, 100000.0, 500000.0][case % 3],
            rotary_dim,
        };
        let positions: Vec<u32> = (0..rows)
            .map(|_| range(&mut rng, 0, 40000) as u32)
            .collect();
        let x = normal(&mut rng, rows * n_heads * head_dim, 1.0);
        let want: Vec<f32> = x
            .chunks(n_heads * head_dim)
            .zip(&positions)
            .flat_map(|(row, &pos)| {
                row.chunks(head_dim)
                    .flat_map(|h| rotate_f64(h, pos, &p))
                    .collect::<Vec<_>>()
            })
            .collect();
        for level in levels() {
            let mut y = x.clone();
            ops::rope_with(level, &mut y, &positions, n_heads, head_dim, &p).unwrap();
            // cos/sin rounded to f32: ~1e-7 relative per term.
            assert_close(
                &y,
                &want,
                1e-6,
                1e-6,
                &format!("rope {level:?} case {case} {p:?}"),
            );
            // The pass-through tail is bit-exact.
            let rot = rotary_dim.unwrap_or(head_dim);
            for (a, b) in y.chunks(head_dim).zip(x.chunks(head_dim)) {
                assert_eq!(a[rot..], b[rot..]);
            }
        }
    }
}

#[test]
fn position_zero_is_the_identity() {
    let mut rng = SplitMix64::new(12);
    let x = normal(&mut rng, 3 * 64, 1.0);
    for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
        for level in levels() {
            let mut y = x.clone();
            let p = RopeParams {
                style,
                ..Default::default()
            };
            ops::rope_with(level, &mut y, &[0], 3, 64, &p).unwrap();
            assert_eq!(y, x, "{style:?} {level:?}");
        }
    }
}

#[test]
fn neox_is_interleaved_on_permuted_lanes() {
    // Lane i of NeoX pairs with i + d/2; put them side by side and the
    // interleaved rotation must produce the same numbers.
    let mut rng = SplitMix64::new(13);
    let d = 64;
    let x = normal(&mut rng, d, 1.0);
    let perm: Vec<usize> = (0..d / 2).flat_map(|i| [i, i + d / 2]).collect();
    let permuted: Vec<f32> = perm.iter().map(|&j| x[j]).collect();
    let mut neox = x.clone();
    let mut inter = permuted.clone();
    let p = |style| RopeParams {
        style,
        theta: 10000.0,
        rotary_dim: None,
    };
    ops::rope_with(
        SimdLevel::Scalar,
        &mut neox,
        &[77],
        1,
        d,
        &p(RopeStyle::NeoX),
    )
    .unwrap();
    ops::rope_with(
        SimdLevel::Scalar,
        &mut inter,
        &[77],
        1,
        d,
        &p(RopeStyle::Interleaved),
    )
    .unwrap();
    for (k, &j) in perm.iter().enumerate() {
        assert_eq!(inter[k], neox[j], "lane {j}");
    }
}
