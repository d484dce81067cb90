//! GGUF quant blocks: TEMPORARY interface stub, replaced by the block
//! codecs in the next commit. Sizes are real; the codecs are not here yet.

use crate::error::{NumericsError, Result};

/// A GGUF block quantization type.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufBlockType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
}

impl GgufBlockType {
    /// Every type.
    pub const ALL: [GgufBlockType; 11] = [
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::Q8K,
    ];
    /// Elements per block.
    pub const fn block_elems(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            _ => 256,
        }
    }
    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Q8K => 292,
        }
    }
    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
            Self::Q2K => "q2_k",
            Self::Q3K => "q3_k",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
            Self::Q8K => "q8_k",
        }
    }
    /// Whether exodus can quantize to this type.
    pub fn can_quantize(self) -> bool {
        false
    }
}

/// Dequantize whole blocks.
pub fn dequantize(t: GgufBlockType, _src: &[u8], _dst: &mut [f32]) -> Result<()> {
    Err(NumericsError::QuantizeUnsupported(t.name()))
}

/// Dequantize on a given level.
pub fn dequantize_with(
    _level: crate::cpu::SimdLevel,
    t: GgufBlockType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<()> {
    dequantize(t, src, dst)
}

/// Quantize whole blocks.
pub fn quantize(t: GgufBlockType, _src: &[f32], _dst: &mut [u8]) -> Result<()> {
    Err(NumericsError::QuantizeUnsupported(t.name()))
}
