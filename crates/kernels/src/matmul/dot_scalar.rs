//! Scalar row-dot kernels of the decode regime: one encoded row of W
//! against one row of x. They are the portable path and the twins the SIMD
//! kernels (`x86/`, `neon.rs`) are tested against: the integer parts are the same
//! integer sums, only the order of the f32 additions differs.
//!
//! Float formats take `x` as f32; GGUF formats and MXFP4 take `x` quantized
//! to int8 blocks ([`XRow`], see `quant_x.rs`).

use half::{bf16, f16};

use exodus_numerics::{bulk, ElementFormat};

use super::quant_x::XRow;

/// Reads the little-endian f16 at `b[at..at + 2]` as f32.
#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// E8M0 code to f32 (`2^(e - 127)`, `0xFF` is NaN), exact.
#[inline]
pub(crate) fn e8m0_f32(e: u8) -> f32 {
    match e {
        0 => f32::from_bits(0x0040_0000),
        0xFF => f32::NAN,
        _ => f32::from_bits((e as u32) << 23),
    }
}

/// Scales and mins (6 bits each) of the 12 packed bytes of Q4_K / Q5_K.
#[inline]
pub(crate) fn scales_mins_k4(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = q[j] & 63;
            mn[j] = q[j + 4] & 63;
        } else {
            sc[j] = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
            mn[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// Sum of `a[i] * b[i]` with eight partial sums (vectorizable).
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Row of f32 weights (little-endian bytes) · x.
pub(crate) fn f32_row(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (wc, xc) in w.chunks_exact(32).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            let v = f32::from_le_bytes([wc[4 * l], wc[4 * l + 1], wc[4 * l + 2], wc[4 * l + 3]]);
            acc[l] += v * xc[l];
        }
    }
    let done = x.len() / 8 * 8;
    let tail: f32 = w[done * 4..]
        .chunks_exact(4)
        .zip(&x[done..])
        .map(|(c, v)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * v)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Row of f16 weights · x.
pub(crate) fn f16_row(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(2)
        .zip(x)
        .map(|(c, v)| f16::from_le_bytes([c[0], c[1]]).to_f32() * v)
        .sum()
}

/// Row of bf16 weights · x.
pub(crate) fn bf16_row(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(2)
        .zip(x)
        .map(|(c, v)| bf16::from_le_bytes([c[0], c[1]]).to_f32() * v)
        .sum()
}

/// E4M3 codes · x (no scale applied).
pub(crate) fn e4m3_row(codes: &[u8], x: &[f32]) -> f32 {
    match bulk::decode_table(ElementFormat::Fp8E4M3) {
        Some(t) => codes.iter().zip(x).map(|(&c, v)| t[c as usize] * v).sum(),
        None => f32::NAN,
    }
}

/// MXFP8-E4M3 blocks (scale byte + 32 codes) · x.
pub(crate) fn mxfp8_row(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(33)
        .zip(x.chunks_exact(32))
        .map(|(b, xb)| e8m0_f32(b[0]) * e4m3_row(&b[1..], xb))
        .sum()
}

/// Integer dot of 32 codes.
#[inline]
fn idot(w: impl Iterator<Item = i32>, x: &[i8]) -> i32 {
    w.zip(x).map(|(a, &b)| a * b as i32).sum()
}

/// Q8_0 row · int8 x (32-blocks).
pub(crate) fn q8_0_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(34).enumerate() {
        let s = idot(b[2..].iter().map(|&v| v as i8 as i32), &x.q[32 * i..]);
        acc += f16_at(b, 0) * x.d[i] * s as f32;
    }
    acc
}

/// The 32 nibbles of a legacy 4-bit block: element `i` is the low nibble of
/// byte `i`, element `i + 16` the high one.
#[inline]
fn nibbles(qs: &[u8]) -> impl Iterator<Item = i32> + '_ {
    qs.iter()
        .map(|&q| (q & 0x0F) as i32)
        .chain(qs.iter().map(|&q| (q >> 4) as i32))
}

/// Q4_0 row · int8 x: `d * (q - 8)`.
pub(crate) fn q4_0_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(18).enumerate() {
        let s = idot(nibbles(&b[2..18]).map(|q| q - 8), &x.q[32 * i..]);
        acc += f16_at(b, 0) * x.d[i] * s as f32;
    }
    acc
}

/// Q4_1 row · int8 x: `d * q + m`.
pub(crate) fn q4_1_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(20).enumerate() {
        let s = idot(nibbles(&b[4..20]), &x.q[32 * i..]);
        acc += f16_at(b, 0) * x.d[i] * s as f32 + f16_at(b, 2) * x.d[i] * x.sums[i] as f32;
    }
    acc
}

/// Twice the FP4 E2M1 values, by code: integers, so MXFP4 dots are integer.
pub(crate) const FP4_X2: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// MXFP4 row · int8 x (element `2j` in the low nibble of byte `j`).
pub(crate) fn mxfp4_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(17).enumerate() {
        let codes = b[1..17]
            .iter()
            .flat_map(|&c| [FP4_X2[(c & 0x0F) as usize], FP4_X2[(c >> 4) as usize]]);
        let s = idot(codes.map(|v| v as i32), &x.q[32 * i..]);
        acc += e8m0_f32(b[0]) * 0.5 * x.d[i] * s as f32;
    }
    acc
}

/// Q4_K row · int8 x (256-blocks, 16-value sums).
pub(crate) fn q4k_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(144).enumerate() {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let qs = &b[16..144];
        let xq = &x.q[256 * i..256 * (i + 1)];
        let bs = &x.sums[16 * i..16 * (i + 1)];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let shift = 4 * (j % 2);
            let q = qs[32 * (j / 2)..32 * (j / 2) + 32]
                .iter()
                .map(|&v| ((v >> shift) & 0x0F) as i32);
            sumi += sc[j] as i32 * idot(q, &xq[32 * j..]);
            summ += mn[j] as i32 * (bs[2 * j] + bs[2 * j + 1]);
        }
        acc += f16_at(b, 0) * x.d[i] * sumi as f32 - f16_at(b, 2) * x.d[i] * summ as f32;
    }
    acc
}

/// Q5_K row · int8 x.
pub(crate) fn q5k_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(176).enumerate() {
        let (sc, mn) = scales_mins_k4(&b[4..16]);
        let qh = &b[16..48];
        let qs = &b[48..176];
        let xq = &x.q[256 * i..256 * (i + 1)];
        let bs = &x.sums[16 * i..16 * (i + 1)];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let shift = 4 * (j % 2);
            let q = qs[32 * (j / 2)..32 * (j / 2) + 32]
                .iter()
                .zip(qh)
                .map(|(&v, &h)| (((v >> shift) & 0x0F) | (((h >> j) & 1) << 4)) as i32);
            sumi += sc[j] as i32 * idot(q, &xq[32 * j..]);
            summ += mn[j] as i32 * (bs[2 * j] + bs[2 * j + 1]);
        }
        acc += f16_at(b, 0) * x.d[i] * sumi as f32 - f16_at(b, 2) * x.d[i] * summ as f32;
    }
    acc
}

/// Q6_K row · int8 x: `d * scale_g * (q - 32)` per 16-value group.
pub(crate) fn q6k_row(w: &[u8], x: XRow) -> f32 {
    let mut acc = 0f32;
    for (i, b) in w.chunks_exact(210).enumerate() {
        let sc = &b[192..208];
        let xq = &x.q[256 * i..256 * (i + 1)];
        let bs = &x.sums[16 * i..16 * (i + 1)];
        let (mut sumi, mut offset) = (0i32, 0i32);
        for half in 0..2 {
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            for k in 0..4 {
                let lq = &ql[32 * (k % 2)..32 * (k % 2) + 32];
                let (ls, hs) = (4 * (k / 2), 2 * k);
                for g in 0..2 {
                    let idx = 8 * half + 2 * k + g;
                    let q = (16 * g..16 * g + 16)
                        .map(|l| (((lq[l] >> ls) & 0x0F) | (((qh[l] >> hs) & 3) << 4)) as i32);
                    let at = 128 * half + 32 * k + 16 * g;
                    sumi += sc[idx] as i8 as i32 * idot(q, &xq[at..at + 16]);
                    offset += sc[idx] as i8 as i32 * bs[idx];
                }
            }
        }
        acc += f16_at(b, 208) * x.d[i] * (sumi - 32 * offset) as f32;
    }
    acc
}
