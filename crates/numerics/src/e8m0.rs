//! E8M0: the unsigned power-of-two scale of the OCP MX formats.
//!
//! Code `e` is `2^(e - 127)` for `e` in `0..=254`; `0xFF` is NaN. There is no
//! sign, zero or infinity.
//!
//! Encoding an arbitrary `f32` (the MX quantizers do not need it: they
//! compute the scale exponent directly) rounds to the nearest power of two on
//! the *linear* scale: between `2^k` and `2^(k+1)` the midpoint is
//! `1.5 * 2^k`. Choices where the specification says nothing:
//! - zero, negative numbers and NaN encode to NaN (`0xFF`): none of them
//!   has a representation, and mapping zero to `2^-127` would hide a bug in
//!   a scale computation;
//! - positive values below `2^-127` encode to `0x00` (`2^-127`);
//! - values that round above `2^127`, and +Inf, become NaN under
//!   [`Overflow::NonFinite`] and `0xFE` (`2^127`) under
//!   [`Overflow::Saturate`].
//!
//! `ml_dtypes.float8_e8m0fnu` rounds ties away from zero (3.0 becomes 4.0);
//! exodus defaults to ties-to-even-code (3.0 becomes 2.0) and offers
//! [`Rounding::NearestAway`] to match it.

use crate::minifloat::{floor_log2, pow2};
use crate::rounding::{EncodeOptions, Overflow, Rounding};

/// The NaN code.
pub const NAN: u8 = 0xff;
/// Exponent bias.
pub const BIAS: i32 = 127;

/// Decode a code to `f32` (`2^-127` is an `f32` subnormal, still exact).
pub fn decode(code: u8) -> f32 {
    if code == NAN {
        f32::NAN
    } else {
        pow2(code as i32 - BIAS) as f32
    }
}

/// The code of `2^exponent`, or `None` outside `-127..=127`.
pub fn from_exponent(exponent: i32) -> Option<u8> {
    (-BIAS..=BIAS)
        .contains(&exponent)
        .then(|| (exponent + BIAS) as u8)
}

/// Encode a value under `opts` (see the module documentation).
pub fn encode(x: f32, opts: EncodeOptions) -> u8 {
    let x = x as f64;
    if x.is_nan() || x <= 0.0 {
        return NAN;
    }
    if x.is_infinite() {
        return overflow_code(opts.overflow);
    }
    let k = floor_log2(x);
    if k < -BIAS {
        return 0;
    }
    // x = f * 2^k with f in [1, 2): compare f with the midpoint 1.5.
    let f = x * pow2(-k);
    let up = match f.partial_cmp(&1.5) {
        Some(std::cmp::Ordering::Greater) => true,
        Some(std::cmp::Ordering::Less) | None => false,
        Some(std::cmp::Ordering::Equal) => match opts.rounding {
            Rounding::NearestAway => true,
            Rounding::NearestEven => (k + BIAS) % 2 == 1, // odd code: go to the even one above
        },
    };
    let e = k + i32::from(up);
    from_exponent(e).unwrap_or_else(|| overflow_code(opts.overflow))
}

fn overflow_code(overflow: Overflow) -> u8 {
    match overflow {
        Overflow::Saturate => 0xfe,
        Overflow::NonFinite => NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_limits() {
        assert_eq!(decode(127), 1.0);
        assert_eq!(decode(0), 2f32.powi(-127));
        assert_eq!(decode(254), 2f32.powi(127));
        assert!(decode(255).is_nan());
    }

    #[test]
    fn encode_rounding() {
        let even = EncodeOptions::SATURATE;
        let away = EncodeOptions {
            rounding: Rounding::NearestAway,
            ..even
        };
        assert_eq!(encode(3.0, even), 128); // tie between 2 (128) and 4 (129)
        assert_eq!(encode(3.0, away), 129);
        assert_eq!(encode(1.5, even), 128); // tie between 1 (127) and 2 (128)
        assert_eq!(encode(1.49, even), 127);
        assert_eq!(encode(0.0, even), NAN);
        assert_eq!(encode(-1.0, even), NAN);
        assert_eq!(encode(f32::MAX, even), 0xfe);
        assert_eq!(encode(f32::MAX, EncodeOptions::NONFINITE), NAN);
        assert_eq!(encode(1e-45, even), 0);
    }
}
