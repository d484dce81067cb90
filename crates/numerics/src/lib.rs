//! `exodus-numerics`: how exodus stores numbers.
//!
//! Every low-precision format of the stack, bit-exact to its published
//! specification, each with a scalar reference codec and, for bulk
//! conversions, SIMD versions picked at run time:
//!
//! - element formats ([`ElementFormat`]): f32, f16, bf16 (via the `half`
//!   crate), OCP FP8 E4M3/E5M2, OCP MX FP6 E2M3/E3M2 and FP4 E2M1
//!   ([`minifloat`]), E8M0 scales ([`e8m0`]), Huawei HiF8 ([`hif8`]);
//! - block formats: OCP MX v1.0 ([`mx`]), DeepSeek-style block-scaled FP8
//!   ([`fp8_block`]), GGUF quant blocks ([`gguf`]);
//! - one name for each of them ([`Format`]), as used on the command line,
//!   with a description table ([`FormatInfo`]) and byte-buffer
//!   quantize/dequantize.
//!
//! ```
//! use exodus_numerics::mx::ScaleRule;
//! use exodus_numerics::{EncodeOptions, ElementFormat, Format, QuantizeOptions};
//!
//! let e4m3 = ElementFormat::Fp8E4M3;
//! let code = e4m3.encode(300.0, EncodeOptions::SATURATE);
//! assert_eq!(e4m3.decode(code), 288.0); // 3 mantissa bits: 256, 288, 320, ...
//!
//! let mxfp4: Format = "mxfp4".parse()?;
//! let x: Vec<f32> = (0..32).map(|i| i as f32 / 8.0).collect(); // 0 ..= 3.875
//! let bytes = mxfp4.quantize(&x, &Default::default())?;
//! assert_eq!(bytes.len(), 17); // one E8M0 scale + 32 packed 4-bit codes
//! let y = mxfp4.dequantize(&bytes, x.len())?;
//! // The OCP scale rule picks 2^(floor(log2 3.875) - 2) = 0.5, so the grid
//! // tops out at 6 * 0.5 = 3.0 and the largest inputs clip:
//! assert_eq!(y[31], 3.0);
//! // The round-up rule picks 2^ceil(log2(3.875 / 6)) = 1 and clips nothing.
//! let ceil = QuantizeOptions { scale_rule: ScaleRule::Ceil, ..Default::default() };
//! let y = mxfp4.dequantize(&mxfp4.quantize(&x, &ceil)?, x.len())?;
//! assert_eq!(y[31], 4.0);
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 0.5));
//! # Ok::<(), exodus_numerics::NumericsError>(())
//! ```
//!
//! Nothing here panics on user input: malformed lengths and names come back
//! as [`NumericsError`].
//!
//! `unsafe` code is denied crate-wide and allowed only in the modules that
//! hold SIMD intrinsics (`simd::x86`, `simd::neon`, `gguf::x86`), each
//! behind safe functions with a scalar twin the tests compare against.

#![deny(unsafe_code)]

mod blocks;
pub mod bulk;
pub mod cpu;
pub mod e8m0;
pub mod element;
pub mod error;
pub mod format;
pub mod fp8_block;
pub mod gguf;
pub mod hif8;
pub mod minifloat;
pub mod mx;
pub mod pack;
pub mod rounding;
pub mod sample;
mod simd;

pub use element::ElementFormat;
pub use error::{NumericsError, Result};
pub use format::{Format, FormatInfo, QuantizeOptions};
pub use rounding::{EncodeOptions, Overflow, Rounding};
