//! Rounding and overflow policies shared by every encoder.

use crate::error::{NumericsError, Result};

/// How a value that falls between two representable numbers is rounded.
///
/// Every encoder rounds to the *nearest* representable value; the modes
/// differ only on an exact tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Rounding {
    /// Ties go to the neighbour whose encoding ends in a 0 bit (IEEE 754
    /// roundTiesToEven). The default everywhere, and what the OCP FP8/MX
    /// specifications require.
    #[default]
    NearestEven,
    /// Ties go to the neighbour of larger magnitude. The HiF8 paper's "TA"
    /// rounding (and what the `en_dtypes` package does for HiF8), and what
    /// `ml_dtypes` does for E8M0.
    NearestAway,
}

impl Rounding {
    /// Parse a command-line name: `even` or `away`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "even" | "rne" | "nearest-even" => Ok(Rounding::NearestEven),
            "away" | "ta" | "nearest-away" => Ok(Rounding::NearestAway),
            _ => Err(NumericsError::UnknownOption {
                what: "rounding",
                value: name.to_string(),
                expected: "even, away",
            }),
        }
    }

    /// Round `x` (an exact multiple of 1/2 or finer, held exactly in f64) to
    /// an integer under this mode.
    #[inline]
    pub(crate) fn round_f64(self, x: f64) -> f64 {
        match self {
            Rounding::NearestEven => x.round_ties_even(),
            Rounding::NearestAway => x.round(),
        }
    }
}

/// What an encoder does with a finite value beyond the format's largest
/// finite number (after rounding), and with an infinite input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Overflow {
    /// Clamp to ± the largest finite value. The default: it is what the OCP
    /// MX specification prescribes for block elements and what inference
    /// kernels expect (an overflowing activation should not become NaN).
    #[default]
    Saturate,
    /// Produce ±Inf where the format has infinities (E5M2, HiF8), otherwise
    /// NaN where it has one (E4M3, E8M0). Formats with neither (FP6, FP4)
    /// saturate. This is the policy of `ml_dtypes` casts.
    NonFinite,
}

impl Overflow {
    /// Parse a command-line name: `saturate` or `nonfinite`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "saturate" | "sat" => Ok(Overflow::Saturate),
            "nonfinite" | "inf" | "nan" => Ok(Overflow::NonFinite),
            _ => Err(NumericsError::UnknownOption {
                what: "overflow policy",
                value: name.to_string(),
                expected: "saturate, nonfinite",
            }),
        }
    }
}

/// Options for an element encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct EncodeOptions {
    /// Tie-breaking rule.
    pub rounding: Rounding,
    /// Overflow policy.
    pub overflow: Overflow,
}

impl EncodeOptions {
    /// Round-to-nearest-even with saturation: the default.
    pub const SATURATE: EncodeOptions = EncodeOptions {
        rounding: Rounding::NearestEven,
        overflow: Overflow::Saturate,
    };
    /// Round-to-nearest-even, overflow to Inf/NaN (the `ml_dtypes` cast).
    pub const NONFINITE: EncodeOptions = EncodeOptions {
        rounding: Rounding::NearestEven,
        overflow: Overflow::NonFinite,
    };
}
