//! The ggml tensor types that GGUF files name by number, with their block
//! shapes (elements and bytes per block) and the exodus number format each
//! maps to, where exodus has one.
//!
//! Every type that current ggml writes into GGUF files is known, so the
//! reader can check the byte size of any tensor even when exodus cannot
//! compute with it; ids that ggml retired (4, 5, 31-33, 36-38) or never
//! defined are rejected when the file is read.

use std::fmt;

use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::{ElementFormat, Format};

/// A ggml tensor type, as stored in a GGUF tensor info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// 4-bit, one f16 scale per 32.
    Q4_0,
    /// 4-bit, f16 scale and min per 32.
    Q4_1,
    /// 5-bit, one f16 scale per 32.
    Q5_0,
    /// 5-bit, f16 scale and min per 32.
    Q5_1,
    /// 8-bit, one f16 scale per 32.
    Q8_0,
    /// 8-bit, f16 scale and sum per 32 (a dot-product operand).
    Q8_1,
    /// K super-block of 256, 2-bit.
    Q2K,
    /// K super-block of 256, 3-bit.
    Q3K,
    /// K super-block of 256, 4-bit.
    Q4K,
    /// K super-block of 256, 5-bit.
    Q5K,
    /// K super-block of 256, 6-bit.
    Q6K,
    /// K super-block of 256, 8-bit.
    Q8K,
    /// Importance quant, 2.06 bits per weight.
    Iq2Xxs,
    /// Importance quant, 2.31 bits per weight.
    Iq2Xs,
    /// Importance quant, 3.06 bits per weight.
    Iq3Xxs,
    /// Importance quant, 1.56 bits per weight.
    Iq1S,
    /// Non-linear 4-bit, blocks of 32.
    Iq4Nl,
    /// Importance quant, 3.44 bits per weight.
    Iq3S,
    /// Importance quant, 2.5 bits per weight.
    Iq2S,
    /// Non-linear 4-bit, super-blocks of 256.
    Iq4Xs,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE binary64.
    F64,
    /// Importance quant, 1.75 bits per weight.
    Iq1M,
    /// bfloat16.
    Bf16,
    /// Ternary, 1.69 bits per weight.
    Tq1_0,
    /// Ternary, 2.06 bits per weight.
    Tq2_0,
    /// ggml's MXFP4 (E8M0 scale, 32 E2M1 codes; element `j` and `j + 16`
    /// share byte `j`, unlike exodus's OCP packing, so it is not mapped).
    Mxfp4,
}

/// `(type, id, name, elements per block, bytes per block)`, in id order.
const TABLE: [(GgmlType, u32, &str, u64, u64); 32] = [
    (GgmlType::F32, 0, "f32", 1, 4),
    (GgmlType::F16, 1, "f16", 1, 2),
    (GgmlType::Q4_0, 2, "q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "q8_1", 32, 36),
    (GgmlType::Q2K, 10, "q2_k", 256, 84),
    (GgmlType::Q3K, 11, "q3_k", 256, 110),
    (GgmlType::Q4K, 12, "q4_k", 256, 144),
    (GgmlType::Q5K, 13, "q5_k", 256, 176),
    (GgmlType::Q6K, 14, "q6_k", 256, 210),
    (GgmlType::Q8K, 15, "q8_k", 256, 292),
    (GgmlType::Iq2Xxs, 16, "iq2_xxs", 256, 66),
    (GgmlType::Iq2Xs, 17, "iq2_xs", 256, 74),
    (GgmlType::Iq3Xxs, 18, "iq3_xxs", 256, 98),
    (GgmlType::Iq1S, 19, "iq1_s", 256, 50),
    (GgmlType::Iq4Nl, 20, "iq4_nl", 32, 18),
    (GgmlType::Iq3S, 21, "iq3_s", 256, 110),
    (GgmlType::Iq2S, 22, "iq2_s", 256, 82),
    (GgmlType::Iq4Xs, 23, "iq4_xs", 256, 136),
    (GgmlType::I8, 24, "i8", 1, 1),
    (GgmlType::I16, 25, "i16", 1, 2),
    (GgmlType::I32, 26, "i32", 1, 4),
    (GgmlType::I64, 27, "i64", 1, 8),
    (GgmlType::F64, 28, "f64", 1, 8),
    (GgmlType::Iq1M, 29, "iq1_m", 256, 56),
    (GgmlType::Bf16, 30, "bf16", 1, 2),
    (GgmlType::Tq1_0, 34, "tq1_0", 256, 54),
    (GgmlType::Tq2_0, 35, "tq2_0", 256, 66),
    (GgmlType::Mxfp4, 39, "mxfp4", 32, 17),
];

/// Why a shape has no byte size in a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeError {
    /// A dimension, the element count or the byte size exceeds `i64::MAX`.
    Overflow,
    /// The first dimension is not a multiple of the block size.
    RaggedRow,
}

impl GgmlType {
    /// Every type, in id order.
    pub const ALL: [GgmlType; 32] = {
        let mut all = [GgmlType::F32; 32];
        let mut i = 0;
        while i < 32 {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> (GgmlType, u32, &'static str, u64, u64) {
        // The table lists every variant (checked by a unit test), so the
        // fallback is never taken.
        TABLE
            .iter()
            .copied()
            .find(|r| r.0 == self)
            .unwrap_or(TABLE[0])
    }

    /// The type with ggml id `id`, if ggml defines one for GGUF files.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// The ggml id.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// Lowercase name, as ggml and `exodus formats` spell it ("q4_k").
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for plain element types).
    pub fn block_elems(self) -> u64 {
        self.row().3
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.row().4
    }

    /// The exodus number format with the same byte layout, if there is one.
    pub fn format(self) -> Option<Format> {
        Some(match self {
            GgmlType::F32 => Format::Element(ElementFormat::F32),
            GgmlType::F16 => Format::Element(ElementFormat::F16),
            GgmlType::Bf16 => Format::Element(ElementFormat::Bf16),
            GgmlType::Q4_0 => Format::Gguf(GgufBlockType::Q4_0),
            GgmlType::Q4_1 => Format::Gguf(GgufBlockType::Q4_1),
            GgmlType::Q5_0 => Format::Gguf(GgufBlockType::Q5_0),
            GgmlType::Q5_1 => Format::Gguf(GgufBlockType::Q5_1),
            GgmlType::Q8_0 => Format::Gguf(GgufBlockType::Q8_0),
            GgmlType::Q2K => Format::Gguf(GgufBlockType::Q2K),
            GgmlType::Q3K => Format::Gguf(GgufBlockType::Q3K),
            GgmlType::Q4K => Format::Gguf(GgufBlockType::Q4K),
            GgmlType::Q5K => Format::Gguf(GgufBlockType::Q5K),
            GgmlType::Q6K => Format::Gguf(GgufBlockType::Q6K),
            GgmlType::Q8K => Format::Gguf(GgufBlockType::Q8K),
            _ => return None,
        })
    }

    /// The ggml type of an exodus format, if GGUF files can hold it.
    pub fn from_format(format: Format) -> Option<GgmlType> {
        GgmlType::ALL
            .into_iter()
            .find(|t| t.format() == Some(format))
    }

    /// Element count of a tensor with dimensions `dims` (innermost first;
    /// no dimensions is a scalar). The product of the dimensions, with
    /// zeros counted as ones, must stay within `i64::MAX` as in ggml, so any
    /// sub-product (rows, say) of a valid shape fits too.
    pub fn elements(dims: &[u64]) -> Result<u64, ShapeError> {
        let limit = i64::MAX as u64;
        dims.iter().try_fold(1u64, |n, &d| {
            n.checked_mul(d.max(1))
                .filter(|&n| n <= limit)
                .ok_or(ShapeError::Overflow)
        })?;
        Ok(if dims.contains(&0) {
            0
        } else {
            dims.iter().product()
        })
    }

    /// Bytes that a tensor of this type with dimensions `dims` takes: rows
    /// of `dims[0]` elements, each a whole number of blocks.
    pub fn byte_size(self, dims: &[u64]) -> Result<u64, ShapeError> {
        let elements = GgmlType::elements(dims)?;
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % self.block_elems() != 0 {
            return Err(ShapeError::RaggedRow);
        }
        (elements / self.block_elems())
            .checked_mul(self.block_bytes())
            .filter(|&b| b <= i64::MAX as u64)
            .ok_or(ShapeError::Overflow)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(GgmlType::ALL[i], row.0);
            assert_eq!(GgmlType::from_id(row.1), Some(row.0));
            assert_eq!(row.0.id(), row.1);
            assert_eq!(row.0.name(), row.2);
        }
        for retired in [4, 5, 31, 32, 33, 36, 37, 38, 40, u32::MAX] {
            assert_eq!(GgmlType::from_id(retired), None);
        }
        let mut names: Vec<&str> = TABLE.iter().map(|r| r.2).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn formats_agree_with_numerics() {
        let mut mapped = 0;
        for t in GgmlType::ALL {
            let Some(f) = t.format() else { continue };
            mapped += 1;
            assert_eq!(f.name(), t.name());
            assert_eq!(f.block_elems() as u64, t.block_elems());
            let n = t.block_elems() as usize * 3;
            assert_eq!(
                f.encoded_len(n, false).unwrap() as u64,
                3 * t.block_bytes(),
                "{t}"
            );
            assert_eq!(GgmlType::from_format(f), Some(t));
        }
        // f32, f16, bf16 and every GGUF block type of exodus-numerics.
        assert_eq!(mapped, 3 + GgufBlockType::ALL.len());
    }

    #[test]
    fn sizes() {
        assert_eq!(GgmlType::F32.byte_size(&[]), Ok(4));
        assert_eq!(GgmlType::F32.byte_size(&[3, 0, 5]), Ok(0));
        assert_eq!(GgmlType::Q4_1.byte_size(&[64, 3]), Ok(6 * 20));
        assert_eq!(
            GgmlType::Q4K.byte_size(&[32, 8]),
            Err(ShapeError::RaggedRow)
        );
        assert_eq!(
            GgmlType::F32.byte_size(&[1 << 62, 2]),
            Err(ShapeError::Overflow)
        );
        assert_eq!(
            GgmlType::F32.byte_size(&[1 << 61, 1]),
            Err(ShapeError::Overflow)
        );
        assert_eq!(GgmlType::elements(&[u64::MAX]), Err(ShapeError::Overflow));
        assert_eq!(
            GgmlType::elements(&[0, 1 << 40, 1 << 40]),
            Err(ShapeError::Overflow)
        );
        assert_eq!(GgmlType::elements(&[0, 1 << 40]), Ok(0));
    }
}
