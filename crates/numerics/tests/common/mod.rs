//! Helpers shared by the golden tests: the splitmix64 generator that the
//! Python scripts in `scripts/golden/` reproduce, and data-file loading.
#![allow(dead_code)]

use std::path::PathBuf;

/// Path of a file under `tests/data`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Read a file under `tests/data`.
pub fn read_data(name: &str) -> Vec<u8> {
    std::fs::read(data_path(name)).unwrap_or_else(|e| panic!("reading tests/data/{name}: {e}"))
}

/// Parse a JSON file under `tests/data`.
pub fn read_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&read_data(name)).expect("valid JSON")
}

/// Little-endian f32s from bytes.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The first `n` outputs of splitmix64 from `seed` (generate.py computes
/// the i-th as `mix(seed + (i+1) * gamma)`, the same sequence).
pub fn splitmix64(seed: u64, n: usize) -> impl Iterator<Item = u64> {
    let mut rng = exodus_numerics::sample::SplitMix64::new(seed);
    (0..n).map(move |_| rng.next_u64())
}

/// Random f32s exactly as `random_f32` in generate.py.
pub fn random_f32(dist: &str, seed: u64, n: usize, lo: i64, hi: i64) -> Vec<f32> {
    splitmix64(seed, n)
        .map(|z| {
            let bits = if dist == "bits" {
                (z >> 32) as u32
            } else {
                let sign = (z >> 63) as u32;
                let mant = ((z >> 8) & 0x7f_ffff) as u32;
                let e = ((z >> 32) & 0xffff) % (hi - lo + 1) as u64;
                let e = (e as i64 + lo + 127) as u32;
                (sign << 31) | (e << 23) | mant
            };
            f32::from_bits(bits)
        })
        .collect()
}

/// Bit equality, with any two NaNs of the same sign equal.
pub fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits()
        || (a.is_nan() && b.is_nan() && a.is_sign_negative() == b.is_sign_negative())
}
