//! One name per format, as used everywhere on the command line, with a
//! description of each and quantize/dequantize over byte buffers.
//!
//! Byte layouts:
//! - element formats: one code per element, little-endian (f32: 4 bytes,
//!   f16/bf16: 2, the 8-bit formats: 1, FP6/FP4: 1 byte per code unless
//!   [`QuantizeOptions::packed`], then packed as in [`crate::pack`]);
//! - MX formats: blocks as in [`crate::mx`];
//! - `fp8-block128`: 1x128 activation tiles (see [`crate::fp8_block`]),
//!   each stored as its f32 scale (little-endian) followed by 128 E4M3
//!   codes, 132 bytes a tile; `--scale-rule ceil` makes the scales powers
//!   of two (UE8M0), `floor` (the default) keeps `amax / 448` exactly;
//! - GGUF formats: ggml's block structs, back to back.

use std::fmt;
use std::str::FromStr;

use crate::element::ElementFormat;
use crate::error::{NumericsError, Result};
use crate::fp8_block::{self, ScaleFormat};
use crate::gguf::{self, GgufBlockType};
use crate::mx::{MxElement, ScaleRule};
use crate::pack::{self, packed_len};
use crate::rounding::{EncodeOptions, Overflow, Rounding};
use crate::{bulk, minifloat};

/// Every format exodus can convert to and from f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One value per code.
    Element(ElementFormat),
    /// OCP MX block of 32 with an E8M0 scale.
    Mx(MxElement),
    /// DeepSeek-style FP8 E4M3 with one scale per 128 values.
    Fp8Block128,
    /// A GGUF quant block.
    Gguf(GgufBlockType),
}

/// Options for [`Format::quantize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuantizeOptions {
    /// Tie-breaking for element formats.
    pub rounding: Rounding,
    /// Overflow policy for element formats (block formats always saturate).
    pub overflow: Overflow,
    /// Scale rule for MX and `fp8-block128`.
    pub scale_rule: ScaleRule,
    /// Pack sub-byte element codes (FP6, FP4) instead of one per byte.
    pub packed: bool,
}

/// What `exodus formats` prints about a format.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatInfo {
    /// Command-line name.
    pub name: &'static str,
    /// "element", "mx", "block-fp8" or "gguf".
    pub kind: &'static str,
    /// Storage bits per value, scales included.
    pub bits_per_value: f64,
    /// Exponent bits of the (element) format, if it has an exponent field.
    pub exp_bits: Option<u32>,
    /// Mantissa bits of the (element) format.
    pub man_bits: Option<u32>,
    /// Exponent bias.
    pub bias: Option<i32>,
    /// Largest finite element value (before any block scale).
    pub max_finite: f64,
    /// Smallest positive normal element value.
    pub min_normal: Option<f64>,
    /// Smallest positive subnormal element value.
    pub min_subnormal: Option<f64>,
    /// Values sharing a scale (1 for element formats).
    pub block_size: usize,
    /// Bytes needed for 32 values (block formats: pro rata).
    pub bytes_per_32: f64,
    /// Infinity: "yes" or "no".
    pub has_inf: bool,
    /// NaN: "yes" or "no".
    pub has_nan: bool,
    /// Whether exodus can quantize to it (all can be dequantized).
    pub can_quantize: bool,
}

impl Format {
    /// Every format, in the order of the command-line documentation.
    pub fn all() -> Vec<Format> {
        let mut all: Vec<Format> = ElementFormat::ALL
            .iter()
            .map(|&e| Format::Element(e))
            .collect();
        all.extend(MxElement::ALL.iter().map(|&e| Format::Mx(e)));
        all.push(Format::Fp8Block128);
        all.extend(GgufBlockType::ALL.iter().map(|&t| Format::Gguf(t)));
        all
    }

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Element(e) => e.name(),
            Format::Mx(e) => e.name(),
            Format::Fp8Block128 => "fp8-block128",
            Format::Gguf(t) => t.name(),
        }
    }

    /// Values per block (1 for element formats).
    pub fn block_elems(self) -> usize {
        match self {
            Format::Element(_) => 1,
            Format::Mx(_) => crate::mx::BLOCK,
            Format::Fp8Block128 => fp8_block::TILE,
            Format::Gguf(t) => t.block_elems(),
        }
    }

    fn check_whole_blocks(self, values: usize) -> Result<usize> {
        let block = self.block_elems();
        if !values.is_multiple_of(block) {
            return Err(NumericsError::RaggedBlocks {
                format: self.name(),
                len: values,
                block,
            });
        }
        Ok(values / block)
    }

    /// Bytes that `values` values take in this format.
    pub fn encoded_len(self, values: usize, packed: bool) -> Result<usize> {
        let blocks = self.check_whole_blocks(values)?;
        Ok(match self {
            Format::Element(e) if packed && e.bits() < 8 => packed_len(e.bits(), values),
            Format::Element(e) => values * e.unpacked_bytes(),
            Format::Mx(e) => blocks * e.block_bytes(),
            Format::Fp8Block128 => blocks * (4 + fp8_block::TILE),
            Format::Gguf(t) => blocks * t.block_bytes(),
        })
    }

    /// How many values `bytes` bytes hold, or an error if it is not a whole
    /// number of blocks (packed FP4/FP6: every full code in the bytes).
    pub fn values_in(self, bytes: usize, packed: bool) -> Result<usize> {
        let (block_bytes, block_elems) = match self {
            Format::Element(e) if packed && e.bits() < 8 => {
                return Ok(bytes * 8 / e.bits() as usize);
            }
            Format::Element(e) => (e.unpacked_bytes(), 1),
            Format::Mx(e) => (e.block_bytes(), crate::mx::BLOCK),
            Format::Fp8Block128 => (4 + fp8_block::TILE, fp8_block::TILE),
            Format::Gguf(t) => (t.block_bytes(), t.block_elems()),
        };
        if !bytes.is_multiple_of(block_bytes) {
            return Err(NumericsError::RaggedBytes {
                format: self.name(),
                len: bytes,
                block_bytes,
            });
        }
        Ok(bytes / block_bytes * block_elems)
    }

    /// Quantize `src` into a new buffer.
    pub fn quantize(self, src: &[f32], opts: &QuantizeOptions) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.encoded_len(src.len(), opts.packed)?];
        self.quantize_into(src, &mut out, opts)?;
        Ok(out)
    }

    /// Quantize `src` into `dst` (exactly [`encoded_len`](Self::encoded_len) bytes).
    pub fn quantize_into(self, src: &[f32], dst: &mut [u8], opts: &QuantizeOptions) -> Result<()> {
        let expected = self.encoded_len(src.len(), opts.packed)?;
        if dst.len() != expected {
            return Err(NumericsError::LengthMismatch {
                format: self.name(),
                what: "destination",
                expected,
                got: dst.len(),
            });
        }
        let element_opts = EncodeOptions {
            rounding: opts.rounding,
            overflow: opts.overflow,
        };
        match self {
            Format::Element(e) if opts.packed && e.bits() < 8 => {
                let mut codes = vec![0u8; src.len()];
                bulk::encode(e, src, &mut codes, element_opts)?;
                pack::pack(e.bits(), &codes, dst)
            }
            Format::Element(e) => bulk::encode(e, src, dst, element_opts),
            Format::Mx(e) => e.quantize(opts.scale_rule, src, dst),
            Format::Fp8Block128 => {
                let scale_format = match opts.scale_rule {
                    ScaleRule::Floor => ScaleFormat::F32,
                    ScaleRule::Ceil => ScaleFormat::Ue8m0,
                };
                let tiles = src.len() / fp8_block::TILE;
                let q = fp8_block::quantize_activation(src, tiles, fp8_block::TILE, scale_format)?;
                for (t, out) in dst.chunks_exact_mut(4 + fp8_block::TILE).enumerate() {
                    let scale = match &q.scales {
                        fp8_block::Scales::F32(s) => s[t],
                        fp8_block::Scales::Ue8m0(s) => crate::e8m0::decode(s[t]),
                    };
                    out[..4].copy_from_slice(&scale.to_le_bytes());
                    out[4..]
                        .copy_from_slice(&q.values[t * fp8_block::TILE..(t + 1) * fp8_block::TILE]);
                }
                Ok(())
            }
            Format::Gguf(t) => gguf::quantize(t, src, dst),
        }
    }

    /// Dequantize `values` values from `src`.
    pub fn dequantize(self, src: &[u8], values: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; values];
        self.dequantize_into(src, &mut out, false)?;
        Ok(out)
    }

    /// Dequantize `src` into `dst` (`dst.len()` values; `packed` as for quantize).
    pub fn dequantize_into(self, src: &[u8], dst: &mut [f32], packed: bool) -> Result<()> {
        let expected = self.encoded_len(dst.len(), packed)?;
        if src.len() != expected {
            return Err(NumericsError::LengthMismatch {
                format: self.name(),
                what: "encoded buffer",
                expected,
                got: src.len(),
            });
        }
        match self {
            Format::Element(e) if packed && e.bits() < 8 => {
                let mut codes = vec![0u8; dst.len()];
                pack::unpack(e.bits(), src, &mut codes)?;
                bulk::decode(e, &codes, dst)
            }
            Format::Element(e) => bulk::decode(e, src, dst),
            Format::Mx(e) => e.dequantize(src, dst),
            Format::Fp8Block128 => {
                for (tile, out) in src
                    .chunks_exact(4 + fp8_block::TILE)
                    .zip(dst.chunks_exact_mut(fp8_block::TILE))
                {
                    let scale = f32::from_le_bytes([tile[0], tile[1], tile[2], tile[3]]);
                    bulk::decode_scaled(ElementFormat::Fp8E4M3, &tile[4..], scale, out)?;
                }
                Ok(())
            }
            Format::Gguf(t) => gguf::dequantize(t, src, dst),
        }
    }

    /// Whether exodus can quantize to this format.
    pub fn can_quantize(self) -> bool {
        match self {
            Format::Gguf(t) => t.can_quantize(),
            _ => true,
        }
    }

    /// The description printed by `exodus formats`.
    pub fn info(self) -> FormatInfo {
        let per_32 =
            |bytes_per_block: usize, block: usize| bytes_per_block as f64 * 32.0 / block as f64;
        let from_minifloat =
            |m: &minifloat::MiniFloat, kind, block: usize, bytes_per_32: f64| FormatInfo {
                name: self.name(),
                kind,
                bits_per_value: bytes_per_32 * 8.0 / 32.0,
                exp_bits: Some(m.exp_bits),
                man_bits: Some(m.man_bits),
                bias: Some(m.bias),
                max_finite: m.max_finite(),
                min_normal: Some(m.min_normal()),
                min_subnormal: Some(m.min_subnormal()),
                block_size: block,
                bytes_per_32,
                has_inf: m.has_inf(),
                has_nan: m.has_nan() || kind == "mx",
                can_quantize: true,
            };
        match self {
            Format::Element(e) => {
                if let Some(m) = e.minifloat() {
                    return from_minifloat(m, "element", 1, e.bits() as f64 * 4.0);
                }
                let (exp_bits, man_bits, bias, max, min_normal, min_sub, inf) = match e {
                    ElementFormat::F32 => (
                        8,
                        23,
                        127,
                        f32::MAX as f64,
                        2f64.powi(-126),
                        2f64.powi(-149),
                        true,
                    ),
                    ElementFormat::F16 => {
                        (5, 10, 15, 65504.0, 2f64.powi(-14), 2f64.powi(-24), true)
                    }
                    ElementFormat::Bf16 => (
                        8,
                        7,
                        127,
                        half::bf16::MAX.to_f64(),
                        2f64.powi(-126),
                        2f64.powi(-133),
                        true,
                    ),
                    ElementFormat::E8M0 => {
                        (8, 0, 127, 2f64.powi(127), 2f64.powi(-127), f64::NAN, false)
                    }
                    _ => (4, 3, 15, 32768.0, 2f64.powi(-15), 2f64.powi(-22), true), // HiF8 (tapered)
                };
                // HiF8 is tapered: 0-4 exponent and 1-3 mantissa bits, no bias.
                let tapered = e == ElementFormat::HiF8;
                FormatInfo {
                    name: self.name(),
                    kind: "element",
                    bits_per_value: e.bits() as f64,
                    exp_bits: (!tapered).then_some(exp_bits),
                    man_bits: (!tapered).then_some(man_bits),
                    bias: (!tapered).then_some(bias),
                    max_finite: max,
                    min_normal: Some(min_normal),
                    min_subnormal: (!min_sub.is_nan()).then_some(min_sub),
                    block_size: 1,
                    bytes_per_32: e.bits() as f64 * 4.0,
                    has_inf: inf,
                    has_nan: true,
                    can_quantize: true,
                }
            }
            Format::Mx(e) => match e.minifloat() {
                Some(m) => from_minifloat(m, "mx", 32, e.block_bytes() as f64),
                None => FormatInfo {
                    name: self.name(),
                    kind: "mx",
                    bits_per_value: e.block_bytes() as f64 * 8.0 / 32.0,
                    exp_bits: None,
                    man_bits: Some(6),
                    bias: None,
                    max_finite: 127.0 / 64.0,
                    min_normal: None,
                    min_subnormal: Some(1.0 / 64.0),
                    block_size: 32,
                    bytes_per_32: e.block_bytes() as f64,
                    has_inf: false,
                    has_nan: true,
                    can_quantize: true,
                },
            },
            Format::Fp8Block128 => {
                let bytes = per_32(4 + fp8_block::TILE, fp8_block::TILE);
                from_minifloat(&minifloat::FP8_E4M3, "block-fp8", fp8_block::TILE, bytes)
            }
            Format::Gguf(t) => {
                let bytes_per_32 = per_32(t.block_bytes(), t.block_elems());
                FormatInfo {
                    name: self.name(),
                    kind: "gguf",
                    bits_per_value: bytes_per_32 * 8.0 / 32.0,
                    exp_bits: None,
                    man_bits: None,
                    bias: None,
                    max_finite: 65504.0,
                    min_normal: None,
                    min_subnormal: None,
                    block_size: t.block_elems(),
                    bytes_per_32,
                    has_inf: true,
                    has_nan: true,
                    can_quantize: t.can_quantize(),
                }
            }
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = NumericsError;

    fn from_str(name: &str) -> Result<Self> {
        let wanted = name.trim().to_ascii_lowercase();
        Format::all()
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| NumericsError::UnknownFormat(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_parses_and_round_trips() {
        let names = "f32 f16 bf16 fp8-e4m3 fp8-e5m2 fp6-e2m3 fp6-e3m2 fp4-e2m1 e8m0 hif8 \
            mxfp8-e4m3 mxfp8-e5m2 mxfp6-e2m3 mxfp6-e3m2 mxfp4 mxint8 fp8-block128 \
            q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k q8_k";
        let parsed: Vec<Format> = names
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(parsed, Format::all());
        for f in parsed {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert!(matches!(
            "q4_9".parse::<Format>(),
            Err(NumericsError::UnknownFormat(_))
        ));
    }

    #[test]
    fn lengths() {
        let fp4: Format = "fp4-e2m1".parse().unwrap();
        assert_eq!(fp4.encoded_len(5, true).unwrap(), 3);
        assert_eq!(fp4.encoded_len(5, false).unwrap(), 5);
        let mx: Format = "mxfp6-e3m2".parse().unwrap();
        assert_eq!(mx.encoded_len(64, false).unwrap(), 50);
        assert!(mx.encoded_len(33, false).is_err());
        assert!(mx.values_in(49, false).is_err());
        assert_eq!(Format::Fp8Block128.values_in(264, false).unwrap(), 256);
    }

    #[test]
    fn fp8_block128_round_trip() {
        let x: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) * 0.37).collect();
        for rule in [ScaleRule::Floor, ScaleRule::Ceil] {
            let opts = QuantizeOptions {
                scale_rule: rule,
                ..Default::default()
            };
            let q = Format::Fp8Block128.quantize(&x, &opts).unwrap();
            let y = Format::Fp8Block128.dequantize(&q, 256).unwrap();
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= a.abs() / 16.0 + 1e-3, "{a} {b}");
            }
        }
    }
}
