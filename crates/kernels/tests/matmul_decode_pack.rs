//! A Q4_0 / Q4_1 weight with a [`DecodePack`] attached gives the very bits
//! it gives without one, through every decode entry point (one weight, a
//! group whose runs start at rows that are not multiples of four, the fused
//! SwiGLU) and with row counts that leave rows outside the pack; the pack
//! is refused by a weight it was not made from.

mod matmul_util;

use exodus_kernels::matmul::{matmul_group_in, matmul_in, matmul_swiglu_in, DecodePack};
use exodus_kernels::{KernelError, ThreadPool, Weights};
use exodus_numerics::cpu;
use exodus_numerics::sample::SplitMix64;
use matmul_util::*;

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn packed_weights_give_the_unpacked_bits() {
    let level = cpu::active();
    let mut rng = SplitMix64::new(5);
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads);
        for kind in ["q4_0", "q4_1"] {
            for (n, k) in [(4usize, 64usize), (67, 576), (130, 1536)] {
                let owned = make(kind, n, k, n as u64);
                let w = owned.weights(n, k);
                let Some(pack) = DecodePack::new(level, &w) else {
                    // Only AVX-512 VNNI CPUs read a pack.
                    assert!(!level.has_avx512());
                    return;
                };
                assert_eq!(pack.byte_len(), n / 4 * 4 * w.byte_len() / n);
                let packed = w.with_decode_pack(&pack).unwrap();
                for rows in [1, 3] {
                    let x = normal(&mut rng, rows * k);
                    let mut want = vec![0f32; rows * n];
                    let mut got = vec![f32::NAN; rows * n];
                    matmul_in(&pool, &x, rows, &w, &mut want).unwrap();
                    matmul_in(&pool, &x, rows, &packed, &mut got).unwrap();
                    assert!(same_bits(&want, &got), "{kind} [{n}, {k}], {rows} rows");
                }
            }
        }
    }
}

#[test]
fn groups_and_swiglu_with_packs_give_the_unpacked_bits() {
    let level = cpu::active();
    let pool = ThreadPool::new(2);
    let mut rng = SplitMix64::new(9);
    let k = 128;
    // Runs of the group's concatenation start at rows 0, 6 and 6 + 11 of
    // their weights' tasks: most of them not multiples of four.
    let ns = [6usize, 11, 37];
    let owned: Vec<Owned> = ns.iter().map(|&n| make("q4_1", n, k, n as u64)).collect();
    let plain: Vec<Weights> = owned
        .iter()
        .zip(&ns)
        .map(|(o, &n)| o.weights(n, k))
        .collect();
    let packs: Vec<Option<DecodePack>> = plain.iter().map(|w| DecodePack::new(level, w)).collect();
    if packs.iter().any(Option::is_none) {
        assert!(!level.has_avx512());
        return;
    }
    let packed: Vec<Weights> = plain
        .iter()
        .zip(&packs)
        .map(|(w, p)| w.with_decode_pack(p.as_ref().unwrap()).unwrap())
        .collect();
    let x = normal(&mut rng, k);
    let run = |ws: &[Weights]| {
        let refs: Vec<&Weights> = ws.iter().collect();
        let mut outs: Vec<Vec<f32>> = ns.iter().map(|&n| vec![f32::NAN; n]).collect();
        let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
        matmul_group_in(&pool, &x, 1, &refs, &mut views).unwrap();
        outs
    };
    for (i, (a, b)) in run(&plain).iter().zip(&run(&packed)).enumerate() {
        assert!(same_bits(a, b), "weight {i} of the group");
    }
    let (gate, up) = (make("q4_1", 96, k, 1), make("q4_1", 96, k, 2));
    let (gw, uw) = (gate.weights(96, k), up.weights(96, k));
    let (gp, up_pack) = (
        DecodePack::new(level, &gw).unwrap(),
        DecodePack::new(level, &uw).unwrap(),
    );
    let mut want = vec![0f32; 96];
    let mut got = vec![f32::NAN; 96];
    matmul_swiglu_in(&pool, &x, 1, &gw, &uw, &mut want).unwrap();
    let (gpw, upw) = (
        gw.with_decode_pack(&gp).unwrap(),
        uw.with_decode_pack(&up_pack).unwrap(),
    );
    matmul_swiglu_in(&pool, &x, 1, &gpw, &upw, &mut got).unwrap();
    assert!(same_bits(&want, &got), "swiglu");
}

#[test]
fn a_pack_fits_only_the_weight_it_was_made_from() {
    let level = cpu::active();
    let (a, b) = (make("q4_1", 8, 64, 1), make("q4_0", 8, 64, 2));
    let (wa, wb) = (a.weights(8, 64), b.weights(8, 64));
    let Some(pack) = DecodePack::new(level, &wa) else {
        assert!(!level.has_avx512());
        return;
    };
    let err = wb.with_decode_pack(&pack).unwrap_err();
    assert!(matches!(err, KernelError::BadShape { .. }), "{err}");
    let c = make("q4_1", 12, 64, 3);
    assert!(c.weights(12, 64).with_decode_pack(&pack).is_err());
}
