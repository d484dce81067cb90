//! OCP Microscaling (MX v1.0) block formats: 32 elements sharing one E8M0
//! scale.
//!
//! # Storage layout
//! A block is `1 + packed_len(element bits, 32)` bytes: the E8M0 scale byte
//! first, then the 32 element codes packed as in [`crate::pack`] (MXFP8 and
//! MXINT8: 32 bytes; MXFP6: 24 bytes; MXFP4: 16 bytes, element `2j` in the
//! low nibble of byte `j`). A tensor is its blocks back to back.
//!
//! # Quantization
//! With the OCP rule ([`ScaleRule::Floor`], the specification's section
//! 6.3) the shared exponent is `floor(log2(amax)) - emax_elem`, where `amax`
//! is the largest magnitude in the block and `emax_elem` the exponent of
//! the element type's largest normal (E4M3 8, E5M2 15, E3M2 4, E2M3 2,
//! E2M1 2, INT8 0). Each element is then `V / 2^shared_exp` rounded to
//! nearest-even and saturated to the element's largest magnitude. Values
//! above `max_elem * 2^shared_exp` are clipped by this rule; that is the
//! specification's trade-off.
//!
//! The round-up rule ([`ScaleRule::Ceil`], used by NVIDIA's and DeepSeek's
//! recipes) picks the smallest power of two `2^k` with
//! `max_elem * 2^k >= amax`, so no element is clipped.
//!
//! Cases the rules meet, and what exodus does (the reference script
//! `scripts/golden/mx_reference.py` implements the same):
//! - a NaN or ±Inf anywhere in the block: the scale is NaN (`0xFF`) and the
//!   element codes are zero; the whole block decodes to NaN, as the
//!   specification says for a NaN scale;
//! - an all-zero block: scale code `0x00` (`2^-127`, the exponent clamped at
//!   the bottom of E8M0) and zero elements (signs of zeros kept for the FP
//!   element types);
//! - shared exponents below -127 are clamped to -127 (E8M0's smallest);
//! - MXINT8 elements are two's complement with an implicit `2^-6`,
//!   rounded to nearest-even and clamped to `[-127, 127]`; the code `-128`
//!   decodes to -2.0 but is never produced.
//!
//! Dequantization multiplies the decoded element by the decoded scale in
//! `f32`.

use crate::blocks::BlockShape;
use crate::bulk;
use crate::cpu::SimdLevel;
use crate::e8m0;
use crate::element::ElementFormat;
use crate::error::{NumericsError, Result};
use crate::minifloat::{self, floor_log2, pow2, MiniFloat};
use crate::pack::{self, packed_len};
use crate::rounding::EncodeOptions;

/// Elements that share one scale.
pub const BLOCK: usize = 32;

/// How the shared scale of a block is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ScaleRule {
    /// OCP MX v1.0: `2^(floor(log2(amax)) - emax_elem)`.
    #[default]
    Floor,
    /// Round up: `2^ceil(log2(amax / max_elem))`; nothing is clipped.
    Ceil,
}

impl ScaleRule {
    /// Parse a command-line name: `floor` or `ceil`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "floor" | "ocp" => Ok(ScaleRule::Floor),
            "ceil" | "round-up" => Ok(ScaleRule::Ceil),
            _ => Err(NumericsError::UnknownOption {
                what: "scale rule",
                value: name.to_string(),
                expected: "floor, ceil",
            }),
        }
    }
}

/// The element type of an MX format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MxElement {
    /// MXFP8 with E4M3 elements.
    Fp8E4M3,
    /// MXFP8 with E5M2 elements.
    Fp8E5M2,
    /// MXFP6 with E2M3 elements.
    Fp6E2M3,
    /// MXFP6 with E3M2 elements.
    Fp6E3M2,
    /// MXFP4 (E2M1 elements).
    Fp4E2M1,
    /// MXINT8 (int8 elements, implicit scale 2^-6).
    Int8,
}

impl MxElement {
    /// Every MX element type.
    pub const ALL: [MxElement; 6] = [
        MxElement::Fp8E4M3,
        MxElement::Fp8E5M2,
        MxElement::Fp6E2M3,
        MxElement::Fp6E3M2,
        MxElement::Fp4E2M1,
        MxElement::Int8,
    ];

    /// Command-line name of the block format.
    pub fn name(self) -> &'static str {
        match self {
            MxElement::Fp8E4M3 => "mxfp8-e4m3",
            MxElement::Fp8E5M2 => "mxfp8-e5m2",
            MxElement::Fp6E2M3 => "mxfp6-e2m3",
            MxElement::Fp6E3M2 => "mxfp6-e3m2",
            MxElement::Fp4E2M1 => "mxfp4",
            MxElement::Int8 => "mxint8",
        }
    }

    /// The floating-point element format, `None` for MXINT8.
    pub fn minifloat(self) -> Option<&'static MiniFloat> {
        match self {
            MxElement::Fp8E4M3 => Some(&minifloat::FP8_E4M3),
            MxElement::Fp8E5M2 => Some(&minifloat::FP8_E5M2),
            MxElement::Fp6E2M3 => Some(&minifloat::FP6_E2M3),
            MxElement::Fp6E3M2 => Some(&minifloat::FP6_E3M2),
            MxElement::Fp4E2M1 => Some(&minifloat::FP4_E2M1),
            MxElement::Int8 => None,
        }
    }

    /// Bits per element code.
    pub fn bits(self) -> u32 {
        self.minifloat().map_or(8, MiniFloat::bits)
    }

    /// Bytes per 32-element block (scale included).
    pub fn block_bytes(self) -> usize {
        1 + packed_len(self.bits(), BLOCK)
    }

    /// Exponent of the element type's largest normal value.
    pub fn emax(self) -> i32 {
        self.minifloat().map_or(0, MiniFloat::emax)
    }

    /// Largest element magnitude.
    pub fn max_value(self) -> f64 {
        self.minifloat().map_or(127.0 / 64.0, MiniFloat::max_finite)
    }

    /// Decode one element code (without the block scale).
    pub fn decode_element(self, code: u8) -> f32 {
        match self.minifloat() {
            Some(m) => m.decode(code),
            None => code as i8 as f32 / 64.0,
        }
    }

    fn encode_element(self, x: f64) -> u8 {
        match self.minifloat() {
            Some(m) => m.encode_f64(x, EncodeOptions::SATURATE),
            None => (x * 64.0).round_ties_even().clamp(-127.0, 127.0) as i8 as u8,
        }
    }

    /// The shared exponent of a block with largest magnitude `amax`
    /// (finite, non-negative) under `rule`, clamped to E8M0's range.
    pub fn shared_exponent(self, amax: f32, rule: ScaleRule) -> i32 {
        let amax = amax as f64;
        if amax == 0.0 {
            return -e8m0::BIAS;
        }
        let k = match rule {
            ScaleRule::Floor => floor_log2(amax) - self.emax(),
            ScaleRule::Ceil => {
                // Smallest k with max_elem * 2^k >= amax; both sides exact.
                let max = self.max_value();
                let mut k = floor_log2(amax) - floor_log2(max);
                while max * pow2(k) < amax {
                    k += 1;
                }
                while max * pow2(k - 1) >= amax {
                    k -= 1;
                }
                k
            }
        };
        k.clamp(-e8m0::BIAS, e8m0::BIAS)
    }

    /// The element format, `None` for MXINT8.
    pub fn element_format(self) -> Option<ElementFormat> {
        match self {
            MxElement::Fp8E4M3 => Some(ElementFormat::Fp8E4M3),
            MxElement::Fp8E5M2 => Some(ElementFormat::Fp8E5M2),
            MxElement::Fp6E2M3 => Some(ElementFormat::Fp6E2M3),
            MxElement::Fp6E3M2 => Some(ElementFormat::Fp6E3M2),
            MxElement::Fp4E2M1 => Some(ElementFormat::Fp4E2M1),
            MxElement::Int8 => None,
        }
    }

    /// Quantize one block of 32 values into `out` (`block_bytes` long).
    ///
    /// The scalar level is the reference: each element is divided by the
    /// scale in f64 and rounded once. Other levels multiply by `2^-k` in f32
    /// (exact, except for results below f32's normal range, which are far
    /// below every element type's smallest step and encode to a signed zero
    /// either way) and use the SIMD element encoder.
    fn quantize_block(
        self,
        level: SimdLevel,
        rule: ScaleRule,
        src: &[f32],
        out: &mut [u8],
    ) -> Result<()> {
        let mut codes = [0u8; BLOCK];
        if src.iter().any(|x| !x.is_finite()) {
            out[0] = e8m0::NAN;
        } else {
            let amax = src.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let k = self.shared_exponent(amax, rule);
            out[0] = (k + e8m0::BIAS) as u8;
            match self.element_format() {
                Some(format) if level != SimdLevel::Scalar => {
                    let inv = pow2(-k) as f32;
                    let scaled: [f32; BLOCK] = std::array::from_fn(|i| src[i] * inv);
                    bulk::encode_with(level, format, &scaled, &mut codes, EncodeOptions::SATURATE)?;
                }
                _ => {
                    let inv = pow2(-k);
                    for (code, &x) in codes.iter_mut().zip(src) {
                        *code = self.encode_element(x as f64 * inv);
                    }
                }
            }
        }
        pack::pack(self.bits(), &codes, &mut out[1..])
    }

    /// Quantize `src` (a whole number of 32-element blocks) into `dst` on
    /// the active SIMD level.
    pub fn quantize(self, rule: ScaleRule, src: &[f32], dst: &mut [u8]) -> Result<()> {
        self.quantize_with(crate::cpu::active(), rule, src, dst)
    }

    /// Quantize on a given SIMD level (bit-identical on every level).
    pub fn quantize_with(
        self,
        level: SimdLevel,
        rule: ScaleRule,
        src: &[f32],
        dst: &mut [u8],
    ) -> Result<()> {
        let blocks = self.shape().blocks_for_values(src.len(), dst.len())?;
        for (block, out) in src
            .chunks_exact(BLOCK)
            .zip(dst.chunks_exact_mut(self.block_bytes()))
            .take(blocks)
        {
            self.quantize_block(level, rule, block, out)?;
        }
        Ok(())
    }

    /// Dequantize `src` (whole blocks) into `dst` (32 values per block) on
    /// the active SIMD level.
    pub fn dequantize(self, src: &[u8], dst: &mut [f32]) -> Result<()> {
        self.dequantize_with(crate::cpu::active(), src, dst)
    }

    /// Dequantize on a given SIMD level (an unsupported level, or an element
    /// type without a SIMD kernel, runs the scalar path).
    pub fn dequantize_with(self, level: SimdLevel, src: &[u8], dst: &mut [f32]) -> Result<()> {
        self.shape().blocks_for_bytes(src.len(), dst.len())?;
        #[cfg(target_arch = "x86_64")]
        if level.has_avx2() {
            use crate::simd::x86;
            match (self, self.minifloat()) {
                (MxElement::Fp4E2M1, _) => {
                    x86::mx_dequantize_fp4(src, dst);
                    return Ok(());
                }
                (MxElement::Fp8E4M3 | MxElement::Fp8E5M2, Some(m)) => {
                    x86::mx_dequantize_fp8(m, src, dst);
                    return Ok(());
                }
                _ => {}
            }
        }
        let _ = level;
        self.dequantize_scalar(src, dst)
    }

    /// Dequantize `src` (whole blocks) into `dst` (32 values per block),
    /// on the scalar reference path.
    pub fn dequantize_scalar(self, src: &[u8], dst: &mut [f32]) -> Result<()> {
        self.shape().blocks_for_bytes(src.len(), dst.len())?;
        let table: [f32; 256] = std::array::from_fn(|c| self.decode_element(c as u8));
        let mut codes = [0u8; BLOCK];
        for (block, out) in src
            .chunks_exact(self.block_bytes())
            .zip(dst.chunks_exact_mut(BLOCK))
        {
            let scale = e8m0::decode(block[0]);
            pack::unpack(self.bits(), &block[1..], &mut codes)?;
            for (o, &c) in out.iter_mut().zip(&codes) {
                *o = table[c as usize] * scale;
            }
        }
        Ok(())
    }

    fn shape(self) -> BlockShape {
        BlockShape {
            format: self.name(),
            elems: BLOCK,
            bytes: self.block_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: MxElement, rule: ScaleRule, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let mut q = vec![0u8; x.len() / BLOCK * e.block_bytes()];
        e.quantize(rule, x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        e.dequantize_scalar(&q, &mut y).unwrap();
        (q, y)
    }

    #[test]
    fn block_sizes() {
        assert_eq!(MxElement::Fp8E4M3.block_bytes(), 33);
        assert_eq!(MxElement::Fp6E3M2.block_bytes(), 25);
        assert_eq!(MxElement::Fp4E2M1.block_bytes(), 17);
        assert_eq!(MxElement::Int8.block_bytes(), 33);
    }

    #[test]
    fn floor_rule_matches_the_spec_example() {
        // amax = 6.0 -> floor(log2 6) = 2; E2M1 emax = 2 -> scale 2^0.
        let mut x = [0.0f32; BLOCK];
        x[0] = 6.0;
        x[1] = -0.5;
        x[2] = 1.25; // between 1.0 and 1.5: ties to even -> 1.0
        let (q, y) = round_trip(MxElement::Fp4E2M1, ScaleRule::Floor, &x);
        assert_eq!(q[0], 127);
        assert_eq!(&y[..3], &[6.0, -0.5, 1.0]);
        // amax = 7.9: floor rule keeps scale 1 and clips to 6; ceil rule uses 2.
        x[0] = 7.9;
        let (_, y) = round_trip(MxElement::Fp4E2M1, ScaleRule::Floor, &x);
        assert_eq!(y[0], 6.0);
        let (q, y) = round_trip(MxElement::Fp4E2M1, ScaleRule::Ceil, &x);
        assert_eq!(q[0], 128);
        assert_eq!(y[0], 8.0);
    }

    #[test]
    fn special_blocks() {
        let zeros = [0.0f32; BLOCK];
        let (q, y) = round_trip(MxElement::Fp8E4M3, ScaleRule::Floor, &zeros);
        assert_eq!(q[0], 0);
        assert!(y.iter().all(|v| *v == 0.0));
        let mut nan = [1.0f32; BLOCK];
        nan[5] = f32::NAN;
        let (q, y) = round_trip(MxElement::Fp6E2M3, ScaleRule::Floor, &nan);
        assert_eq!(q[0], 0xff);
        assert!(y.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn ragged_input_is_an_error() {
        let mut q = vec![0u8; 33];
        assert!(MxElement::Fp8E4M3
            .quantize(ScaleRule::Floor, &[0.0; 31], &mut q)
            .is_err());
        assert!(MxElement::Fp8E4M3
            .dequantize_scalar(&q[..32], &mut [0.0; 32])
            .is_err());
    }
}
