//! The element types collectives carry, and how each is reduced.
//!
//! On the wire a slice of elements is its own bytes (no copy to encode or
//! decode): the host's little-endian layout, which every supported target
//! shares. f16 and bf16 are reduced through f32 and rounded back once per
//! pair of values, as NCCL and HCCL do.

pub use half::{bf16, f16};

#[cfg(not(target_endian = "little"))]
compile_error!("exodus-comm sends elements in the host's layout, which must be little-endian");

/// A type the data-moving collectives (AllGather, Broadcast, AllToAll)
/// carry: any plain data, fp8 codes (`u8`, see `exodus_numerics`'
/// `FP8_E4M3`) as well as floats.
pub trait Payload: bytemuck::Pod + Send + Sync + std::fmt::Debug + 'static {}

impl<T: bytemuck::Pod + Send + Sync + std::fmt::Debug + 'static> Payload for T {}

/// A type the collectives can move and reduce (f32, f64, f16, bf16, i32).
pub trait Element: Payload + PartialEq {
    /// Bytes of one value on the wire.
    const BYTES: usize = std::mem::size_of::<Self>();
    /// The name in messages.
    const NAME: &'static str;
    /// `a + b` (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// The larger.
    fn max(a: Self, b: Self) -> Self;
    /// The smaller.
    fn min(a: Self, b: Self) -> Self;
    /// The mean of a sum over `n` ranks (integer division for integers).
    fn mean(sum: Self, n: usize) -> Self;
}

/// Implements [`Element`] for a primitive float.
macro_rules! float_element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn max(a: Self, b: Self) -> Self {
                a.max(b)
            }
            fn min(a: Self, b: Self) -> Self {
                a.min(b)
            }
            fn mean(sum: Self, n: usize) -> Self {
                sum / n as $t
            }
        }
    };
}

float_element!(f32, "f32");
float_element!(f64, "f64");

impl Element for i32 {
    const NAME: &'static str = "i32";
    fn add(a: Self, b: Self) -> Self {
        a.wrapping_add(b)
    }
    fn max(a: Self, b: Self) -> Self {
        Ord::max(a, b)
    }
    fn min(a: Self, b: Self) -> Self {
        Ord::min(a, b)
    }
    fn mean(sum: Self, n: usize) -> Self {
        sum / n as i32
    }
}

/// Implements [`Element`] for a 16-bit float through f32.
macro_rules! half_element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn add(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32() + b.to_f32())
            }
            fn max(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32().max(b.to_f32()))
            }
            fn min(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32().min(b.to_f32()))
            }
            fn mean(sum: Self, n: usize) -> Self {
                <$t>::from_f32(sum.to_f32() / n as f32)
            }
        }
    };
}

half_element!(f16, "f16");
half_element!(bf16, "bf16");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_round_once_per_pair() {
        // 2048 + 1 is not an f16 (spacing 2 there): rounds to even, 2048.
        let s = <f16 as Element>::add(f16::from_f32(2048.0), f16::from_f32(1.0));
        assert_eq!(s, f16::from_f32(2048.0));
        let s = <bf16 as Element>::add(bf16::from_f32(1.0), bf16::from_f32(2.0));
        assert_eq!(s, bf16::from_f32(3.0));
        assert_eq!(<f16 as Element>::BYTES, 2);
        assert_eq!(<i32 as Element>::BYTES, 4);
    }
}
