//! Packing of sub-byte codes (FP6, FP4) into bytes.
//!
//! Codes form a little-endian bit stream: code `i` of width `w` occupies
//! bits `w*i .. w*i + w` of the stream, bit 0 being the least significant
//! bit of byte 0. For 4-bit codes this puts element `2j` in the low nibble
//! and element `2j+1` in the high nibble of byte `j`; for 6-bit codes four
//! codes fill three bytes. Bits past the last code are zero.

use crate::error::{NumericsError, Result};

/// Bytes needed for `count` codes of `bits` width.
pub const fn packed_len(bits: u32, count: usize) -> usize {
    (count * bits as usize).div_ceil(8)
}

fn check(bits: u32, codes: usize, bytes: usize, what: &'static str) -> Result<()> {
    let expected = packed_len(bits, codes);
    if bytes != expected {
        return Err(NumericsError::LengthMismatch {
            format: "packed codes",
            what,
            expected,
            got: bytes,
        });
    }
    Ok(())
}

/// Pack `codes` (each in the low `bits` bits of a byte; higher bits are
/// ignored) into `dst`, which must be exactly [`packed_len`] bytes.
pub fn pack(bits: u32, codes: &[u8], dst: &mut [u8]) -> Result<()> {
    check(bits, codes.len(), dst.len(), "packed buffer")?;
    let mask = ((1u32 << bits) - 1) as u8;
    match bits {
        8 => dst.copy_from_slice(codes),
        4 => {
            for (byte, pair) in dst.iter_mut().zip(codes.chunks(2)) {
                let hi = pair.get(1).copied().unwrap_or(0) & mask;
                *byte = (pair[0] & mask) | (hi << 4);
            }
        }
        _ => {
            dst.fill(0);
            for (i, &code) in codes.iter().enumerate() {
                let bit = i * bits as usize;
                let word = ((code & mask) as u16) << (bit % 8);
                dst[bit / 8] |= word as u8;
                if let Some(next) = dst.get_mut(bit / 8 + 1) {
                    *next |= (word >> 8) as u8;
                }
            }
        }
    }
    Ok(())
}

/// Unpack `dst.len()` codes of `bits` width from `src`, which must be
/// exactly [`packed_len`] bytes.
pub fn unpack(bits: u32, src: &[u8], dst: &mut [u8]) -> Result<()> {
    check(bits, dst.len(), src.len(), "packed buffer")?;
    match bits {
        8 => dst.copy_from_slice(src),
        4 => {
            for (i, code) in dst.iter_mut().enumerate() {
                *code = (src[i / 2] >> ((i % 2) * 4)) & 0xf;
            }
        }
        6 => {
            // Four codes in every three bytes; the generic loop does the tail.
            let whole = dst.len() / 4;
            for (codes, b) in dst.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                let word = b[0] as u32 | (b[1] as u32) << 8 | (b[2] as u32) << 16;
                for (j, code) in codes.iter_mut().enumerate() {
                    *code = (word >> (6 * j)) as u8 & 0x3f;
                }
            }
            unpack_bits(bits, &src[whole * 3..], &mut dst[whole * 4..]);
        }
        _ => unpack_bits(bits, src, dst),
    }
    Ok(())
}

/// Unpack by walking the bit stream, one code at a time.
fn unpack_bits(bits: u32, src: &[u8], dst: &mut [u8]) {
    let mask = ((1u32 << bits) - 1) as u16;
    for (i, code) in dst.iter_mut().enumerate() {
        let bit = i * bits as usize;
        let lo = src[bit / 8] as u16;
        let hi = src.get(bit / 8 + 1).copied().unwrap_or(0) as u16;
        *code = (((lo | (hi << 8)) >> (bit % 8)) & mask) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_width_and_length() {
        for bits in [4u32, 6, 8] {
            for n in 0..70usize {
                let codes: Vec<u8> = (0..n)
                    .map(|i| ((i * 37 + 11) % (1 << bits)) as u8)
                    .collect();
                let mut packed = vec![0u8; packed_len(bits, n)];
                pack(bits, &codes, &mut packed).unwrap();
                let mut back = vec![0u8; n];
                unpack(bits, &packed, &mut back).unwrap();
                assert_eq!(codes, back, "bits {bits} n {n}");
            }
        }
    }

    #[test]
    fn documented_layout() {
        let mut out = [0u8; 1];
        pack(4, &[0x3, 0xa], &mut out).unwrap();
        assert_eq!(out, [0xa3]);
        let mut out = [0u8; 3];
        pack(6, &[0x01, 0x02, 0x03, 0x3f], &mut out).unwrap();
        // bits: 000001 | 000010 | 000011 | 111111, little-endian stream
        assert_eq!(out, [0b1000_0001, 0b0011_0000, 0b1111_1100]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(pack(4, &[1, 2, 3], &mut [0u8; 1]).is_err());
        assert!(unpack(6, &[0u8; 2], &mut [0u8; 4]).is_err());
    }
}
