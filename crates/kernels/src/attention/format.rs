//! The element formats a paged KV cache can store its K and V rows in, and
//! how one row of `head_dim` values is laid out and decoded.

use std::fmt;
use std::str::FromStr;

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::mx::MxElement;
use exodus_numerics::{bulk, ElementFormat, Format, QuantizeOptions};

use crate::error::{KernelError, Result};
use crate::ops::check;

/// Storage format of the K and V rows of a [`PagedKvCache`](super::PagedKvCache).
///
/// Element formats store one code per value (2 bytes for bf16/f16, 1 for
/// FP8); MX formats store each row as `head_dim / 32` blocks of
/// [`exodus_numerics::mx`] (an E8M0 scale and 32 codes), so `head_dim`
/// must be a multiple of 32 for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvFormat {
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
    /// OCP FP8 E4M3 (saturating, no per-row scale).
    Fp8E4M3,
    /// OCP FP8 E5M2 (saturating, no per-row scale).
    Fp8E5M2,
    /// OCP MXFP8 with E4M3 elements: 33 bytes per 32 values.
    MxFp8E4M3,
    /// OCP MXFP4 (E2M1 elements): 17 bytes per 32 values.
    MxFp4,
}

impl KvFormat {
    /// Every cache format.
    pub const ALL: [KvFormat; 6] = [
        KvFormat::Bf16,
        KvFormat::F16,
        KvFormat::Fp8E4M3,
        KvFormat::Fp8E5M2,
        KvFormat::MxFp8E4M3,
        KvFormat::MxFp4,
    ];

    /// The exodus-numerics format of the same name.
    pub fn format(self) -> Format {
        match self.repr() {
            Repr::Element(e) => Format::Element(e),
            Repr::Mx(m) => Format::Mx(m),
        }
    }

    fn repr(self) -> Repr {
        match self {
            KvFormat::Bf16 => Repr::Element(ElementFormat::Bf16),
            KvFormat::F16 => Repr::Element(ElementFormat::F16),
            KvFormat::Fp8E4M3 => Repr::Element(ElementFormat::Fp8E4M3),
            KvFormat::Fp8E5M2 => Repr::Element(ElementFormat::Fp8E5M2),
            KvFormat::MxFp8E4M3 => Repr::Mx(MxElement::Fp8E4M3),
            KvFormat::MxFp4 => Repr::Mx(MxElement::Fp4E2M1),
        }
    }

    /// Command-line name (`bf16`, `fp8-e4m3`, `mxfp4`, ...).
    pub fn name(self) -> &'static str {
        self.format().name()
    }

    /// Bytes of one row of `head_dim` values, or an error if an MX format
    /// is asked for a `head_dim` that is not a multiple of 32.
    pub fn row_bytes(self, head_dim: usize) -> Result<usize> {
        self.format().encoded_len(head_dim, false).map_err(|_| {
            check::bad_shape(
                "kv_cache",
                format!(
                    "head_dim {head_dim} must be a multiple of 32 for {}",
                    self.name()
                ),
            )
        })
    }

    /// Quantize one or more whole rows (`src.len()` values) into `dst`.
    /// Element formats saturate (a too-large K never becomes Inf/NaN); MX
    /// formats use the OCP scale rule.
    pub(crate) fn encode(self, src: &[f32], dst: &mut [u8]) -> Result<()> {
        Ok(self
            .format()
            .quantize_into(src, dst, &QuantizeOptions::default())?)
    }

    /// Decode whole rows from `src` into `dst` on `level`.
    pub(crate) fn decode(self, level: SimdLevel, src: &[u8], dst: &mut [f32]) -> Result<()> {
        match self.repr() {
            Repr::Element(e) => bulk::decode_with(level, e, src, dst)?,
            Repr::Mx(m) => m.dequantize_with(level, src, dst)?,
        }
        Ok(())
    }
}

/// The two kinds of cache format.
enum Repr {
    Element(ElementFormat),
    Mx(MxElement),
}

impl TryFrom<Format> for KvFormat {
    type Error = KernelError;

    fn try_from(format: Format) -> Result<Self> {
        KvFormat::ALL
            .into_iter()
            .find(|k| k.format() == format)
            .ok_or(KernelError::UnsupportedFormat {
                kernel: "kv_cache",
                format: format.name(),
            })
    }
}

impl FromStr for KvFormat {
    type Err = KernelError;

    /// A format's name (`exodus formats`), or `mxfp8` for MXFP8 with E4M3
    /// elements (the cache's only MXFP8).
    fn from_str(name: &str) -> Result<Self> {
        if name == "mxfp8" {
            return Ok(KvFormat::MxFp8E4M3);
        }
        let format: Format = name.parse()?;
        format.try_into()
    }
}

impl fmt::Display for KvFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
