//! Byte layouts of the GGUF (ggml) quantized blocks.
//!
//! Every block is a plain sequence of bytes with no padding; multi-byte
//! fields are little-endian. The `#[repr(C)]` structs below exist to name the
//! fields and to let the compiler check, at build time, that each layout adds
//! up to the block size that GGUF files use. The codecs read fields at the
//! offsets derived from these structs (`offset_of!`), never by transmuting.

use std::mem::{offset_of, size_of};

/// Elements in one block of the legacy formats (Q4_0 .. Q8_0).
pub const QK: usize = 32;
/// Elements in one super-block of the K formats.
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales and mins of Q4_K / Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// `block_q4_0`: f16 scale, 32 4-bit quants (element `i` in the low nibble
/// of byte `i`, element `i + 16` in the high nibble).
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q4_1`: f16 scale and f16 min, 32 4-bit quants.
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Minimum (f16).
    pub m: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q5_0`: f16 scale, the 5th bits as a little-endian u32, 32 nibbles.
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Bit `i` is the high bit of element `i`.
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q5_1`: f16 scale, f16 min, 5th bits, 32 nibbles.
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Minimum (f16).
    pub m: [u8; 2],
    /// Bit `i` is the high bit of element `i`.
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; QK / 2],
}

/// `block_q8_0`: f16 scale, 32 signed bytes.
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale (f16).
    pub d: [u8; 2],
    /// Quants (i8).
    pub qs: [u8; QK],
}

/// `block_q2_K`: 16 4-bit scale/min pairs, 2-bit quants, f16 d and dmin.
#[repr(C)]
pub struct BlockQ2K {
    /// Low nibble: scale, high nibble: min, of each 16-element group.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale of the mins (f16).
    pub dmin: [u8; 2],
}

/// `block_q3_K`: high-bit mask, 2-bit low quants, 16 packed 6-bit scales, f16 d.
#[repr(C)]
pub struct BlockQ3K {
    /// Third bit of each quant (set means "no -4 offset").
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of each quant.
    pub qs: [u8; QK_K / 4],
    /// 16 6-bit scales (biased by 32), packed.
    pub scales: [u8; 12],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

/// `block_q4_K`: f16 d and dmin, 8 packed 6-bit scale/min pairs, 4-bit quants.
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale of the mins (f16).
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}

/// `block_q5_K`: as Q4_K plus one high bit per quant.
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales (f16).
    pub d: [u8; 2],
    /// Super-block scale of the mins (f16).
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// 5th bit of each quant.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits of each quant.
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: low 4 bits, high 2 bits, 16 i8 scales, f16 d.
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits of each quant.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of each quant.
    pub qh: [u8; QK_K / 4],
    /// Scale of each 16-element group (i8).
    pub scales: [u8; QK_K / 16],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

/// `block_q8_K`: f32 d, 256 signed bytes, 16 i16 group sums.
#[repr(C)]
pub struct BlockQ8K {
    /// Scale (f32, little-endian).
    pub d: [u8; 4],
    /// Quants (i8).
    pub qs: [u8; QK_K],
    /// Sum of each 16 quants (i16, little-endian).
    pub bsums: [u8; QK_K / 16 * 2],
}

const _: () = {
    assert!(size_of::<BlockQ4_0>() == 18);
    assert!(size_of::<BlockQ4_1>() == 20);
    assert!(size_of::<BlockQ5_0>() == 22);
    assert!(size_of::<BlockQ5_1>() == 24);
    assert!(size_of::<BlockQ8_0>() == 34);
    assert!(size_of::<BlockQ2K>() == 84);
    assert!(size_of::<BlockQ3K>() == 110);
    assert!(size_of::<BlockQ4K>() == 144);
    assert!(size_of::<BlockQ5K>() == 176);
    assert!(size_of::<BlockQ6K>() == 210);
    assert!(size_of::<BlockQ8K>() == 292);
};

/// Field offsets used by the codecs (derived from the structs above).
pub mod off {
    use super::*;

    /// Q4_0 quants.
    pub const Q4_0_QS: usize = offset_of!(BlockQ4_0, qs);
    /// Q4_1 min.
    pub const Q4_1_M: usize = offset_of!(BlockQ4_1, m);
    /// Q4_1 quants.
    pub const Q4_1_QS: usize = offset_of!(BlockQ4_1, qs);
    /// Q5_0 high bits.
    pub const Q5_0_QH: usize = offset_of!(BlockQ5_0, qh);
    /// Q5_0 quants.
    pub const Q5_0_QS: usize = offset_of!(BlockQ5_0, qs);
    /// Q5_1 min.
    pub const Q5_1_M: usize = offset_of!(BlockQ5_1, m);
    /// Q5_1 high bits.
    pub const Q5_1_QH: usize = offset_of!(BlockQ5_1, qh);
    /// Q5_1 quants.
    pub const Q5_1_QS: usize = offset_of!(BlockQ5_1, qs);
    /// Q8_0 quants.
    pub const Q8_0_QS: usize = offset_of!(BlockQ8_0, qs);
    /// Q2_K quants.
    pub const Q2K_QS: usize = offset_of!(BlockQ2K, qs);
    /// Q2_K d.
    pub const Q2K_D: usize = offset_of!(BlockQ2K, d);
    /// Q2_K dmin.
    pub const Q2K_DMIN: usize = offset_of!(BlockQ2K, dmin);
    /// Q3_K low quants.
    pub const Q3K_QS: usize = offset_of!(BlockQ3K, qs);
    /// Q3_K scales.
    pub const Q3K_SCALES: usize = offset_of!(BlockQ3K, scales);
    /// Q3_K d.
    pub const Q3K_D: usize = offset_of!(BlockQ3K, d);
    /// Q4_K dmin.
    pub const Q4K_DMIN: usize = offset_of!(BlockQ4K, dmin);
    /// Q4_K scales.
    pub const Q4K_SCALES: usize = offset_of!(BlockQ4K, scales);
    /// Q4_K quants.
    pub const Q4K_QS: usize = offset_of!(BlockQ4K, qs);
    /// Q5_K dmin.
    pub const Q5K_DMIN: usize = offset_of!(BlockQ5K, dmin);
    /// Q5_K scales.
    pub const Q5K_SCALES: usize = offset_of!(BlockQ5K, scales);
    /// Q5_K high bits.
    pub const Q5K_QH: usize = offset_of!(BlockQ5K, qh);
    /// Q5_K low quants.
    pub const Q5K_QS: usize = offset_of!(BlockQ5K, qs);
    /// Q6_K high bits.
    pub const Q6K_QH: usize = offset_of!(BlockQ6K, qh);
    /// Q6_K scales.
    pub const Q6K_SCALES: usize = offset_of!(BlockQ6K, scales);
    /// Q6_K d.
    pub const Q6K_D: usize = offset_of!(BlockQ6K, d);
    /// Q8_K quants.
    pub const Q8K_QS: usize = offset_of!(BlockQ8K, qs);
    /// Q8_K group sums.
    pub const Q8K_BSUMS: usize = offset_of!(BlockQ8K, bsums);

    // Q4_K and Q5_K share their header, so code reading d, dmin and the
    // scales serves both.
    const _: () = assert!(Q4K_DMIN == Q5K_DMIN && Q4K_SCALES == Q5K_SCALES);
}

/// Reads a little-endian f16 at `at` as f32 (exact).
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Writes `v` rounded to f16 (nearest, ties to even) at `at`.
#[inline(always)]
pub(crate) fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// Scale and min `j` (0..8) of the 12-byte packed Q4_K / Q5_K scales.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Decodes all 8 scales and 8 mins of the 12-byte packed Q4_K / Q5_K scales.
#[inline(always)]
pub(crate) fn scales_mins_k4(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, q);
        sc[j] = s;
        mn[j] = m;
    }
    (sc, mn)
}

/// The 16 signed 6-bit scales of Q3_K (already un-biased, -32..=31).
#[inline(always)]
pub(crate) fn scales_q3k(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let lo = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = ((lo | (hi << 4)) as i8).wrapping_sub(32);
    }
    out
}
