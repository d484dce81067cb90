//! Weights packed once for the prefill regime, so that repeated calls
//! (every prompt a model sees) skip the per-call packing: dequantizing W
//! into the f32 GEMM's B panels, or repacking it into the integer GEMM's
//! groups. That packing is 12-25% of an f32 prefill at the benchmark shapes
//! (docs/benchmarks.md) and most of a small quantized one.
//!
//! [`PackedWeights::new`] picks the form the prefill path of `level` reads:
//! the AVX-512 VNNI groups for Q4_0 / Q4_1 / Q8_0 / Q4_K / MXFP4 (about
//! 1.25x the Q4 size), otherwise the f32 B panels for the given tiling's
//! `kc` and `nc` (4 bytes per weight: meant for f32 or small matrices; a
//! quantized 7B model would grow fourfold). [`matmul_prepacked`] then
//! runs exactly the kernels [`matmul_with`](super::matmul_with) runs, minus
//! the packing; the decode regime streams `W` itself and ignores the pack.

use exodus_numerics::cpu::SimdLevel;

use super::prefill::{self, Panels};
use super::weights::Weights;
#[cfg(target_arch = "x86_64")]
use super::Simd;
use super::{decode, int8_prefill, preflight};
use crate::error::{KernelError, Result};
use crate::pool::ThreadPool;
use crate::tiling::{Regime, Tiling};

/// The packed form.
enum Form {
    /// AVX-512 VNNI integer groups (`int8_prefill.rs`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Int8(Vec<int8_prefill::Group>),
    /// Every f32 B panel for depth `kc` and width `nc`.
    F32 {
        kc: usize,
        nc: usize,
        panels: Vec<f32>,
    },
}

/// A weight matrix packed for the prefill GEMM of one SIMD level.
pub struct PackedWeights {
    n: usize,
    k: usize,
    format: &'static str,
    level: SimdLevel,
    form: Form,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("format", &self.format)
            .field("level", &self.level)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl PackedWeights {
    /// Packs `w` for the prefill path of `level` with `tiling` (its `kc`
    /// and `nc` fix the f32 panels' layout; the integer form does not
    /// depend on the tiling).
    pub fn new(pool: &ThreadPool, level: SimdLevel, tiling: &Tiling, w: &Weights) -> Result<Self> {
        tiling.check(w.k_block())?;
        let form = match int8_form(level, w) {
            Some(kind) => {
                let mut groups = Vec::new();
                int8_prefill::pack(pool, kind, w, &mut groups)?;
                Form::Int8(groups)
            }
            None => Form::F32 {
                kc: tiling.kc,
                nc: tiling.nc,
                panels: prefill::pack_all(pool, level, tiling, w)?,
            },
        };
        Ok(PackedWeights {
            n: w.n(),
            k: w.k(),
            format: w.format_name(),
            level,
            form,
        })
    }

    /// Bytes the packed form holds.
    pub fn bytes(&self) -> usize {
        match &self.form {
            Form::Int8(groups) => groups
                .iter()
                .map(|g| g.codes.len() + 4 * (g.scales.len() + g.offsets.len()))
                .sum(),
            Form::F32 { panels, .. } => 4 * panels.len(),
        }
    }

    /// Checks that this pack was made from a matrix like `w` for `level`
    /// and, for the f32 form, `tiling`'s panel shape.
    fn check(&self, level: SimdLevel, tiling: &Tiling, w: &Weights) -> Result<()> {
        let mismatch = |reason: String| {
            Err(KernelError::BadShape {
                kernel: "matmul_prepacked",
                reason,
            })
        };
        if (self.n, self.k) != (w.n(), w.k()) || self.format != w.format_name() {
            return mismatch(format!(
                "packed {} [{}, {}], weights {} [{}, {}]",
                self.format,
                self.n,
                self.k,
                w.format_name(),
                w.n(),
                w.k()
            ));
        }
        if self.level != level {
            return mismatch(format!(
                "packed for {}, called at {}",
                self.level.name(),
                level.name()
            ));
        }
        if let Form::F32 { kc, nc, .. } = self.form {
            if (kc, nc) != (tiling.kc, tiling.nc) {
                return mismatch(format!(
                    "packed for kc {kc}, nc {nc}; the tiling has kc {}, nc {}",
                    tiling.kc, tiling.nc
                ));
            }
        }
        Ok(())
    }
}

/// The integer kind the prefill of `level` uses for `w`, if any.
fn int8_form(level: SimdLevel, w: &Weights) -> Option<int8_prefill::Int8Kind> {
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = Simd::new(level) {
        return int8_prefill::Int8Kind::of(w);
    }
    let _ = (level, w);
    None
}

/// [`matmul_with`](super::matmul_with) with the prefill reading `packed`
/// (made by [`PackedWeights::new`] from `w` for this `level` and, for the
/// f32 form, a tiling with the same `kc` and `nc`) instead of packing W on
/// this call. Same results, bit for bit.
///
/// Errors: those of `matmul_with`, and [`KernelError::BadShape`] when
/// `packed` was made from another shape or format, for another level, or
/// for other panel sizes.
#[allow(clippy::too_many_arguments)]
pub fn matmul_prepacked(
    pool: &ThreadPool,
    level: SimdLevel,
    tiling: &Tiling,
    x: &[f32],
    rows: usize,
    w: &Weights,
    packed: &PackedWeights,
    out: &mut [f32],
) -> Result<()> {
    packed.check(level, tiling, w)?;
    if !preflight(tiling, x, rows, w, out)? {
        return Ok(());
    }
    match (tiling.regime, &packed.form) {
        (Regime::Decode, _) => decode::decode(pool, level, tiling, x, rows, w, out),
        (Regime::Prefill, Form::F32 { panels, .. }) => {
            prefill::prefill_f32(pool, level, tiling, x, rows, w, out, Panels::Packed(panels))
        }
        #[cfg(target_arch = "x86_64")]
        (Regime::Prefill, Form::Int8(groups)) => {
            let Simd::Avx512(t) = Simd::new(level) else {
                return unreachable_level();
            };
            let kernel = int8_prefill::TileKernel::Vnni(t);
            int8_prefill::prefill_groups(pool, kernel, x, rows, w, out, groups)
        }
        #[cfg(not(target_arch = "x86_64"))]
        (Regime::Prefill, Form::Int8(_)) => unreachable_level(),
    }
}

/// An integer pack exists only for a level that runs it (checked above).
fn unreachable_level() -> Result<()> {
    Err(KernelError::BadShape {
        kernel: "matmul_prepacked",
        reason: "an integer pack for a level without the integer GEMM".into(),
    })
}
