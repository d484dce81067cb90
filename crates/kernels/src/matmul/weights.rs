//! The weight operand `W[n, k]` of a matmul: borrowed bytes in a weight
//! format, with their shape validated once, and row-range dequantization
//! that every kernel path (reference, decode fallback, prefill packing)
//! shares.
//!
//! Layout: W is row-major `[n, k]` — row `j` holds the `k` input weights of
//! output `j` — and each row is encoded on its own:
//! - [`Weights::new`]: any [`Format`] of exodus-numerics, row `j` being
//!   bytes `j * row_bytes .. (j + 1) * row_bytes` with
//!   `row_bytes = format.encoded_len(k)` (so `k` must be a whole number of
//!   the format's blocks: 32 for Q4_0/Q4_1/Q8_0 and MX, 256 for the K
//!   formats, 128 for `fp8-block128`, 1 for element formats);
//! - [`Weights::fp8_per_row`]: E4M3 codes `[n, k]` and one f32 scale per row;
//! - [`Weights::fp8_block`]: a [`BlockFp8`] (E4M3 codes `[n, k]`, one scale
//!   per `tile_rows x tile_cols` tile, 128x128 for DeepSeek weights).

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::fp8_block::{BlockFp8, Scales};
use exodus_numerics::{bulk, e8m0, gguf, ElementFormat, Format};

use super::decode_pack::DecodePack;
use crate::error::{KernelError, Result};

const KERNEL: &str = "matmul weights";

/// Scales of a tiled FP8 matrix, row-major over the tile grid.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TileScales<'a> {
    /// f32 multipliers.
    F32(&'a [f32]),
    /// E8M0 codes of power-of-two multipliers.
    Ue8m0(&'a [u8]),
}

impl TileScales<'_> {
    fn len(&self) -> usize {
        match self {
            TileScales::F32(s) => s.len(),
            TileScales::Ue8m0(s) => s.len(),
        }
    }

    fn get(&self, i: usize) -> f32 {
        match self {
            TileScales::F32(s) => s[i],
            TileScales::Ue8m0(s) => e8m0::decode(s[i]),
        }
    }

    /// `out[t] = scale at start + t`, one match for the whole run.
    fn copy_run(&self, start: usize, out: &mut [f32]) {
        match self {
            TileScales::F32(s) => out.copy_from_slice(&s[start..start + out.len()]),
            TileScales::Ue8m0(s) => {
                let run = &s[start..start + out.len()];
                for (o, &c) in out.iter_mut().zip(run) {
                    *o = e8m0::decode(c);
                }
            }
        }
    }
}

/// How the bytes of W are stored (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) enum WeightData<'a> {
    /// Rows encoded in an exodus-numerics [`Format`].
    Encoded {
        format: Format,
        bytes: &'a [u8],
        row_bytes: usize,
    },
    /// E4M3 codes with one f32 scale per row.
    Fp8Row { codes: &'a [u8], scales: &'a [f32] },
    /// E4M3 codes with one scale per tile.
    Fp8Tiled {
        codes: &'a [u8],
        scales: TileScales<'a>,
        tile_rows: usize,
        tile_cols: usize,
    },
}

/// A validated weight matrix `W[n, k]` (row-major, one encoded row per
/// output), borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    n: usize,
    k: usize,
    data: WeightData<'a>,
    /// The same weight re-laid for the decode dots, if attached.
    decode_pack: Option<&'a DecodePack>,
}

fn bad_shape(reason: String) -> KernelError {
    KernelError::BadShape {
        kernel: KERNEL,
        reason,
    }
}

fn expect_len(what: &'static str, expected: Option<usize>, got: usize) -> Result<()> {
    match expected {
        Some(e) if e == got => Ok(()),
        Some(expected) => Err(KernelError::LengthMismatch {
            kernel: KERNEL,
            what,
            expected,
            got,
        }),
        None => Err(bad_shape(format!("{what}: shape overflows usize"))),
    }
}

impl<'a> Weights<'a> {
    /// `W[n, k]` stored as `n` rows of `k` values in `format`, back to back
    /// (`bytes.len() == n * format.encoded_len(k)`).
    ///
    /// Errors: [`KernelError::BadShape`] if `k` is not a multiple of the
    /// format's block; [`KernelError::LengthMismatch`] if `bytes` has the
    /// wrong length.
    pub fn new(format: Format, bytes: &'a [u8], n: usize, k: usize) -> Result<Self> {
        let block = format.block_elems();
        if !k.is_multiple_of(block) {
            return Err(bad_shape(format!(
                "k = {k} is not a multiple of the {block}-element block of {}",
                format.name()
            )));
        }
        let row_bytes = format.encoded_len(k, false)?;
        expect_len("weight bytes", n.checked_mul(row_bytes), bytes.len())?;
        Ok(Weights {
            n,
            k,
            data: WeightData::Encoded {
                format,
                bytes,
                row_bytes,
            },
            decode_pack: None,
        })
    }

    /// `W[n, k]` as FP8 E4M3 codes (`codes.len() == n * k`, row-major) with
    /// one f32 dequantization multiplier per row (`scales.len() == n`):
    /// `W[j, i] = e4m3(codes[j * k + i]) * scales[j]`.
    pub fn fp8_per_row(codes: &'a [u8], scales: &'a [f32], n: usize, k: usize) -> Result<Self> {
        expect_len("fp8 codes", n.checked_mul(k), codes.len())?;
        expect_len("fp8 row scales", Some(n), scales.len())?;
        Ok(Weights {
            n,
            k,
            data: WeightData::Fp8Row { codes, scales },
            decode_pack: None,
        })
    }

    /// `W[n, k]` as a block-scaled FP8 matrix (`n = m.rows`, `k = m.cols`;
    /// DeepSeek weights use 128x128 tiles, any tile shape works).
    pub fn fp8_block(m: &'a BlockFp8) -> Result<Self> {
        if m.tile_rows == 0 || m.tile_cols == 0 {
            return Err(bad_shape("fp8 block: zero tile side".to_string()));
        }
        expect_len("fp8 codes", m.rows.checked_mul(m.cols), m.values.len())?;
        let grid = m
            .rows
            .div_ceil(m.tile_rows)
            .checked_mul(m.cols.div_ceil(m.tile_cols));
        let scales = match &m.scales {
            Scales::F32(s) => TileScales::F32(s),
            Scales::Ue8m0(s) => TileScales::Ue8m0(s),
        };
        expect_len("fp8 tile scales", grid, scales.len())?;
        Ok(Weights {
            n: m.rows,
            k: m.cols,
            data: WeightData::Fp8Tiled {
                codes: &m.values,
                scales,
                tile_rows: m.tile_rows,
                tile_cols: m.tile_cols,
            },
            decode_pack: None,
        })
    }

    /// Rows of W: outputs of the matmul.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Columns of W: inputs of the matmul.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Name of the storage format ("q4_k", "fp8-e4m3-row", "fp8-e4m3-tiled", ...).
    pub fn format_name(&self) -> &'static str {
        match self.data {
            WeightData::Encoded { format, .. } => format.name(),
            WeightData::Fp8Row { .. } => "fp8-e4m3-row",
            WeightData::Fp8Tiled { .. } => "fp8-e4m3-tiled",
        }
    }

    /// Bytes of W a matmul reads: codes plus scales.
    pub fn byte_len(&self) -> usize {
        match self.data {
            WeightData::Encoded { bytes, .. } => bytes.len(),
            WeightData::Fp8Row { codes, scales } => codes.len() + 4 * scales.len(),
            WeightData::Fp8Tiled { codes, scales, .. } => {
                let per = if matches!(scales, TileScales::F32(_)) {
                    4
                } else {
                    1
                };
                codes.len() + per * scales.len()
            }
        }
    }

    /// Elements per decodable unit along k: a tiling's `kc` and any row
    /// range passed to [`dequantize_row`](Self::dequantize_row) must be
    /// multiples of it.
    pub fn k_block(&self) -> usize {
        match self.data {
            WeightData::Encoded { format, .. } => format.block_elems(),
            _ => 1,
        }
    }

    /// The same weight with `pack` attached: the decode dots of one row of
    /// x then read the pack where it covers the rows (same results, see
    /// [`DecodePack`]).
    ///
    /// Errors: [`KernelError::BadShape`] if the pack was made from a
    /// weight of another format or shape.
    pub fn with_decode_pack(self, pack: &'a DecodePack) -> Result<Self> {
        let format = match self.data {
            WeightData::Encoded { format, .. } => Some(format),
            _ => None,
        };
        if format != Some(pack.format()) || (pack.n(), pack.k()) != (self.n, self.k) {
            return Err(bad_shape(format!(
                "a decode pack of a {} [{}, {}] weight attached to a {} [{}, {}] one",
                pack.format().name(),
                pack.n(),
                pack.k(),
                self.format_name(),
                self.n,
                self.k
            )));
        }
        Ok(Weights {
            decode_pack: Some(pack),
            ..self
        })
    }

    /// The attached decode pack.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernel
    pub(crate) fn decode_pack(&self) -> Option<&'a DecodePack> {
        self.decode_pack
    }

    pub(crate) fn data(&self) -> WeightData<'a> {
        self.data
    }

    /// The encoded bytes of row `j` (only for [`WeightData::Encoded`]).
    pub(crate) fn encoded_row(&self, j: usize) -> Option<&'a [u8]> {
        match self.data {
            WeightData::Encoded {
                bytes, row_bytes, ..
            } => bytes.get(j * row_bytes..(j + 1) * row_bytes),
            _ => None,
        }
    }

    /// The encoded bytes of rows `j..j + count` and the bytes of one row
    /// (only for [`WeightData::Encoded`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernels
    pub(crate) fn encoded_rows(&self, j: usize, count: usize) -> Option<(&'a [u8], usize)> {
        match self.data {
            WeightData::Encoded {
                bytes, row_bytes, ..
            } => Some((
                bytes.get(j * row_bytes..(j + count) * row_bytes)?,
                row_bytes,
            )),
            _ => None,
        }
    }

    /// Decodes `W[j, k0..k1]` into `dst` (`k1 - k0` values) on SIMD level
    /// `level` (every level gives the same bits). `k0` must be a multiple
    /// of [`k_block`](Self::k_block), and `k1` too unless it is `k`.
    pub fn dequantize_row(
        &self,
        level: SimdLevel,
        j: usize,
        k0: usize,
        k1: usize,
        dst: &mut [f32],
    ) -> Result<()> {
        let block = self.k_block();
        if j >= self.n
            || k0 > k1
            || k1 > self.k
            || !k0.is_multiple_of(block)
            || !(k1.is_multiple_of(block) || k1 == self.k)
        {
            return Err(bad_shape(format!(
                "row range W[{j}, {k0}..{k1}] is outside [{}, {}] or not block-aligned",
                self.n, self.k
            )));
        }
        expect_len("row destination", Some(k1 - k0), dst.len())?;
        match self.data {
            WeightData::Encoded {
                format,
                bytes,
                row_bytes,
            } => {
                let start = j * row_bytes + format.encoded_len(k0, false)?;
                let end = j * row_bytes + format.encoded_len(k1, false)?;
                decode_encoded(level, format, &bytes[start..end], dst)
            }
            WeightData::Fp8Row { codes, scales } => {
                let row = &codes[j * self.k + k0..j * self.k + k1];
                bulk::decode_scaled_with(level, ElementFormat::Fp8E4M3, row, scales[j], dst)?;
                Ok(())
            }
            WeightData::Fp8Tiled {
                codes,
                scales,
                tile_rows,
                tile_cols,
            } => {
                let grid_cols = self.k.div_ceil(tile_cols);
                let tile_row = j / tile_rows;
                let mut i = k0;
                while i < k1 {
                    let tc = i / tile_cols;
                    let end = ((tc + 1) * tile_cols).min(k1);
                    let s = scales.get(tile_row * grid_cols + tc);
                    let row = &codes[j * self.k + i..j * self.k + end];
                    bulk::decode_scaled_with(
                        level,
                        ElementFormat::Fp8E4M3,
                        row,
                        s,
                        &mut dst[i - k0..end - k0],
                    )?;
                    i = end;
                }
                Ok(())
            }
        }
    }

    /// The scales of every column tile of row `j` of a tiled FP8 matrix
    /// (`out` holds one per tile column); NaN for other weights.
    pub(crate) fn tile_scales_of_row(&self, j: usize, out: &mut [f32]) {
        match self.data {
            WeightData::Fp8Tiled {
                scales, tile_rows, ..
            } => scales.copy_run((j / tile_rows) * out.len(), out),
            _ => out.fill(f32::NAN),
        }
    }
}

/// Decodes whole blocks of `format` on `level`.
fn decode_encoded(level: SimdLevel, format: Format, src: &[u8], dst: &mut [f32]) -> Result<()> {
    match format {
        Format::Element(e) => bulk::decode_with(level, e, src, dst)?,
        Format::Mx(e) => e.dequantize_with(level, src, dst)?,
        Format::Gguf(t) => gguf::dequantize_with(level, t, src, dst)?,
        Format::Fp8Block128 => {
            const TILE: usize = exodus_numerics::fp8_block::TILE;
            for (tile, out) in src.chunks_exact(4 + TILE).zip(dst.chunks_exact_mut(TILE)) {
                let scale = f32::from_le_bytes([tile[0], tile[1], tile[2], tile[3]]);
                bulk::decode_scaled_with(level, ElementFormat::Fp8E4M3, &tile[4..], scale, out)?;
            }
        }
    }
    Ok(())
}
