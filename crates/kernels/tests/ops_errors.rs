//! Every op refuses lengths and shapes that do not match with a typed
//! [`KernelError`] instead of panicking.

use exodus_kernels::ops::{self, GeluApprox, LayerNormParams, RmsNormParams, RopeParams};
use exodus_kernels::KernelError;

fn is_len(r: exodus_kernels::Result<()>, what: &str) -> bool {
    matches!(r, Err(KernelError::LengthMismatch { what: w, .. }) if w == what)
}

fn is_shape(r: exodus_kernels::Result<()>) -> bool {
    matches!(r, Err(KernelError::BadShape { .. }))
}

#[test]
fn mismatched_lengths_are_errors() {
    let x = vec![1f32; 12];
    let mut out = vec![0f32; 12];
    let mut short = vec![0f32; 11];
    let w = vec![1f32; 4];
    let rms = RmsNormParams::default();
    assert!(is_len(ops::rms_norm(&x, &w, &mut short, 3, 4, &rms), "out"));
    assert!(is_len(
        ops::rms_norm(&x, &w[..3], &mut out, 3, 4, &rms),
        "weight"
    ));
    assert!(is_len(ops::rms_norm(&x, &w, &mut out, 2, 4, &rms), "x"));
    let ln = LayerNormParams::default();
    assert!(is_len(
        ops::layer_norm(&x, &w, Some(&w[..2]), &mut out, 3, 4, &ln),
        "bias"
    ));
    assert!(is_len(ops::silu(&x, &mut short), "out"));
    assert!(is_len(ops::gelu(&x, &mut short, GeluApprox::Erf), "out"));
    assert!(is_len(ops::swiglu(&x, &x[..11], &mut out), "up"));
    assert!(is_len(ops::add(&x, &x[..3], &mut out), "b"));
    assert!(is_len(ops::mul(&x, &x, &mut short), "out"));
    assert!(is_len(ops::scale(&x, 2.0, &mut short), "out"));
    let mut y = x.clone();
    assert!(is_len(ops::softmax(&mut y, 5, 4), "x"));
    assert!(is_len(
        ops::rope(&mut y, &[0, 1], 2, 4, &RopeParams::default()),
        "x"
    ));
    let mut am = [0u32; 2];
    assert!(is_len(ops::argmax(&x, 3, 4, &mut am), "out"));
    let (mut ti, mut tv) = (vec![0u32; 6], vec![0f32; 5]);
    assert!(is_len(ops::top_k(&x, 3, 4, 2, &mut ti, &mut tv), "values"));
}

#[test]
fn bad_shapes_are_errors() {
    let mut x = vec![1f32; 12];
    let mut out = [0f32; 12];
    let rms = RmsNormParams::default();
    assert!(is_shape(ops::rms_norm(&[], &[], &mut [], 3, 0, &rms)));
    assert!(is_shape(ops::softmax(&mut x, usize::MAX, 3)));
    assert!(is_shape(ops::softmax(&mut [], 0, 0)));
    let odd = RopeParams {
        rotary_dim: Some(3),
        ..Default::default()
    };
    assert!(is_shape(ops::rope(&mut x, &[0], 2, 6, &odd)));
    let wide = RopeParams {
        rotary_dim: Some(8),
        ..Default::default()
    };
    assert!(is_shape(ops::rope(&mut x, &[0], 2, 6, &wide)));
    let bad_theta = RopeParams {
        theta: 0.0,
        ..Default::default()
    };
    assert!(is_shape(ops::rope(&mut x, &[0], 2, 6, &bad_theta)));
    assert!(is_shape(ops::rope(
        &mut x,
        &[0],
        0,
        6,
        &RopeParams::default()
    )));
    let (mut ti, mut tv) = (vec![0u32; 15], vec![0f32; 15]);
    assert!(is_shape(ops::top_k(&x, 3, 4, 5, &mut ti, &mut tv)));
    assert!(is_shape(ops::top_k(
        &x,
        3,
        4,
        0,
        &mut ti[..0],
        &mut tv[..0]
    )));
    // Zero rows is fine: nothing to do.
    assert!(ops::rms_norm(&[], &[1.0; 4], &mut [], 0, 4, &rms).is_ok());
    assert!(ops::silu(&[], &mut out[..0]).is_ok());
}

#[test]
fn parallel_bands_equal_one_call_and_report_errors() {
    use exodus_kernels::ops::parallel;
    use exodus_kernels::pool::ThreadPool;
    let pool = ThreadPool::new(3);
    let (rows, cols) = (37, 19);
    let x: Vec<f32> = (0..rows * cols).map(|i| (i % 23) as f32 - 11.0).collect();
    let mut whole = x.clone();
    ops::softmax(&mut whole, rows, cols).unwrap();
    for band in [1, 4, 36, 37, 100] {
        let mut y = x.clone();
        parallel::map_rows_in_place(&pool, &mut y, cols, band, |b, n| ops::softmax(b, n, cols))
            .unwrap();
        assert_eq!(y, whole, "band {band}");
        let mut out = vec![0f32; x.len()];
        parallel::map_rows(&pool, &x, &mut out, cols, band, |x, o, _| ops::silu(x, o)).unwrap();
        let mut want = vec![0f32; x.len()];
        ops::silu(&x, &mut want).unwrap();
        assert_eq!(out, want, "band {band}");
    }
    let mut y = x.clone();
    let err =
        parallel::map_rows_in_place(&pool, &mut y, cols, 5, |b, n| ops::softmax(b, n + 1, cols));
    assert!(is_len(err, "x"));
    assert!(is_shape(parallel::map_rows_in_place(
        &pool,
        &mut y[..20],
        cols,
        5,
        |_, _| Ok(())
    )));
    let mut short = vec![0f32; 3];
    assert!(is_len(
        parallel::map_rows(&pool, &x, &mut short, cols, 5, |_, _, _| Ok(())),
        "out"
    ));
}
