//! Matmul cases: every projection of a model (q/o, k/v, gate/up, down and
//! SmolLM2's lm_head) in every weight format, at decode (1 row) and
//! prefill (64 and, without `quick`, 512 rows).
//!
//! Q4_0 / Q4_1 also run at decode with their [`DecodePack`] (`q4_1-packed`),
//! where the CPU's dots read one (AVX-512 VNNI), as graph mode runs them.
//!
//! Cost model of `out[m, n] = x[m, k] · W[n, k]ᵀ`: `2·m·n·k` FLOPs; bytes
//! are the weight matrix once (in its format) plus x read and out written
//! in f32 (`4·m·k + 4·m·n`).

use std::sync::Arc;

use super::models::ModelShape;
use super::weights::{OwnedWeights, WeightKind};
use super::{Case, Options, Runner};
use crate::matmul::{matmul_with, tiling_for, DecodePack};

/// The projections of `model` as `(name, n, k)`.
fn projections(model: &ModelShape) -> Vec<(String, usize, usize)> {
    let h = model.hidden;
    let kv = model.n_kv_heads * model.head_dim;
    let mut p = vec![
        ("q_o".to_string(), model.n_heads * model.head_dim, h),
        ("k_v".to_string(), kv, h),
    ];
    for &i in model.intermediate {
        let tag = if model.intermediate.len() > 1 {
            i.to_string()
        } else {
            String::new()
        };
        p.push((format!("gate_up{tag}"), i, h));
        p.push((format!("down{tag}"), h, i));
    }
    if model.lm_head {
        p.push(("lm_head".to_string(), model.vocab, h));
    }
    p
}

/// The row counts `kind` runs at: decode always; prefill 64 for f32 and the
/// model's format when `quick`, 64 and 512 for every format otherwise.
fn row_counts(model: &ModelShape, kind: WeightKind, quick: bool) -> &'static [usize] {
    let own = WeightKind::of_format(model.weight_format) == Some(kind);
    match (quick, kind == WeightKind::F32 || own) {
        (false, _) => &[1, 64, 512],
        (true, true) => &[1, 64],
        (true, false) => &[1],
    }
}

/// Every matmul case of `model`.
pub(super) fn cases(model: &ModelShape, opts: &Options) -> Vec<Case> {
    let mut out = Vec::new();
    for (proj, n, k) in projections(model) {
        for kind in WeightKind::ALL {
            if !k.is_multiple_of(kind.block_elems()) {
                continue;
            }
            for &m in row_counts(model, kind, opts.quick) {
                let name = format!("{}.matmul.{}.{proj}.m{m}", model.prefix, kind.name());
                let pool = Arc::clone(&opts.pool);
                let level = opts.level;
                let seed = out.len() as u64 + 1;
                out.push(Case {
                    name,
                    model: model.id,
                    shape: format!("m={m} n={n} k={k}"),
                    flops: 2.0 * (m * n * k) as f64,
                    bytes: (kind.matrix_bytes(n, k) + 4 * m * k + 4 * m * n) as f64,
                    setup: Box::new(move || {
                        let w = OwnedWeights::random(kind, n, k, seed);
                        let tiling = tiling_for(m, &w.view()?, pool.threads());
                        let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
                        let mut y = vec![0f32; m * n];
                        let run: Runner = Box::new(move || {
                            matmul_with(&pool, level, &tiling, &x, m, &w.view()?, &mut y)
                        });
                        Ok(run)
                    }),
                });
            }
            if kind.format().is_some_and(DecodePack::takes)
                && opts.level.has_avx512()
                && k.is_multiple_of(64)
            {
                out.push(packed_decode_case(model, opts, &proj, kind, n, k));
            }
        }
    }
    out
}

/// One row against `kind` weights read through their [`DecodePack`].
fn packed_decode_case(
    model: &ModelShape,
    opts: &Options,
    proj: &str,
    kind: WeightKind,
    n: usize,
    k: usize,
) -> Case {
    let pool = Arc::clone(&opts.pool);
    let level = opts.level;
    Case {
        name: format!("{}.matmul.{}-packed.{proj}.m1", model.prefix, kind.name()),
        model: model.id,
        shape: format!("m=1 n={n} k={k}"),
        flops: 2.0 * (n * k) as f64,
        bytes: (kind.matrix_bytes(n, k) + 4 * k + 4 * n) as f64,
        setup: Box::new(move || {
            let w = OwnedWeights::random(kind, n, k, 7);
            let pack = DecodePack::new(level, &w.view()?).ok_or(
                crate::KernelError::UnsupportedFormat {
                    kernel: "matmul bench",
                    format: "a decode pack at this SIMD level",
                },
            )?;
            let tiling = tiling_for(1, &w.view()?, pool.threads());
            let x: Vec<f32> = (0..k).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
            let mut y = vec![0f32; n];
            let run: Runner = Box::new(move || {
                let packed = w.view()?.with_decode_pack(&pack)?;
                matmul_with(&pool, level, &tiling, &x, 1, &packed, &mut y)
            });
            Ok(run)
        }),
    }
}
