//! `EXODUS_FORCE_SCALAR=1` pins the matmul to the scalar kernels. This file
//! holds a single test so that setting the variable races with nothing
//! (each integration test file is its own process).

mod matmul_util;

use exodus_kernels::matmul::{matmul, matmul_with, tiling_for};
use exodus_kernels::pool::global;
use exodus_numerics::cpu::{self, SimdLevel};
use exodus_numerics::sample::SplitMix64;
use matmul_util::{make, normal};

#[test]
fn force_scalar_env_selects_the_scalar_kernels() {
    // Before anything reads the dispatcher's mode.
    std::env::set_var("EXODUS_FORCE_SCALAR", "1");
    assert_eq!(cpu::active(), SimdLevel::Scalar);
    let mut rng = SplitMix64::new(9);
    for (kind, rows) in [("q4_1", 1), ("q6_k", 2), ("f16", 20), ("mxfp4", 30)] {
        let (n, k) = (40, 512);
        let owned = make(kind, n, k, 1);
        let w = owned.weights(n, k);
        let x = normal(&mut rng, rows * k);
        let mut got = vec![0f32; rows * n];
        matmul(&x, rows, &w, &mut got).unwrap();
        let t = tiling_for(rows, &w, global().threads());
        let mut scalar = vec![1f32; rows * n];
        matmul_with(global(), SimdLevel::Scalar, &t, &x, rows, &w, &mut scalar).unwrap();
        assert_eq!(got, scalar, "{kind}: matmul must run the scalar kernels");
    }
}
