//! GGUF (ggml) quantized block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the
//! K formats Q2_K .. Q8_K.
//!
//! [`dequantize`] decodes every format, bit-compatible with the GGUF files
//! in circulation (ggml's block layouts, see [`layout`]) and bit-identical
//! to the PyPI `gguf` package's numpy decoder (which is what the golden
//! tests compare against). Any byte pattern is a valid block: NaN or
//! infinite f16 scales simply propagate into the output.
//!
//! [`quantize`] encodes Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 bit-identically to the
//! `gguf` package, and Q4_K, Q6_K, Q8_K with ggml's reference search
//! (described in `k_quant.rs`), for which no bit-exact Python reference
//! exists.
//!
//! ## Round-trip error
//!
//! RMS relative error `sqrt(sum (x - x')^2 / sum x^2)` of
//! `dequantize(quantize(x))` on N(0, 1) data (256 Ki elements, measured by
//! the test `rms_error_within_budget`); [`quantize_error_budget`] returns the
//! bound that test asserts.
//!
//! | format | measured | budget |
//! |--------|----------|--------|
//! | q4_0   | 0.0860   | 0.095  |
//! | q4_1   | 0.0781   | 0.086  |
//! | q5_0   | 0.0427   | 0.047  |
//! | q5_1   | 0.0379   | 0.042  |
//! | q8_0   | 0.00535  | 0.0059 |
//! | q4_k   | 0.0714   | 0.079  |
//! | q6_k   | 0.0177   | 0.0195 |
//! | q8_k   | 0.00693  | 0.0077 |
//!
//! ## Speed
//!
//! With AVX2 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K) the
//! decoders write a 16 MiB output faster than `memcpy` copies it, as they
//! read 4-8x fewer bytes; `cargo bench -p exodus-numerics` measures every
//! format against memcpy (results in `docs/benchmarks.md`). In L2-sized
//! outputs Q4_K falls to about half of memcpy speed: one 32-byte store per
//! cycle is AVX2's limit there.

mod k_dequant;
mod k_quant;
pub mod layout;
mod legacy;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

use crate::blocks::BlockShape;
use crate::cpu::SimdLevel;
use crate::{NumericsError, Result};

/// A GGUF quantized block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufBlockType {
    /// 32 elements, 4-bit, f16 scale.
    Q4_0,
    /// 32 elements, 4-bit, f16 scale and min.
    Q4_1,
    /// 32 elements, 5-bit, f16 scale.
    Q5_0,
    /// 32 elements, 5-bit, f16 scale and min.
    Q5_1,
    /// 32 elements, 8-bit, f16 scale.
    Q8_0,
    /// 256 elements, 2-bit with 4-bit group scales and mins.
    Q2K,
    /// 256 elements, 3-bit with 6-bit group scales.
    Q3K,
    /// 256 elements, 4-bit with 6-bit group scales and mins.
    Q4K,
    /// 256 elements, 5-bit with 6-bit group scales and mins.
    Q5K,
    /// 256 elements, 6-bit with 8-bit group scales.
    Q6K,
    /// 256 elements, 8-bit, f32 scale and group sums (ggml's dot-product operand).
    Q8K,
}

/// Bytes per block of each format, in [`GgufBlockType::ALL`] order.
const BLOCK_BYTES: [usize; 11] = [18, 20, 22, 24, 34, 84, 110, 144, 176, 210, 292];

const _: () = {
    use std::mem::size_of;
    let layouts = [
        size_of::<layout::BlockQ4_0>(),
        size_of::<layout::BlockQ4_1>(),
        size_of::<layout::BlockQ5_0>(),
        size_of::<layout::BlockQ5_1>(),
        size_of::<layout::BlockQ8_0>(),
        size_of::<layout::BlockQ2K>(),
        size_of::<layout::BlockQ3K>(),
        size_of::<layout::BlockQ4K>(),
        size_of::<layout::BlockQ5K>(),
        size_of::<layout::BlockQ6K>(),
        size_of::<layout::BlockQ8K>(),
    ];
    let mut i = 0;
    while i < 11 {
        assert!(layouts[i] == BLOCK_BYTES[i]);
        assert!(GgufBlockType::ALL[i].block_bytes() == BLOCK_BYTES[i]);
        i += 1;
    }
};

impl GgufBlockType {
    /// Every format, legacy ones first.
    pub const ALL: [GgufBlockType; 11] = [
        GgufBlockType::Q4_0,
        GgufBlockType::Q4_1,
        GgufBlockType::Q5_0,
        GgufBlockType::Q5_1,
        GgufBlockType::Q8_0,
        GgufBlockType::Q2K,
        GgufBlockType::Q3K,
        GgufBlockType::Q4K,
        GgufBlockType::Q5K,
        GgufBlockType::Q6K,
        GgufBlockType::Q8K,
    ];

    /// Elements per block: 32 for the legacy formats, 256 for the K formats.
    pub const fn block_elems(self) -> usize {
        match self {
            GgufBlockType::Q4_0
            | GgufBlockType::Q4_1
            | GgufBlockType::Q5_0
            | GgufBlockType::Q5_1
            | GgufBlockType::Q8_0 => layout::QK,
            _ => layout::QK_K,
        }
    }

    /// Bytes per encoded block.
    pub const fn block_bytes(self) -> usize {
        match self {
            GgufBlockType::Q4_0 => 18,
            GgufBlockType::Q4_1 => 20,
            GgufBlockType::Q5_0 => 22,
            GgufBlockType::Q5_1 => 24,
            GgufBlockType::Q8_0 => 34,
            GgufBlockType::Q2K => 84,
            GgufBlockType::Q3K => 110,
            GgufBlockType::Q4K => 144,
            GgufBlockType::Q5K => 176,
            GgufBlockType::Q6K => 210,
            GgufBlockType::Q8K => 292,
        }
    }

    /// Lowercase name as used by GGUF tools and the command line ("q4_k").
    pub fn name(self) -> &'static str {
        match self {
            GgufBlockType::Q4_0 => "q4_0",
            GgufBlockType::Q4_1 => "q4_1",
            GgufBlockType::Q5_0 => "q5_0",
            GgufBlockType::Q5_1 => "q5_1",
            GgufBlockType::Q8_0 => "q8_0",
            GgufBlockType::Q2K => "q2_k",
            GgufBlockType::Q3K => "q3_k",
            GgufBlockType::Q4K => "q4_k",
            GgufBlockType::Q5K => "q5_k",
            GgufBlockType::Q6K => "q6_k",
            GgufBlockType::Q8K => "q8_k",
        }
    }

    /// Whether [`quantize`] can encode this format.
    pub fn can_quantize(self) -> bool {
        !matches!(
            self,
            GgufBlockType::Q2K | GgufBlockType::Q3K | GgufBlockType::Q5K
        )
    }
}

/// Per-block decoder: block bytes in, block elements out.
type BlockFn = fn(&[u8], &mut [f32]);
/// Per-block encoder: block elements in, block bytes out.
type QuantFn = fn(&[f32], &mut [u8]);

fn scalar_block_fn(t: GgufBlockType) -> BlockFn {
    match t {
        GgufBlockType::Q4_0 => legacy::dequant_q4_0,
        GgufBlockType::Q4_1 => legacy::dequant_q4_1,
        GgufBlockType::Q5_0 => legacy::dequant_q5_0,
        GgufBlockType::Q5_1 => legacy::dequant_q5_1,
        GgufBlockType::Q8_0 => legacy::dequant_q8_0,
        GgufBlockType::Q2K => k_dequant::dequant_q2k,
        GgufBlockType::Q3K => k_dequant::dequant_q3k,
        GgufBlockType::Q4K => k_dequant::dequant_q4k,
        GgufBlockType::Q5K => k_dequant::dequant_q5k,
        GgufBlockType::Q6K => k_dequant::dequant_q6k,
        GgufBlockType::Q8K => k_dequant::dequant_q8k,
    }
}

fn quant_fn(t: GgufBlockType) -> Option<QuantFn> {
    Some(match t {
        GgufBlockType::Q4_0 => legacy::quant_q4_0,
        GgufBlockType::Q4_1 => legacy::quant_q4_1,
        GgufBlockType::Q5_0 => legacy::quant_q5_0,
        GgufBlockType::Q5_1 => legacy::quant_q5_1,
        GgufBlockType::Q8_0 => legacy::quant_q8_0,
        GgufBlockType::Q4K => k_quant::quant_q4k,
        GgufBlockType::Q6K => k_quant::quant_q6k,
        GgufBlockType::Q8K => k_quant::quant_q8k,
        GgufBlockType::Q2K | GgufBlockType::Q3K | GgufBlockType::Q5K => return None,
    })
}

/// Decodes whole blocks of format `t` from `src` into `dst`, on the SIMD
/// level the CPU dispatcher chose ([`crate::cpu::active`]).
///
/// `src.len()` must be a multiple of [`GgufBlockType::block_bytes`]
/// ([`NumericsError::RaggedBytes`] otherwise) and `dst.len()` must be the
/// number of blocks times [`GgufBlockType::block_elems`]
/// ([`NumericsError::LengthMismatch`] otherwise).
pub fn dequantize(t: GgufBlockType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    dequantize_with(crate::cpu::active(), t, src, dst)
}

/// [`dequantize`] on an explicit SIMD level. Every level gives bit-identical
/// results; a level the CPU lacks, or that has no kernel for `t`, runs the
/// scalar code.
pub fn dequantize_with(
    level: SimdLevel,
    t: GgufBlockType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<()> {
    let blocks = shape(t).blocks_for_bytes(src.len(), dst.len())?;
    if blocks == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if level.has_avx2() && x86::dequantize(t, src, dst) {
        return Ok(());
    }
    let _ = level;
    let f = scalar_block_fn(t);
    for (b, y) in src
        .chunks_exact(t.block_bytes())
        .zip(dst.chunks_exact_mut(t.block_elems()))
    {
        f(b, y);
    }
    Ok(())
}

fn shape(t: GgufBlockType) -> BlockShape {
    BlockShape {
        format: t.name(),
        elems: t.block_elems(),
        bytes: t.block_bytes(),
    }
}

/// Encodes `src` (a whole number of blocks of `t`) into `dst`, which must
/// hold exactly `src.len() / block_elems * block_bytes` bytes.
///
/// Errors: [`NumericsError::QuantizeUnsupported`] for Q2_K, Q3_K and Q5_K;
/// [`NumericsError::RaggedBlocks`] when `src` is not whole blocks;
/// [`NumericsError::LengthMismatch`] when `dst` has the wrong size. Never
/// panics; NaN or infinite inputs give unspecified (but well-formed) blocks.
pub fn quantize(t: GgufBlockType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    let f = quant_fn(t).ok_or(NumericsError::QuantizeUnsupported(t.name()))?;
    shape(t).blocks_for_values(src.len(), dst.len())?;
    for (x, b) in src
        .chunks_exact(t.block_elems())
        .zip(dst.chunks_exact_mut(t.block_bytes()))
    {
        f(x, b);
    }
    Ok(())
}

/// Upper bound on the RMS relative round-trip error of [`quantize`] then
/// [`dequantize`] on N(0, 1) data (see the table in the module docs);
/// infinite for the formats that cannot be quantized.
pub fn quantize_error_budget(t: GgufBlockType) -> f32 {
    match t {
        GgufBlockType::Q4_0 => 0.095,
        GgufBlockType::Q4_1 => 0.086,
        GgufBlockType::Q5_0 => 0.047,
        GgufBlockType::Q5_1 => 0.042,
        GgufBlockType::Q8_0 => 0.0059,
        GgufBlockType::Q4K => 0.079,
        GgufBlockType::Q6K => 0.0195,
        GgufBlockType::Q8K => 0.0077,
        GgufBlockType::Q2K | GgufBlockType::Q3K | GgufBlockType::Q5K => f32::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_is_consistent() {
        let mut names: Vec<&str> = GgufBlockType::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 11);
        for t in GgufBlockType::ALL {
            assert!(matches!(t.block_elems(), 32 | 256));
            assert_eq!(quant_fn(t).is_some(), t.can_quantize(), "{}", t.name());
            assert_eq!(t.can_quantize(), quantize_error_budget(t).is_finite());
        }
    }
}
