//! Element formats: one value per code, no shared scale.
//!
//! [`ElementFormat`] names every scalar format of the crate and gives its
//! scalar reference codec; bulk conversions over slices live in
//! [`crate::bulk`].

use half::{bf16, f16};

use crate::minifloat::{self, MiniFloat};
use crate::rounding::{EncodeOptions, Overflow};
use crate::{e8m0, hif8};

/// A format that stores each value on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementFormat {
    /// IEEE binary32 (the unquantized reference).
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
    /// OCP FP8 E4M3 (e4m3fn).
    Fp8E4M3,
    /// OCP FP8 E5M2.
    Fp8E5M2,
    /// OCP MX FP6 E2M3.
    Fp6E2M3,
    /// OCP MX FP6 E3M2.
    Fp6E3M2,
    /// OCP MX FP4 E2M1.
    Fp4E2M1,
    /// OCP MX E8M0 scale.
    E8M0,
    /// Huawei HiFloat8.
    HiF8,
}

impl ElementFormat {
    /// Every element format.
    pub const ALL: [ElementFormat; 10] = [
        ElementFormat::F32,
        ElementFormat::F16,
        ElementFormat::Bf16,
        ElementFormat::Fp8E4M3,
        ElementFormat::Fp8E5M2,
        ElementFormat::Fp6E2M3,
        ElementFormat::Fp6E3M2,
        ElementFormat::Fp4E2M1,
        ElementFormat::E8M0,
        ElementFormat::HiF8,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ElementFormat::F32 => "f32",
            ElementFormat::F16 => "f16",
            ElementFormat::Bf16 => "bf16",
            ElementFormat::E8M0 => "e8m0",
            ElementFormat::HiF8 => "hif8",
            other => other.minifloat().map_or("?", |m| m.name),
        }
    }

    /// The [`MiniFloat`] parameters, for the OCP FP8/FP6/FP4 formats.
    pub fn minifloat(self) -> Option<&'static MiniFloat> {
        match self {
            ElementFormat::Fp8E4M3 => Some(&minifloat::FP8_E4M3),
            ElementFormat::Fp8E5M2 => Some(&minifloat::FP8_E5M2),
            ElementFormat::Fp6E2M3 => Some(&minifloat::FP6_E2M3),
            ElementFormat::Fp6E3M2 => Some(&minifloat::FP6_E3M2),
            ElementFormat::Fp4E2M1 => Some(&minifloat::FP4_E2M1),
            _ => None,
        }
    }

    /// Width of one code in bits.
    pub fn bits(self) -> u32 {
        match self {
            ElementFormat::F32 => 32,
            ElementFormat::F16 | ElementFormat::Bf16 => 16,
            ElementFormat::E8M0 | ElementFormat::HiF8 => 8,
            other => other.minifloat().map_or(8, MiniFloat::bits),
        }
    }

    /// Bytes one code takes when stored one per byte (sub-byte formats) or
    /// natively (f32: 4, f16/bf16: 2).
    pub fn unpacked_bytes(self) -> usize {
        (self.bits() as usize).div_ceil(8)
    }

    /// Decode one code held in the low bits of `code`.
    pub fn decode(self, code: u32) -> f32 {
        match self {
            ElementFormat::F32 => f32::from_bits(code),
            ElementFormat::F16 => f16::from_bits(code as u16).to_f32(),
            ElementFormat::Bf16 => bf16::from_bits(code as u16).to_f32(),
            ElementFormat::E8M0 => e8m0::decode(code as u8),
            ElementFormat::HiF8 => hif8::decode(code as u8),
            other => other.minifloat().map_or(f32::NAN, |m| m.decode(code as u8)),
        }
    }

    /// Encode one value to its code (in the low bits of the result).
    pub fn encode(self, x: f32, opts: EncodeOptions) -> u32 {
        match self {
            ElementFormat::F32 => x.to_bits(),
            ElementFormat::F16 => encode_f16(x, opts.overflow) as u32,
            ElementFormat::Bf16 => encode_bf16(x, opts.overflow) as u32,
            ElementFormat::E8M0 => e8m0::encode(x, opts) as u32,
            ElementFormat::HiF8 => hif8::encode(x, opts) as u32,
            other => other.minifloat().map_or(0, |m| m.encode(x, opts) as u32),
        }
    }
}

/// f32 to f16 with round-to-nearest-even (the `half` crate) and the overflow policy.
pub fn encode_f16(x: f32, overflow: Overflow) -> u16 {
    let h = f16::from_f32(x);
    if overflow == Overflow::Saturate && h.is_infinite() {
        if x.is_sign_negative() {
            f16::MIN
        } else {
            f16::MAX
        }
        .to_bits()
    } else {
        h.to_bits()
    }
}

/// f32 to bf16 with round-to-nearest-even (the `half` crate) and the overflow policy.
pub fn encode_bf16(x: f32, overflow: Overflow) -> u16 {
    let h = bf16::from_f32(x);
    if overflow == Overflow::Saturate && h.is_infinite() {
        if x.is_sign_negative() {
            bf16::MIN
        } else {
            bf16::MAX
        }
        .to_bits()
    } else {
        h.to_bits()
    }
}
