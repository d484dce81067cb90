//! Weight matrices owned by the benchmark: random codes with sane scales
//! (the speed of a kernel does not depend on the values), in every weight
//! format the cases use.

use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::mx::MxElement;
use exodus_numerics::sample::SplitMix64;
use exodus_numerics::{ElementFormat, Format};

use crate::error::Result;
use crate::matmul::Weights;

/// A weight format of the matmul cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    /// Plain f32.
    F32,
    /// GGUF Q4_1 (SmolLM2's format): 32 values, f16 scale and min.
    Q4_1,
    /// GGUF Q4_K: 256 values, 6-bit group scales and mins.
    Q4K,
    /// GGUF Q8_0: 32 values, f16 scale.
    Q8_0,
    /// OCP MXFP4: 32 E2M1 values and an E8M0 scale.
    MxFp4,
    /// FP8 E4M3 with one f32 scale per output row.
    Fp8,
}

impl WeightKind {
    /// Every format, in table order.
    pub const ALL: [WeightKind; 6] = [
        WeightKind::F32,
        WeightKind::Q4_1,
        WeightKind::Q4K,
        WeightKind::Q8_0,
        WeightKind::MxFp4,
        WeightKind::Fp8,
    ];

    /// Name used in case names (`f32`, `q4_1`, `q4_k`, `q8_0`, `mxfp4`, `fp8`).
    pub fn name(self) -> &'static str {
        match self {
            WeightKind::F32 => "f32",
            WeightKind::Q4_1 => "q4_1",
            WeightKind::Q4K => "q4_k",
            WeightKind::Q8_0 => "q8_0",
            WeightKind::MxFp4 => "mxfp4",
            WeightKind::Fp8 => "fp8",
        }
    }

    /// Bytes of an `[n, k]` matrix in this format (FP8: codes and one f32
    /// scale per row).
    pub fn matrix_bytes(self, n: usize, k: usize) -> usize {
        let blocks = |t: GgufBlockType| n * k / t.block_elems() * t.block_bytes();
        match self {
            WeightKind::F32 => 4 * n * k,
            WeightKind::Q4_1 => blocks(GgufBlockType::Q4_1),
            WeightKind::Q4K => blocks(GgufBlockType::Q4K),
            WeightKind::Q8_0 => blocks(GgufBlockType::Q8_0),
            WeightKind::MxFp4 => n * k / 32 * MxElement::Fp4E2M1.block_bytes(),
            WeightKind::Fp8 => n * k + 4 * n,
        }
    }

    /// The exodus-numerics format of the encoded kinds (`None` for FP8
    /// with per-row scales, which is not a single [`Format`]).
    pub fn format(self) -> Option<Format> {
        Some(match self {
            WeightKind::F32 => Format::Element(ElementFormat::F32),
            WeightKind::Q4_1 => Format::Gguf(GgufBlockType::Q4_1),
            WeightKind::Q4K => Format::Gguf(GgufBlockType::Q4K),
            WeightKind::Q8_0 => Format::Gguf(GgufBlockType::Q8_0),
            WeightKind::MxFp4 => Format::Mx(MxElement::Fp4E2M1),
            WeightKind::Fp8 => return None,
        })
    }

    /// The kind whose format is `f`, if there is one.
    pub fn of_format(f: Format) -> Option<WeightKind> {
        WeightKind::ALL.into_iter().find(|k| k.format() == Some(f))
    }

    /// Values per block along `k` (the format needs `k` to be a multiple).
    pub fn block_elems(self) -> usize {
        match self {
            WeightKind::F32 | WeightKind::Fp8 => 1,
            WeightKind::Q4K => 256,
            _ => 32,
        }
    }
}

/// An owned `[n, k]` weight matrix; [`OwnedWeights::view`] borrows it as
/// the matmul's [`Weights`].
#[derive(Debug)]
pub enum OwnedWeights {
    /// Bytes in an exodus-numerics format.
    Encoded(Format, Vec<u8>, usize, usize),
    /// FP8 E4M3 codes and one scale per row.
    Fp8Row(Vec<u8>, Vec<f32>, usize, usize),
}

/// FP8 E4M3 codes without NaN (`S.1111.111`).
fn no_nan_e4m3(mut codes: Vec<u8>) -> Vec<u8> {
    codes
        .iter_mut()
        .filter(|c| **c & 0x7F == 0x7F)
        .for_each(|c| *c &= 0xF7);
    codes
}

impl OwnedWeights {
    /// Random `[n, k]` weights in `kind` (`k` must be a multiple of
    /// [`WeightKind::block_elems`]).
    pub fn random(kind: WeightKind, n: usize, k: usize, seed: u64) -> OwnedWeights {
        let mut rng = SplitMix64::new(seed);
        let d = half::f16::from_f32(0.01).to_le_bytes();
        let gguf = |t: GgufBlockType, rng: &mut SplitMix64, scales: usize| {
            let mut b = rng.bytes(n * k / t.block_elems() * t.block_bytes());
            for blk in b.chunks_exact_mut(t.block_bytes()) {
                for s in 0..scales {
                    blk[2 * s..2 * s + 2].copy_from_slice(&d);
                }
            }
            OwnedWeights::Encoded(Format::Gguf(t), b, n, k)
        };
        match kind {
            WeightKind::F32 => {
                // Small finite values straight from random words.
                let b = rng
                    .bytes(n * k * 4)
                    .chunks_exact(4)
                    .flat_map(|w| {
                        let v = i32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                        (v as f32 * 2e-11).to_le_bytes()
                    })
                    .collect();
                OwnedWeights::Encoded(Format::Element(ElementFormat::F32), b, n, k)
            }
            WeightKind::Q4_1 => gguf(GgufBlockType::Q4_1, &mut rng, 2),
            WeightKind::Q4K => gguf(GgufBlockType::Q4K, &mut rng, 2),
            WeightKind::Q8_0 => gguf(GgufBlockType::Q8_0, &mut rng, 1),
            WeightKind::MxFp4 => {
                let e = MxElement::Fp4E2M1;
                let mut b = rng.bytes(n * k / 32 * e.block_bytes());
                b.chunks_exact_mut(e.block_bytes())
                    .for_each(|blk| blk[0] = 120);
                OwnedWeights::Encoded(Format::Mx(e), b, n, k)
            }
            WeightKind::Fp8 => {
                OwnedWeights::Fp8Row(no_nan_e4m3(rng.bytes(n * k)), vec![0.01; n], n, k)
            }
        }
    }

    /// The matrix as matmul [`Weights`].
    pub fn view(&self) -> Result<Weights<'_>> {
        match self {
            OwnedWeights::Encoded(f, b, n, k) => Weights::new(*f, b, *n, *k),
            OwnedWeights::Fp8Row(c, s, n, k) => Weights::fp8_per_row(c, s, *n, *k),
        }
    }
}
