//! HiF8 (HiFloat8), the tapered-precision 8-bit float of Huawei Ascend
//! ("Ascend HiFloat8 Format for Deep Learning", Luo et al., 2024).
//!
//! A code is `sign(1) | dot(2..4) | exponent(D) | mantissa(1..3)`. The
//! prefix-coded dot field gives the width `D` of the exponent field, so
//! small exponents keep more mantissa bits:
//!
//! | dot    | D | exponents            | mantissa bits |
//! |--------|---|----------------------|---------------|
//! | `11`   | 4 | ±8 ..= ±15           | 1             |
//! | `10`   | 3 | ±4 ..= ±7            | 2             |
//! | `01`   | 2 | ±2, ±3               | 3             |
//! | `001`  | 1 | ±1                   | 3             |
//! | `0001` | 0 | 0                    | 3             |
//! | `0000` | – | denormal: `2^(m-23)` | (3-bit m)     |
//!
//! The exponent field is sign-magnitude with an implicit leading magnitude
//! bit: with `D` bits, the first is the exponent's sign and the other `D-1`
//! bits `M` give `|E| = 2^(D-1) + M`. A normal value is
//! `(-1)^S * 2^E * 1.mantissa`; a denormal (dot `0000`, 3-bit `m` >= 1) is
//! `(-1)^S * 2^(m - 23)`. Specials: `0x00` is zero (there is one zero),
//! `0x80` is NaN, `0x6F`/`0xEF` (E = 15, mantissa 1) are ±Inf. The largest
//! finite value is `2^15 = 32768`, the smallest normal `2^-15`, the smallest
//! denormal `2^-22`.
//!
//! Choices the paper leaves open, and what exodus does:
//! - Rounding: the paper defines "TA" (round half away from zero, as the
//!   `en_dtypes` package does) and a hybrid rounding. exodus rounds to
//!   nearest and breaks ties by [`Rounding`]: `NearestEven` (default) picks
//!   the neighbour whose *code* ends in 0 — the same as IEEE ties-to-even
//!   wherever the mantissa is at least one bit wide, and for the
//!   power-of-two denormals it picks the even denormal code;
//!   `NearestAway` reproduces TA and matches `en_dtypes` bit for bit.
//! - Ties between adjacent values are decided on the linear scale (the
//!   midpoint of `2^k` and `2^(k+1)` is `1.5 * 2^k`), also in the denormal
//!   range.
//! - Overflow: a value whose rounding would reach the Inf code (i.e. at or
//!   above the midpoint `40960` of 32768 and 49152) becomes ±Inf under
//!   [`Overflow::NonFinite`] (as `en_dtypes` does) and ±32768 under
//!   [`Overflow::Saturate`].
//! - Negative zero encodes to `0x00` (the only zero); NaN encodes to `0x80`.

use std::sync::OnceLock;

use crate::minifloat::{floor_log2, pow2};
use crate::rounding::{EncodeOptions, Overflow, Rounding};

/// The NaN code.
pub const NAN: u8 = 0x80;
/// The +Inf code (`0xEF` is -Inf).
pub const INF: u8 = 0x6f;
/// The code of the largest finite value, 32768.
pub const MAX_FINITE: u8 = 0x6e;

/// The fields of a non-special code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Normal: value `2^exponent * (1 + mantissa / 2^mantissa_bits)`.
    Normal {
        /// Exponent width D (0..=4).
        dot: u8,
        /// The decoded exponent.
        exponent: i32,
        /// Mantissa field.
        mantissa: u8,
        /// Mantissa width (1..=3).
        mantissa_bits: u32,
    },
    /// Denormal: value `2^(m - 23)`.
    Denormal {
        /// The 3-bit denormal field (1..=7).
        m: u8,
    },
}

/// Split the magnitude bits (sign removed, `code & 0x7f`, not 0 / NaN) into fields.
pub fn fields(code: u8) -> Fields {
    let rest = code & 0x7f;
    let (dot, exp_bits_value, mantissa, mantissa_bits) = match rest {
        0x60..=0x7f => (4u8, (rest >> 1) & 0xf, rest & 1, 1u32),
        0x40..=0x5f => (3, (rest >> 2) & 0x7, rest & 3, 2),
        0x20..=0x3f => (2, (rest >> 3) & 0x3, rest & 7, 3),
        0x10..=0x1f => (1, (rest >> 3) & 0x1, rest & 7, 3),
        0x08..=0x0f => (0, 0, rest & 7, 3),
        _ => return Fields::Denormal { m: rest & 7 },
    };
    let exponent = if dot == 0 {
        0
    } else {
        let magnitude_bits = dot as u32 - 1;
        let negative = exp_bits_value >> magnitude_bits & 1 == 1;
        let magnitude =
            (1i32 << magnitude_bits) + (exp_bits_value as i32 & ((1 << magnitude_bits) - 1));
        if negative {
            -magnitude
        } else {
            magnitude
        }
    };
    Fields::Normal {
        dot,
        exponent,
        mantissa,
        mantissa_bits,
    }
}

/// Decode one code.
pub fn decode(code: u8) -> f32 {
    if code == NAN {
        return f32::NAN;
    }
    let magnitude = match code & 0x7f {
        0 => 0.0,
        INF => f64::INFINITY,
        _ => match fields(code) {
            Fields::Denormal { m } => pow2(m as i32 - 23),
            Fields::Normal {
                exponent,
                mantissa,
                mantissa_bits,
                ..
            } => {
                (mantissa as u32 + (1 << mantissa_bits)) as f64
                    * pow2(exponent - mantissa_bits as i32)
            }
        },
    };
    let value = if code & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    };
    value as f32
}

/// Non-negative finite values in increasing order with their codes, then a
/// virtual entry for the Inf code at `1.5 * 2^15` (the value a 1-bit
/// mantissa would give it), which stands for "overflow".
fn ladder() -> &'static [(f64, u8)] {
    static LADDER: OnceLock<Vec<(f64, u8)>> = OnceLock::new();
    LADDER.get_or_init(|| {
        let mut values: Vec<(f64, u8)> = (0u8..0x80)
            .filter(|&c| c != INF)
            .map(|c| (decode(c) as f64, c))
            .collect();
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        values.push((1.5 * pow2(15), INF));
        values
    })
}

/// Mantissa width of normal exponent `e` (|e| <= 15).
fn mantissa_bits(e: i32) -> i32 {
    match e.unsigned_abs() {
        0..=3 => 3,
        4..=7 => 2,
        _ => 1,
    }
}

/// The magnitude code of the normal value `2^e * (1 + mantissa / 2^width)`.
fn normal_code(e: i32, mantissa: u8) -> u8 {
    let negative = u8::from(e < 0) << 4;
    match e.unsigned_abs() as u8 {
        0 => 0x08 | mantissa,
        1 => 0x10 | negative >> 1 | mantissa,
        m @ 2..=3 => 0x20 | negative | (m - 2) << 3 | mantissa,
        m @ 4..=7 => 0x40 | negative | (m - 4) << 2 | mantissa,
        m => 0x60 | negative | (m - 8) << 1 | mantissa,
    }
}

/// Encode a value (see the module documentation for the rounding rules).
///
/// Normal magnitudes (`>= 2^-15`) are rounded arithmetically at the
/// mantissa width of their binade; the denormal range, zero and the
/// infinities go through [`encode_by_search`], the reference that walks
/// the sorted table of values. Tests check both agree on every bf16 value.
pub fn encode(x: f32, opts: EncodeOptions) -> u8 {
    let a = (x as f64).abs();
    if !(a >= pow2(-15) && a.is_finite()) {
        return encode_by_search(x, opts);
    }
    let sign = if x < 0.0 { 0x80 } else { 0 };
    let e = floor_log2(a);
    if e > 15 {
        return sign | overflow_code(opts.overflow);
    }
    let width = mantissa_bits(e);
    let n = opts.rounding.round_f64(a * pow2(width - e)) as u32; // in 2^width ..= 2^(width+1)
    let (e, mantissa) = if n == 1 << (width + 1) {
        (e + 1, 0) // carried into the next binade: exactly 2^(e+1)
    } else {
        (e, (n - (1 << width)) as u8)
    };
    if e > 15 || (e == 15 && mantissa != 0) {
        return sign | overflow_code(opts.overflow); // 0x6F would be Inf
    }
    sign | normal_code(e, mantissa)
}

fn overflow_code(overflow: Overflow) -> u8 {
    match overflow {
        Overflow::NonFinite => INF,
        Overflow::Saturate => MAX_FINITE,
    }
}

/// Encode by searching the sorted table of representable values: the
/// reference definition of rounding (nearest value, ties by `opts`).
pub fn encode_by_search(x: f32, opts: EncodeOptions) -> u8 {
    if x.is_nan() {
        return NAN;
    }
    let sign = if x < 0.0 { 0x80 } else { 0 };
    let a = (x as f64).abs();
    let ladder = ladder();
    let code = if a.is_infinite() {
        INF
    } else {
        // First entry strictly greater than `a`; `a` >= 0 = ladder[0].
        let hi = ladder.partition_point(|&(v, _)| v <= a);
        if hi == ladder.len() {
            INF
        } else {
            let (lo_value, lo_code) = ladder[hi - 1];
            let (hi_value, hi_code) = ladder[hi];
            if a == lo_value {
                lo_code
            } else {
                match (a - lo_value).partial_cmp(&(hi_value - a)) {
                    Some(std::cmp::Ordering::Less) => lo_code,
                    Some(std::cmp::Ordering::Greater) => hi_code,
                    _ => match opts.rounding {
                        Rounding::NearestAway => hi_code,
                        Rounding::NearestEven if lo_code & 1 == 0 => lo_code,
                        Rounding::NearestEven => hi_code,
                    },
                }
            }
        }
    };
    match code {
        0 => 0, // one zero, whatever the sign
        INF => sign | overflow_code(opts.overflow),
        _ => sign | code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landmark_codes() {
        assert_eq!(decode(0x00), 0.0);
        assert!(decode(NAN).is_nan());
        assert_eq!(decode(0x08), 1.0);
        assert_eq!(decode(0x10), 2.0);
        assert_eq!(decode(0x18), 0.5);
        assert_eq!(decode(0x0f), 1.875);
        assert_eq!(decode(MAX_FINITE), 32768.0);
        assert_eq!(decode(INF), f32::INFINITY);
        assert_eq!(decode(0xef), f32::NEG_INFINITY);
        assert_eq!(decode(0x7e), 2f32.powi(-15)); // smallest normal
        assert_eq!(decode(0x01), 2f32.powi(-22)); // smallest denormal
        assert_eq!(decode(0x07), 2f32.powi(-16)); // largest denormal
    }

    /// The paper's abstract: 7 exponents with 3 mantissa bits, 8 with 2,
    /// 16 with 1, and denormals adding 7 binades to 31, for 38 in all.
    #[test]
    fn the_papers_counts() {
        let mut by_width = [
            std::collections::BTreeSet::new(),
            Default::default(),
            Default::default(),
        ];
        let mut denormals = 0;
        for code in 1u8..0x80 {
            match fields(code) {
                Fields::Normal {
                    exponent,
                    mantissa_bits,
                    ..
                } => {
                    by_width[mantissa_bits as usize - 1].insert(exponent);
                }
                Fields::Denormal { .. } => denormals += 1,
            }
        }
        assert_eq!(by_width[2].len(), 7); // -3..=3
        assert_eq!(by_width[1].len(), 8); // ±4..=±7
        assert_eq!(by_width[0].len(), 16); // ±8..=±15
        assert_eq!(denormals, 7);
        let binades = by_width.iter().map(|s| s.len()).sum::<usize>() + denormals;
        assert_eq!(binades, 38);
    }

    #[test]
    fn arithmetic_encoder_equals_the_table_search() {
        let options = [
            (Rounding::NearestEven, Overflow::Saturate),
            (Rounding::NearestEven, Overflow::NonFinite),
            (Rounding::NearestAway, Overflow::Saturate),
            (Rounding::NearestAway, Overflow::NonFinite),
        ];
        for (rounding, overflow) in options {
            let opts = EncodeOptions { rounding, overflow };
            // Every bf16 value, and every f32 from 2^-16 to 2^16 in steps of 2^-13 relative.
            let bf16 = (0..=u16::MAX).map(|b| f32::from_bits((b as u32) << 16));
            let dense = (0..(32u32 << 16)).map(|i| f32::from_bits((111 << 23) + i * 8));
            for x in bf16.chain(dense) {
                assert_eq!(encode(x, opts), encode_by_search(x, opts), "{x:e} {opts:?}");
            }
        }
    }

    #[test]
    fn tie_rules() {
        let even = EncodeOptions::SATURATE;
        let away = EncodeOptions {
            rounding: Rounding::NearestAway,
            overflow: Overflow::NonFinite,
        };
        // 1.0625 lies halfway between 1.0 (0x08) and 1.125 (0x09).
        assert_eq!(encode(1.0625, even), 0x08);
        assert_eq!(encode(1.0625, away), 0x09);
        // Overflow threshold: 40960 is halfway between 32768 and "49152".
        assert_eq!(encode(40960.0, even), MAX_FINITE);
        assert_eq!(encode(40960.0, away), INF);
        assert_eq!(encode(-1e30, away), 0xef);
        assert_eq!(encode(-1e30, even), 0x80 | MAX_FINITE);
        // Below the smallest denormal.
        assert_eq!(encode(2f32.powi(-23), even), 0);
        assert_eq!(encode(2f32.powi(-23), away), 0x01);
        assert_eq!(encode(-0.0, even), 0);
    }
}
