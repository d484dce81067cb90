//! Shared helpers of the matmul tests: random weights in every format,
//! the reference, and the error bounds the tests assert.

#![allow(dead_code)]

use exodus_kernels::matmul::matmul_reference;
use exodus_kernels::Weights;
use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::fp8_block::{self, BlockFp8, ScaleFormat};
use exodus_numerics::sample::SplitMix64;
use exodus_numerics::{ElementFormat, EncodeOptions, Format};

/// Weight storage owned by a test; [`Owned::weights`] borrows it.
pub enum Owned {
    /// Rows in an exodus-numerics format.
    Encoded(Format, Vec<u8>),
    /// E4M3 codes with per-row scales.
    Fp8Row(Vec<u8>, Vec<f32>),
    /// Tiled FP8.
    Fp8Block(BlockFp8),
}

/// The weight kinds the tests cover, by name: the formats with their own
/// kernels first, then some that take the generic (dequantize-row) path.
pub const KINDS: &[&str] = &[
    "f32",
    "f16",
    "bf16",
    "q4_0",
    "q4_1",
    "q8_0",
    "q4_k",
    "q5_k",
    "q6_k",
    "mxfp4",
    "mxfp8-e4m3",
    "fp8-row",
    "fp8-block128",
    "fp8-tiled-ue8m0-4x16",
    // generic path
    "q5_0",
    "q3_k",
    "mxfp6-e3m2",
    "fp8-e5m2",
];

/// Elements per block along k of a kind (k must be a multiple).
pub fn k_block(kind: &str) -> usize {
    match kind {
        "fp8-row" | "fp8-block128" | "fp8-tiled-ue8m0-4x16" => 1,
        name => name.parse::<Format>().map(|f| f.block_elems()).unwrap_or(1),
    }
}

/// `(block, true)` for the kinds whose decode path quantizes x to int8
/// blocks of `block` (the documented int8 formats).
pub fn int8_block(kind: &str) -> Option<usize> {
    match kind {
        "q4_0" | "q4_1" | "q8_0" | "mxfp4" => Some(32),
        "q4_k" | "q5_k" | "q6_k" => Some(256),
        _ => None,
    }
}

/// Standard normal data.
pub fn normal(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.normal() as f32).collect()
}

/// Random weights `[n, k]` of `kind`.
pub fn make(kind: &str, n: usize, k: usize, seed: u64) -> Owned {
    let mut rng = SplitMix64::new(seed);
    let w = normal(&mut rng, n * k);
    match kind {
        "fp8-row" => {
            let mut codes = vec![0u8; n * k];
            let mut scales = vec![0f32; n];
            for j in 0..n {
                let row = &w[j * k..(j + 1) * k];
                let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                scales[j] = if amax > 0.0 { amax / 448.0 } else { 1.0 };
                for (c, &v) in codes[j * k..(j + 1) * k].iter_mut().zip(row) {
                    *c =
                        ElementFormat::Fp8E4M3.encode(v / scales[j], EncodeOptions::SATURATE) as u8;
                }
            }
            Owned::Fp8Row(codes, scales)
        }
        "fp8-block128" => Owned::Fp8Block(
            fp8_block::quantize_weight(&w, n, k, ScaleFormat::F32).expect("fp8 block"),
        ),
        "fp8-tiled-ue8m0-4x16" => Owned::Fp8Block(
            fp8_block::quantize_tiled(&w, n, k, 4, 16, ScaleFormat::Ue8m0).expect("fp8 tiled"),
        ),
        "q5_k" | "q3_k" => {
            // No encoder: random blocks with sane f16 scales.
            let format: Format = kind.parse().expect("format");
            let mut bytes = rng.bytes(format.encoded_len(n * k, false).expect("len"));
            let block_bytes = format.encoded_len(256, false).expect("len");
            let d = half::f16::from_f32(0.02).to_le_bytes();
            for b in bytes.chunks_exact_mut(block_bytes) {
                if kind == "q5_k" {
                    b[0..2].copy_from_slice(&d);
                    b[2..4].copy_from_slice(&d);
                } else {
                    b[108..110].copy_from_slice(&d);
                }
            }
            Owned::Encoded(format, bytes)
        }
        name => {
            let format: Format = name.parse().expect("format");
            let bytes = format.quantize(&w, &Default::default()).expect("quantize");
            Owned::Encoded(format, bytes)
        }
    }
}

impl Owned {
    /// The weights `[n, k]`.
    pub fn weights(&self, n: usize, k: usize) -> Weights<'_> {
        match self {
            Owned::Encoded(f, b) => Weights::new(*f, b, n, k),
            Owned::Fp8Row(c, s) => Weights::fp8_per_row(c, s, n, k),
            Owned::Fp8Block(m) => Weights::fp8_block(m),
        }
        .expect("valid weights")
    }
}

/// W dequantized, `[n, k]`.
pub fn dequantized(w: &Weights) -> Vec<f32> {
    let (n, k) = (w.n(), w.k());
    let mut out = vec![0f32; n * k];
    for j in 0..n {
        w.dequantize_row(SimdLevel::Scalar, j, 0, k, &mut out[j * k..(j + 1) * k])
            .expect("dequantize");
    }
    out
}

/// The reference output `[rows, n]`.
pub fn reference(x: &[f32], rows: usize, w: &Weights) -> Vec<f32> {
    let mut out = vec![0f32; rows * w.n()];
    matmul_reference(x, rows, w, &mut out).expect("reference");
    out
}

/// Per-output tolerance `[rows, n]`: f32 rounding of the sum
/// (`float_rel * sum |x w|`), plus, if x is quantized to int8 blocks of
/// `int8`, the quantization bound `sum_b (amax_b / 254) * sum_b |w|`.
pub fn tolerances(
    x: &[f32],
    rows: usize,
    wd: &[f32],
    n: usize,
    k: usize,
    float_rel: f32,
    int8: Option<usize>,
) -> Vec<f32> {
    let mut tol = vec![0f32; rows * n];
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        for j in 0..n {
            let wr = &wd[j * k..(j + 1) * k];
            let abs: f64 = xr.iter().zip(wr).map(|(a, b)| (a * b).abs() as f64).sum();
            let mut t = float_rel as f64 * abs + 1e-30;
            if let Some(block) = int8 {
                for (xb, wb) in xr.chunks(block).zip(wr.chunks(block)) {
                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                    let wsum: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                    // Half a step of 1/127, plus slack for the f32 scale.
                    t += amax / 254.0 * 1.001 * wsum;
                }
            }
            tol[r * n + j] = t as f32;
        }
    }
    tol
}

/// RMS of `a - b` over RMS of `b`.
pub fn rms_rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}
