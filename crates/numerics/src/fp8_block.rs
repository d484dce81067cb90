//! DeepSeek-style block-scaled FP8: E4M3 values with one scale per tile —
//! 128x128 tiles for weights, 1x128 tiles for activations (as in the
//! DeepSeek-V3 FP8 checkpoints and their GEMM kernels).
//!
//! The scale `s` of a tile is the dequantization multiplier (what the
//! checkpoints call `weight_scale_inv`): `x ≈ e4m3(x / s) * s`.
//! - [`ScaleFormat::F32`]: `s = amax / 448` in `f32`;
//! - [`ScaleFormat::Ue8m0`]: `s = 2^ceil(log2(amax / 448))`, a power of two
//!   stored as an E8M0 code (the DeepSeek-V3.1 / Blackwell recipe).
//!
//! Values are `x / s` (an `f32` division, as the reference PyTorch code
//! does) rounded to nearest-even and saturated to ±448. Edge tiles may be
//! partial (`rows` and `cols` need not be multiples of the tile). Choices:
//! an all-zero tile gets `s = 1`; a NaN or Inf in a tile makes `s` NaN and
//! so the whole tile decodes to NaN.

use crate::bulk;
use crate::e8m0;
use crate::element::ElementFormat;
use crate::error::{NumericsError, Result};
use crate::minifloat::{floor_log2, pow2};
use crate::rounding::EncodeOptions;

/// Tile side used by DeepSeek.
pub const TILE: usize = 128;

/// How tile scales are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScaleFormat {
    /// `amax / 448` in f32.
    F32,
    /// A power of two, rounded up, as an E8M0 code.
    Ue8m0,
}

/// Tile scales, row-major over the tile grid.
#[derive(Debug, Clone, PartialEq)]
pub enum Scales {
    /// f32 multipliers.
    F32(Vec<f32>),
    /// E8M0 codes of power-of-two multipliers.
    Ue8m0(Vec<u8>),
}

impl Scales {
    fn get(&self, i: usize) -> f32 {
        match self {
            Scales::F32(v) => v[i],
            Scales::Ue8m0(v) => e8m0::decode(v[i]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Scales::F32(v) => v.len(),
            Scales::Ue8m0(v) => v.len(),
        }
    }
}

/// A block-scaled FP8 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockFp8 {
    /// Rows of the matrix.
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// Rows per tile (128 for weights, 1 for activations).
    pub tile_rows: usize,
    /// Columns per tile (128).
    pub tile_cols: usize,
    /// E4M3 codes, row-major `rows x cols`.
    pub values: Vec<u8>,
    /// One scale per tile, row-major over `ceil(rows/tile_rows) x ceil(cols/tile_cols)`.
    pub scales: Scales,
}

/// The scale of a tile whose largest magnitude is `amax`.
pub fn tile_scale(amax: f32, format: ScaleFormat) -> f32 {
    if amax == 0.0 {
        return 1.0;
    }
    if !amax.is_finite() {
        return f32::NAN;
    }
    match format {
        ScaleFormat::F32 => amax / 448.0,
        ScaleFormat::Ue8m0 => {
            let a = amax as f64;
            let mut k = floor_log2(a) - 8;
            while 448.0 * pow2(k) < a {
                k += 1;
            }
            pow2(k.clamp(-127, 127)) as f32
        }
    }
}

/// Quantize a `rows x cols` weight matrix with 128x128 tiles.
pub fn quantize_weight(
    src: &[f32],
    rows: usize,
    cols: usize,
    format: ScaleFormat,
) -> Result<BlockFp8> {
    quantize_tiled(src, rows, cols, TILE, TILE, format)
}

/// Quantize `rows x cols` activations with 1x128 tiles (one scale per token
/// per 128 channels).
pub fn quantize_activation(
    src: &[f32],
    rows: usize,
    cols: usize,
    format: ScaleFormat,
) -> Result<BlockFp8> {
    quantize_tiled(src, rows, cols, 1, TILE, format)
}

/// Quantize with any tile shape.
pub fn quantize_tiled(
    src: &[f32],
    rows: usize,
    cols: usize,
    tile_rows: usize,
    tile_cols: usize,
    format: ScaleFormat,
) -> Result<BlockFp8> {
    if rows.checked_mul(cols) != Some(src.len()) || tile_rows == 0 || tile_cols == 0 {
        return Err(NumericsError::BadShape {
            format: "fp8-block",
            rows,
            cols,
            len: src.len(),
        });
    }
    let grid_rows = rows.div_ceil(tile_rows);
    let grid_cols = cols.div_ceil(tile_cols);
    let mut values = vec![0u8; src.len()];
    let mut scale_f32 = Vec::with_capacity(grid_rows * grid_cols);
    let mut scaled = Vec::with_capacity(tile_cols.min(cols));
    for tr in 0..grid_rows {
        let row_range = tr * tile_rows..((tr + 1) * tile_rows).min(rows);
        for tc in 0..grid_cols {
            let col_range = tc * tile_cols..((tc + 1) * tile_cols).min(cols);
            let mut amax = 0.0f32;
            let mut any_nan = false;
            for r in row_range.clone() {
                for &x in &src[r * cols + col_range.start..r * cols + col_range.end] {
                    any_nan |= x.is_nan();
                    amax = amax.max(x.abs());
                }
            }
            let s = if any_nan {
                f32::NAN
            } else {
                tile_scale(amax, format)
            };
            for r in row_range.clone() {
                let span = r * cols + col_range.start..r * cols + col_range.end;
                scaled.clear();
                scaled.extend(src[span.clone()].iter().map(|&x| x / s));
                bulk::encode(
                    ElementFormat::Fp8E4M3,
                    &scaled,
                    &mut values[span],
                    EncodeOptions::SATURATE,
                )?;
            }
            scale_f32.push(s);
        }
    }
    let scales = match format {
        ScaleFormat::F32 => Scales::F32(scale_f32),
        ScaleFormat::Ue8m0 => Scales::Ue8m0(
            scale_f32
                .iter()
                .map(|&s| e8m0::encode(s, EncodeOptions::NONFINITE))
                .collect(),
        ),
    };
    Ok(BlockFp8 {
        rows,
        cols,
        tile_rows,
        tile_cols,
        values,
        scales,
    })
}

impl BlockFp8 {
    /// Dequantize into `dst` (`rows * cols` values).
    pub fn dequantize_into(&self, dst: &mut [f32]) -> Result<()> {
        let grid_cols = self.cols.div_ceil(self.tile_cols.max(1));
        let grid = self.rows.div_ceil(self.tile_rows.max(1)) * grid_cols;
        let n = self.rows * self.cols;
        for (what, expected, got) in [
            ("destination", n, dst.len()),
            ("values", n, self.values.len()),
            ("scales", grid, self.scales.len()),
        ] {
            if expected != got {
                return Err(NumericsError::LengthMismatch {
                    format: "fp8-block",
                    what,
                    expected,
                    got,
                });
            }
        }
        for (r, (out, codes)) in dst
            .chunks_exact_mut(self.cols.max(1))
            .zip(self.values.chunks_exact(self.cols.max(1)))
            .enumerate()
        {
            let tile_row = r / self.tile_rows;
            for (tc, (o, c)) in out
                .chunks_mut(self.tile_cols)
                .zip(codes.chunks(self.tile_cols))
                .enumerate()
            {
                let s = self.scales.get(tile_row * grid_cols + tc);
                bulk::decode_scaled(ElementFormat::Fp8E4M3, c, s, o)?;
            }
        }
        Ok(())
    }

    /// Dequantize into a new vector.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.rows * self.cols];
        self.dequantize_into(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_tiles_with_ragged_edges() {
        let (rows, cols) = (130, 200);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        for format in [ScaleFormat::F32, ScaleFormat::Ue8m0] {
            let q = quantize_weight(&x, rows, cols, format).unwrap();
            assert_eq!(q.scales.len(), 2 * 2);
            let y = q.dequantize().unwrap();
            for (a, b) in x.iter().zip(&y) {
                // E4M3 has 3 mantissa bits: relative error <= 2^-4 of the tile amax scale.
                assert!((a - b).abs() <= 5.0 * 2f32.powi(-4), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn ue8m0_scales_are_powers_of_two_rounded_up() {
        assert_eq!(tile_scale(448.0, ScaleFormat::Ue8m0), 1.0);
        assert_eq!(tile_scale(449.0, ScaleFormat::Ue8m0), 2.0);
        assert_eq!(tile_scale(1.0, ScaleFormat::Ue8m0), 2f32.powi(-8));
        assert_eq!(tile_scale(0.0, ScaleFormat::F32), 1.0);
    }

    #[test]
    fn nan_poisons_its_tile_only() {
        let mut x = vec![1.0f32; 2 * 128];
        x[3] = f32::NAN;
        let q = quantize_activation(&x, 2, 128, ScaleFormat::F32).unwrap();
        let y = q.dequantize().unwrap();
        assert!(y[..128].iter().all(|v| v.is_nan()));
        assert!(y[128..].iter().all(|v| *v == 1.0));
    }

    #[test]
    fn bad_shape_is_an_error() {
        assert!(quantize_weight(&[0.0; 10], 3, 3, ScaleFormat::F32).is_err());
    }
}
