//! Bulk conversions between `f32` slices and element-format codes, with
//! run-time SIMD dispatch (see [`crate::cpu`]).
//!
//! Codes are stored unpacked: one byte per code for formats of 8 bits or
//! fewer (FP6/FP4 codes in the low bits; use [`crate::pack`] to pack them),
//! two little-endian bytes for f16/bf16, four for f32. Slices may start at
//! any address; lengths need not be a multiple of the vector width.

use std::sync::OnceLock;

use half::{bf16, f16};

use crate::cpu::{self, SimdLevel};
use crate::element::{encode_bf16, encode_f16, ElementFormat};
use crate::error::{NumericsError, Result};
use crate::rounding::EncodeOptions;

/// The 256-entry decode table of an 8-bit-or-narrower format.
pub fn decode_table(format: ElementFormat) -> Option<&'static [f32; 256]> {
    static TABLES: [OnceLock<[f32; 256]>; 10] = [const { OnceLock::new() }; 10];
    let index = ElementFormat::ALL.iter().position(|f| *f == format)?;
    if format.bits() > 8 {
        return None;
    }
    Some(TABLES[index].get_or_init(|| std::array::from_fn(|c| format.decode(c as u32))))
}

fn check_len(format: ElementFormat, values: usize, bytes: usize) -> Result<()> {
    let expected = values * format.unpacked_bytes();
    if bytes != expected {
        return Err(NumericsError::LengthMismatch {
            format: format.name(),
            what: "code buffer",
            expected,
            got: bytes,
        });
    }
    Ok(())
}

/// Decode `dst.len()` codes from `src` on the active SIMD level.
pub fn decode(format: ElementFormat, src: &[u8], dst: &mut [f32]) -> Result<()> {
    decode_with(cpu::active(), format, src, dst)
}

/// Decode on a given SIMD level (an unsupported level runs the scalar path).
pub fn decode_with(
    level: SimdLevel,
    format: ElementFormat,
    src: &[u8],
    dst: &mut [f32],
) -> Result<()> {
    check_len(format, dst.len(), src.len())?;
    if !(level.is_supported() && decode_simd(level, format, src, dst)) {
        decode_scalar(format, src, dst);
    }
    Ok(())
}

/// Run the SIMD decoder of `level` for `format`, if there is one; `false`
/// means nothing was written.
#[allow(unused_variables)]
fn decode_simd(level: SimdLevel, format: ElementFormat, src: &[u8], dst: &mut [f32]) -> bool {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => {
            use crate::simd::x86;
            // HiF8 has no closed form; its table lookup is the scalar path
            // (an AVX2 gather measured 2x slower than scalar loads on the Xeon of docs/benchmarks.md).
            match (format, format.minifloat()) {
                (ElementFormat::F16, _) => x86::decode_f16(src, dst),
                (ElementFormat::Bf16, _) => x86::decode_bf16(src, dst),
                (ElementFormat::E8M0, _) => x86::decode_e8m0(src, dst),
                (_, Some(m)) => x86::decode_minifloat(m, src, dst),
                _ => return false,
            }
            true
        }
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => {
            use crate::simd::neon;
            match (format, format.minifloat()) {
                (ElementFormat::Bf16, _) => neon::decode_bf16(src, dst),
                (_, Some(m)) => neon::decode_minifloat(m, src, dst),
                _ => return false,
            }
            true
        }
        _ => false,
    }
}

fn decode_scalar(format: ElementFormat, src: &[u8], dst: &mut [f32]) {
    match format {
        ElementFormat::F32 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        ElementFormat::F16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        ElementFormat::Bf16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => {
            if let Some(table) = decode_table(format) {
                for (o, &c) in dst.iter_mut().zip(src) {
                    *o = table[c as usize];
                }
            }
        }
    }
}

/// Decode `dst.len()` codes and multiply each value by `scale` (the shared
/// scale of a block or tile), on the active SIMD level. The product is the
/// f32 product of the decoded value and `scale` on every level.
pub fn decode_scaled(format: ElementFormat, src: &[u8], scale: f32, dst: &mut [f32]) -> Result<()> {
    decode_scaled_with(cpu::active(), format, src, scale, dst)
}

/// [`decode_scaled`] on a given SIMD level.
pub fn decode_scaled_with(
    level: SimdLevel,
    format: ElementFormat,
    src: &[u8],
    scale: f32,
    dst: &mut [f32],
) -> Result<()> {
    check_len(format, dst.len(), src.len())?;
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(m)) = (level.has_avx2(), format.minifloat()) {
        crate::simd::x86::decode_minifloat_scaled(m, src, scale, dst);
        return Ok(());
    }
    decode_with(level, format, src, dst)?;
    dst.iter_mut().for_each(|v| *v *= scale);
    Ok(())
}

/// Encode `src` into `dst` (`src.len()` codes) on the active SIMD level.
pub fn encode(
    format: ElementFormat,
    src: &[f32],
    dst: &mut [u8],
    opts: EncodeOptions,
) -> Result<()> {
    encode_with(cpu::active(), format, src, dst, opts)
}

/// Encode on a given SIMD level (an unsupported level runs the scalar path).
pub fn encode_with(
    level: SimdLevel,
    format: ElementFormat,
    src: &[f32],
    dst: &mut [u8],
    opts: EncodeOptions,
) -> Result<()> {
    check_len(format, src.len(), dst.len())?;
    if !(level.is_supported() && encode_simd(level, format, src, dst, opts)) {
        encode_scalar(format, src, dst, opts);
    }
    Ok(())
}

/// Run the SIMD encoder of `level` for `format` and `opts`, if there is
/// one; `false` means nothing was written.
#[allow(unused_variables)]
fn encode_simd(
    level: SimdLevel,
    format: ElementFormat,
    src: &[f32],
    dst: &mut [u8],
    opts: EncodeOptions,
) -> bool {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => {
            use crate::rounding::Rounding;
            use crate::simd::x86;
            match (format, format.minifloat(), opts.rounding) {
                (ElementFormat::F16, _, _) => x86::encode_f16(opts.overflow, src, dst),
                (ElementFormat::Bf16, _, _) => x86::encode_bf16(opts.overflow, src, dst),
                (_, Some(m), Rounding::NearestEven) => {
                    x86::encode_minifloat(m, opts.overflow, src, dst)
                }
                _ => return false,
            }
            true
        }
        _ => false,
    }
}

fn encode_scalar(format: ElementFormat, src: &[f32], dst: &mut [u8], opts: EncodeOptions) {
    match format {
        ElementFormat::F32 => {
            for (o, x) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&x.to_le_bytes());
            }
        }
        ElementFormat::F16 => {
            for (o, &x) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&encode_f16(x, opts.overflow).to_le_bytes());
            }
        }
        ElementFormat::Bf16 => {
            for (o, &x) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&encode_bf16(x, opts.overflow).to_le_bytes());
            }
        }
        _ => {
            for (o, &x) in dst.iter_mut().zip(src) {
                *o = format.encode(x, opts) as u8;
            }
        }
    }
}
