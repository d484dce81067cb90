//! Cases of the non-matmul kernels (single-threaded), at decode (1 row)
//! and a 64-token prefill chunk. Cost models, per call (f32 = 4 bytes):
//!
//! - `rms_norm [m, hidden]`: 4 FLOPs per value (square, sum, two
//!   multiplies); bytes `4·(2·m·hidden + hidden)` (x in, out, weight);
//! - `rope [m, n_heads, head_dim]` in place: 3 FLOPs per value (a pair is
//!   4 multiplies and 2 adds; the per-row sines are not counted); bytes
//!   `8·values` (read and write);
//! - `softmax [rows, cols]` in place: 5 FLOPs per value (max, subtract,
//!   exp counted as one, sum, scale); bytes `8·values`;
//! - `silu [m, intermediate]`: 4 FLOPs per value (exp as one, add, divide,
//!   multiply); bytes `8·values`; `swiglu`: 5 FLOPs, bytes `12·values`;
//! - `embedding` gather of `m` rows of the model's weight format: 2 FLOPs
//!   per value (scale and offset); bytes `m·(row_bytes + 4·hidden)`;
//! - `argmax [1, vocab]`: 1 FLOP (a compare) per value, bytes `4·vocab`;
//!   `top_k` (k = 40) the same.

use exodus_numerics::sample::{self, SplitMix64};

use super::models::ModelShape;
use super::{Case, Options, Runner, Setup};
use crate::error::Result;
use crate::ops::{self, QuantizedRows, RmsNormParams, RopeParams};

/// A case named `<prefix>.<variant>`.
fn case(
    model: &ModelShape,
    variant: String,
    shape: String,
    flops: f64,
    bytes: f64,
    setup: Setup,
) -> Case {
    Case {
        name: format!("{}.{variant}", model.prefix),
        model: model.id,
        shape,
        flops,
        bytes,
        setup,
    }
}

/// Boxes a runner for a setup closure.
fn ok(run: impl FnMut() -> Result<()> + Send + 'static) -> Result<Runner> {
    Ok(Box::new(run))
}

/// Every op case of `model`.
pub(super) fn cases(model: &ModelShape, opts: &Options) -> Vec<Case> {
    let level = opts.level;
    let (h, nh, hd, vocab) = (model.hidden, model.n_heads, model.head_dim, model.vocab);
    let inter = model.intermediate[0];
    let mut out = Vec::new();
    for m in [1usize, 64] {
        let n = m * h;
        out.push(case(
            model,
            format!("rms_norm.m{m}"),
            format!("{m}x{h}"),
            4.0 * n as f64,
            4.0 * (2 * n + h) as f64,
            Box::new(move || {
                let x = sample::normal(n, 1);
                let w = sample::normal(h, 2);
                let mut y = vec![0f32; n];
                let p = RmsNormParams::default();
                ok(move || ops::rms_norm_with(level, &x, &w, &mut y, m, h, &p))
            }),
        ));
        let n = m * nh * hd;
        out.push(case(
            model,
            format!("rope.m{m}"),
            format!("{m}x{nh}x{hd}"),
            3.0 * n as f64,
            8.0 * n as f64,
            Box::new(move || {
                let mut x = sample::normal(n, 3);
                let pos: Vec<u32> = (0..m as u32).map(|p| p + 100).collect();
                let p = RopeParams::default();
                ok(move || ops::rope_with(level, &mut x, &pos, nh, hd, &p))
            }),
        ));
        let n = m * inter;
        out.push(case(
            model,
            format!("silu.m{m}"),
            format!("{m}x{inter}"),
            4.0 * n as f64,
            8.0 * n as f64,
            Box::new(move || {
                let x = sample::normal(n, 4);
                let mut y = vec![0f32; n];
                ok(move || ops::silu_with(level, &x, &mut y))
            }),
        ));
        out.push(case(
            model,
            format!("swiglu.m{m}"),
            format!("{m}x{inter}"),
            5.0 * n as f64,
            12.0 * n as f64,
            Box::new(move || {
                let g = sample::normal(n, 5);
                let u = sample::normal(n, 6);
                let mut y = vec![0f32; n];
                ok(move || ops::swiglu_with(level, &g, &u, &mut y))
            }),
        ));
        out.push(embedding_case(model, m));
    }
    // Attention scores of one decode token (heads x context), and a logits row.
    for (rows, cols, tag) in [
        (nh, 512, "scores512"),
        (nh, 2048, "scores2048"),
        (1, vocab, "vocab"),
    ] {
        let n = rows * cols;
        out.push(case(
            model,
            format!("softmax.{tag}"),
            format!("{rows}x{cols}"),
            5.0 * n as f64,
            8.0 * n as f64,
            Box::new(move || {
                let mut x = sample::normal(n, 7);
                ok(move || ops::softmax_with(level, &mut x, rows, cols))
            }),
        ));
    }
    out.push(case(
        model,
        "argmax.vocab".to_string(),
        format!("1x{vocab}"),
        vocab as f64,
        4.0 * vocab as f64,
        Box::new(move || {
            let x = sample::normal(vocab, 8);
            let mut i = [0u32; 1];
            ok(move || ops::argmax_with(level, &x, 1, vocab, &mut i))
        }),
    ));
    const TOP_K: usize = 40;
    out.push(case(
        model,
        format!("top_k{TOP_K}.vocab"),
        format!("1x{vocab} k={TOP_K}"),
        vocab as f64,
        4.0 * vocab as f64,
        Box::new(move || {
            let x = sample::normal(vocab, 9);
            let (mut i, mut v) = ([0u32; TOP_K], [0f32; TOP_K]);
            ok(move || ops::top_k_with(level, &x, 1, vocab, TOP_K, &mut i, &mut v))
        }),
    ));
    out
}

/// Gather of `m` token rows from a `[vocab, hidden]` table in the model's
/// weight format.
fn embedding_case(model: &ModelShape, m: usize) -> Case {
    let (h, vocab, format) = (model.hidden, model.vocab, model.weight_format);
    let row_bytes = format.encoded_len(h, false).unwrap_or(4 * h);
    case(
        model,
        format!("embedding.{}.m{m}", format.name()),
        format!("{m} of {vocab}x{h}"),
        2.0 * (m * h) as f64,
        (m * (row_bytes + 4 * h)) as f64,
        Box::new(move || {
            let mut rng = SplitMix64::new(10);
            let mut table = rng.bytes(vocab * row_bytes);
            // Finite f16 scales (and mins) at the start of every block.
            let block = format.encoded_len(format.block_elems(), false).unwrap_or(1);
            let d = half::f16::from_f32(0.01).to_le_bytes();
            if block >= 4 {
                for b in table.chunks_exact_mut(block) {
                    b[..2].copy_from_slice(&d);
                    b[2..4].copy_from_slice(&d);
                }
            }
            let ids: Vec<u32> = (0..m).map(|i| ((i * 7919 + 13) % vocab) as u32).collect();
            let mut y = vec![0f32; m * h];
            ok(move || {
                let t = QuantizedRows {
                    bytes: &table,
                    format,
                    vocab,
                    dim: h,
                };
                ops::embedding(&t, &ids, &mut y)
            })
        }),
    )
}
