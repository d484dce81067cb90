//! Helpers shared by the GGUF integration tests: the splitmix64 generator
//! (same as `scripts/golden/gguf_golden.py`), SHA-256, fixture readers.
#![allow(dead_code)]

use std::path::PathBuf;

/// splitmix64, the generator shared with the Python script.
#[allow(unused_imports)] // not every test file draws random numbers
pub use exodus_numerics::sample::SplitMix64;

/// Directory of the fixtures.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf")
}

/// Reads a fixture file, panicking with its path on failure.
pub fn read(name: &str) -> Vec<u8> {
    let p = data_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Little-endian f32s of `b`.
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A fixture with the 16-byte header `magic, n_blocks, block_bytes, block_elems`.
pub struct Fixture {
    /// Blocks in the fixture.
    pub n_blocks: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Elements per block.
    pub block_elems: usize,
    /// Everything after the header.
    pub body: Vec<u8>,
}

/// Reads a fixture and checks its magic.
pub fn fixture(name: &str, magic: &[u8; 4]) -> Fixture {
    let b = read(name);
    assert_eq!(&b[..4], magic, "{name}: bad magic");
    let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    Fixture {
        n_blocks: u(4),
        block_bytes: u(8),
        block_elems: u(12),
        body: b[16..].to_vec(),
    }
}

/// Compares f32 slices by bit pattern, with any NaN equal to any NaN.
pub fn assert_same_f32(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(
            same,
            "{what}: element {i}: got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// SHA-256 of `data` (the `sha2` crate).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn sha256_known_value() {
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
