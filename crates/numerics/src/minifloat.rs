//! Small IEEE-style floating-point formats: FP8 (E4M3, E5M2), FP6 (E2M3,
//! E3M2) and FP4 (E2M1), described by one [`MiniFloat`] parameter set and
//! converted by one scalar reference codec.
//!
//! A code is `sign | exponent field | mantissa field`, most significant bit
//! first, held in the low bits of a `u8`. Exponent field 0 holds zero and
//! subnormals (`mantissa * 2^(1 - bias - man_bits)`); other fields hold
//! normals (`(1 + mantissa / 2^man_bits) * 2^(field - bias)`). The formats
//! differ in what the top codes mean, see [`Specials`].
//!
//! Encoding works on `f64` so that a value divided by a power-of-two block
//! scale (as the MX and block-FP8 quantizers do) is rounded exactly once.

use crate::rounding::{EncodeOptions, Overflow};

/// What the largest exponent field encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Specials {
    /// IEEE 754 style (E5M2): the all-ones exponent holds ±Inf (mantissa 0)
    /// and NaN (any other mantissa).
    Ieee,
    /// OCP "fn" style (E4M3): no infinities; only `S.1111.111` is NaN, every
    /// other code with the all-ones exponent is a normal number.
    NanOnly,
    /// OCP MX FP6/FP4 style: every code is a finite number.
    None,
}

/// One small floating-point format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MiniFloat {
    /// Name used on the command line (`fp8-e4m3`, ...).
    pub name: &'static str,
    /// Width of the exponent field.
    pub exp_bits: u32,
    /// Width of the mantissa field.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Meaning of the top exponent field.
    pub specials: Specials,
}

/// OCP FP8 E4M3 ("e4m3fn"): bias 7, max 448, NaN = S.1111.111, no Inf.
pub const FP8_E4M3: MiniFloat = MiniFloat {
    name: "fp8-e4m3",
    exp_bits: 4,
    man_bits: 3,
    bias: 7,
    specials: Specials::NanOnly,
};

/// OCP FP8 E5M2: IEEE-like, bias 15, max 57344, ±Inf and NaNs.
pub const FP8_E5M2: MiniFloat = MiniFloat {
    name: "fp8-e5m2",
    exp_bits: 5,
    man_bits: 2,
    bias: 15,
    specials: Specials::Ieee,
};

/// OCP MX FP6 E2M3: bias 1, max 7.5, no Inf/NaN.
pub const FP6_E2M3: MiniFloat = MiniFloat {
    name: "fp6-e2m3",
    exp_bits: 2,
    man_bits: 3,
    bias: 1,
    specials: Specials::None,
};

/// OCP MX FP6 E3M2: bias 3, max 28, no Inf/NaN.
pub const FP6_E3M2: MiniFloat = MiniFloat {
    name: "fp6-e3m2",
    exp_bits: 3,
    man_bits: 2,
    bias: 3,
    specials: Specials::None,
};

/// OCP MX FP4 E2M1: bias 1, max 6, no Inf/NaN.
pub const FP4_E2M1: MiniFloat = MiniFloat {
    name: "fp4-e2m1",
    exp_bits: 2,
    man_bits: 1,
    bias: 1,
    specials: Specials::None,
};

/// `2^k` as an exact `f64` for the exponents this crate needs.
#[inline]
pub(crate) fn pow2(k: i32) -> f64 {
    debug_assert!((-1074..=1023).contains(&k));
    if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (k + 1074))
    }
}

/// `floor(log2(a))` of a finite positive `f64`, exactly.
#[inline]
pub(crate) fn floor_log2(a: f64) -> i32 {
    debug_assert!(a > 0.0 && a.is_finite());
    let bits = a.to_bits();
    let field = ((bits >> 52) & 0x7ff) as i32;
    if field != 0 {
        field - 1023
    } else {
        // Subnormal: the leading one of the mantissa gives the exponent.
        let mant = bits & ((1u64 << 52) - 1);
        -1011 - mant.leading_zeros() as i32
    }
}

impl MiniFloat {
    /// Total width of a code in bits (sign + exponent + mantissa).
    pub const fn bits(&self) -> u32 {
        1 + self.exp_bits + self.man_bits
    }

    /// Mask of the meaningful bits of a code.
    pub const fn code_mask(&self) -> u8 {
        ((1u32 << self.bits()) - 1) as u8
    }

    const fn sign_bit(&self) -> u8 {
        1 << (self.exp_bits + self.man_bits)
    }

    const fn exp_field_max(&self) -> u32 {
        (1 << self.exp_bits) - 1
    }

    /// Exponent of the smallest normal number (`1 - bias`).
    pub const fn emin(&self) -> i32 {
        1 - self.bias
    }

    /// Code (without sign) of the largest finite number.
    pub const fn max_finite_code(&self) -> u8 {
        let all = (1u32 << (self.exp_bits + self.man_bits)) - 1;
        let code = match self.specials {
            Specials::Ieee => all - (1 << self.man_bits), // exponent max-1, mantissa all ones
            Specials::NanOnly => all - 1,                 // all ones is NaN
            Specials::None => all,
        };
        code as u8
    }

    /// Exponent of the largest normal number (`emax` in the OCP MX spec).
    pub fn emax(&self) -> i32 {
        floor_log2(self.max_finite())
    }

    /// Largest finite value.
    pub fn max_finite(&self) -> f64 {
        self.decode(self.max_finite_code()) as f64
    }

    /// Smallest positive normal value.
    pub fn min_normal(&self) -> f64 {
        pow2(self.emin())
    }

    /// Smallest positive subnormal value.
    pub fn min_subnormal(&self) -> f64 {
        pow2(self.emin() - self.man_bits as i32)
    }

    /// Whether the format has ±Inf.
    pub const fn has_inf(&self) -> bool {
        matches!(self.specials, Specials::Ieee)
    }

    /// Whether the format has NaN.
    pub const fn has_nan(&self) -> bool {
        !matches!(self.specials, Specials::None)
    }

    /// Decode one code (bits above [`bits`](Self::bits) are ignored).
    pub fn decode(&self, code: u8) -> f32 {
        let code = (code & self.code_mask()) as u32;
        let man_mask = (1u32 << self.man_bits) - 1;
        let negative = code & self.sign_bit() as u32 != 0;
        let field = (code >> self.man_bits) & self.exp_field_max();
        let man = code & man_mask;
        let magnitude = match self.specials {
            Specials::Ieee if field == self.exp_field_max() => {
                if man == 0 {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            }
            Specials::NanOnly if field == self.exp_field_max() && man == man_mask => f64::NAN,
            _ if field == 0 => man as f64 * pow2(self.emin() - self.man_bits as i32),
            _ => {
                (man + (1 << self.man_bits)) as f64
                    * pow2(field as i32 - self.bias - self.man_bits as i32)
            }
        };
        let value = if negative { -magnitude } else { magnitude };
        value as f32
    }

    /// Encode an `f32` (see [`encode_f64`](Self::encode_f64)).
    pub fn encode(&self, x: f32, opts: EncodeOptions) -> u8 {
        self.encode_f64(x as f64, opts)
    }

    /// Encode a value: round to nearest under `opts.rounding`, then apply
    /// `opts.overflow` if the rounded magnitude exceeds the largest finite
    /// value (or the input is infinite).
    ///
    /// NaN becomes the format's NaN with the input's sign (E5M2: the quiet
    /// NaN `S.11111.10`; E4M3: `S.1111.111`). FP6/FP4 have no NaN: NaN
    /// becomes zero with the input's sign (a choice; `ml_dtypes` gives zero
    /// with the *opposite* sign). Signed zeros keep their sign.
    pub fn encode_f64(&self, x: f64, opts: EncodeOptions) -> u8 {
        let sign = if x.is_sign_negative() {
            self.sign_bit()
        } else {
            0
        };
        if x.is_nan() {
            return sign | self.nan_code();
        }
        let a = x.abs();
        if a.is_infinite() {
            return sign | self.overflow_code(opts.overflow);
        }
        if a == 0.0 {
            return sign;
        }
        let m = self.man_bits as i32;
        let e = floor_log2(a).max(self.emin());
        // `a` scaled so that one unit is the spacing of representable
        // numbers at exponent `e`: exact, as only the exponent changes.
        let n = opts.rounding.round_f64(a * pow2(m - e));
        if n * pow2(e - m) > self.max_finite() {
            return sign | self.overflow_code(opts.overflow);
        }
        let (n, e) = if n >= pow2(m + 1) {
            (n / 2.0, e + 1) // rounding carried into the next binade
        } else {
            (n, e)
        };
        let n = n as u32;
        let code = if n < (1 << m) {
            n // subnormal (only reachable at e == emin) or zero
        } else {
            (((e + self.bias) as u32) << m) | (n - (1 << m))
        };
        sign | code as u8
    }

    fn nan_code(&self) -> u8 {
        match self.specials {
            Specials::Ieee => {
                ((self.exp_field_max() << self.man_bits) | (1 << (self.man_bits - 1))) as u8
            }
            Specials::NanOnly => self.sign_bit() - 1,
            Specials::None => 0,
        }
    }

    fn overflow_code(&self, overflow: Overflow) -> u8 {
        match (overflow, self.specials) {
            (Overflow::Saturate, _) | (_, Specials::None) => self.max_finite_code(),
            (Overflow::NonFinite, Specials::Ieee) => (self.exp_field_max() << self.man_bits) as u8,
            (Overflow::NonFinite, Specials::NanOnly) => self.nan_code(),
        }
    }

    /// A 256-entry decode table (index = code; bits above the width ignored).
    pub fn decode_table(&self) -> [f32; 256] {
        let mut table = [0.0f32; 256];
        for (code, slot) in table.iter_mut().enumerate() {
            *slot = self.decode(code as u8);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_limits() {
        assert_eq!(FP8_E4M3.max_finite(), 448.0);
        assert_eq!(FP8_E5M2.max_finite(), 57344.0);
        assert_eq!(FP6_E2M3.max_finite(), 7.5);
        assert_eq!(FP6_E3M2.max_finite(), 28.0);
        assert_eq!(FP4_E2M1.max_finite(), 6.0);
        assert_eq!(FP8_E4M3.min_subnormal(), 2f64.powi(-9));
        assert_eq!(FP8_E5M2.min_subnormal(), 2f64.powi(-16));
        assert_eq!(FP8_E4M3.emax(), 8);
        assert_eq!(FP8_E5M2.emax(), 15);
        assert_eq!(FP6_E3M2.emax(), 4);
        assert_eq!(FP6_E2M3.emax(), 2);
        assert_eq!(FP4_E2M1.emax(), 2);
    }

    #[test]
    fn specials() {
        assert!(FP8_E4M3.decode(0x7f).is_nan());
        assert!(FP8_E4M3.decode(0xff).is_nan());
        assert_eq!(FP8_E4M3.decode(0x7e), 448.0);
        assert_eq!(FP8_E5M2.decode(0x7c), f32::INFINITY);
        assert_eq!(FP8_E5M2.decode(0xfc), f32::NEG_INFINITY);
        assert!(FP8_E5M2.decode(0x7d).is_nan());
        assert_eq!(FP8_E4M3.decode(0x80).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn ties_and_overflow() {
        let sat = EncodeOptions::SATURATE;
        let nf = EncodeOptions::NONFINITE;
        // 464 is halfway between 448 (mantissa 110) and 480 (not finite).
        assert_eq!(FP8_E4M3.encode(464.0, nf), 0x7e);
        assert_eq!(FP8_E4M3.encode(465.0, nf), 0x7f);
        assert_eq!(FP8_E4M3.encode(465.0, sat), 0x7e);
        assert_eq!(FP8_E4M3.encode(-1e9, sat), 0xfe);
        assert_eq!(FP8_E5M2.encode(61440.0, nf), 0x7c);
        assert_eq!(FP8_E5M2.encode(61440.0, sat), 0x7b);
        assert_eq!(FP8_E5M2.encode(f32::NEG_INFINITY, nf), 0xfc);
        assert_eq!(FP4_E2M1.encode(f32::INFINITY, nf), 0x7);
        // Halfway between 0 and the smallest subnormal: ties to zero (even).
        assert_eq!(FP8_E5M2.encode(2f32.powi(-17), sat), 0);
        assert_eq!(FP8_E5M2.encode(1.5 * 2f32.powi(-17), sat), 1);
    }

    #[test]
    fn floor_log2_is_exact_on_subnormals() {
        assert_eq!(floor_log2(f64::from_bits(1)), -1074);
        assert_eq!(floor_log2(2f64.powi(-1030) * 1.5), -1030);
        assert_eq!(floor_log2(1.0), 0);
        assert_eq!(floor_log2(0.75), -1);
    }
}
