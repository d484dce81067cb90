//! Q4_0 / Q4_1 weights re-laid once for the AVX-512 decode dots.
//!
//! In the GGUF layout each 32-value block carries its own header (f16
//! scale, and Q4_1's f16 min) before its 16 code bytes, and each byte holds
//! two values of one row that are 16 apart. A decode dot over four rows
//! therefore gathers eight scattered headers and unpacks every row's
//! nibbles separately for each pair of blocks; measured, that kept the
//! Q4_1 dot at a third of the memory speed a single core reaches
//! (docs/benchmarks.md). A [`DecodePack`] holds the same bits, arranged for
//! that loop. For every group of four rows (`4g .. 4g + 4`) and every pair
//! of blocks (`2p`, `2p + 1`) it stores, in order:
//!
//! ```text
//! 8 x f16   scales: block 2p of rows 0..4, then block 2p+1 of rows 0..4
//! 8 x f16   mins, in the same order                       (Q4_1 only)
//! 64 bytes  value j of the pair (x order) of row 0 | row 1's << 4
//! 64 bytes  the same for rows 2 and 3
//! ```
//!
//! So one 64-byte load and two masks give two rows' 64 codes in x's order,
//! and one 16-byte load gives a pair's eight scales. The pack is the size
//! of the weight (144 or 160 bytes per four rows and 64 values, the GGUF
//! blocks' own size). It covers the whole groups of four rows and needs an
//! even number of blocks per row; the last `n % 4` rows run from the GGUF
//! bytes. The dot reads the same integers and scales and sums them in the
//! canonical order of `int8_prefill::block_step`, so its results are the
//! bits of the unpacked dot (a test checks that): a pack changes the speed
//! of a decode step, never its output.

use exodus_numerics::cpu::SimdLevel;
use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::Format;

use super::weights::{WeightData, Weights};

/// Rows per group of the pack.
pub(crate) const GROUP_ROWS: usize = 4;

/// The two formats a pack takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackKind {
    Q4_0,
    Q4_1,
}

impl PackKind {
    /// Bytes of one GGUF block.
    fn block_bytes(self) -> usize {
        match self {
            PackKind::Q4_0 => 18,
            PackKind::Q4_1 => 20,
        }
    }

    /// Bytes of one pair of blocks of one group in the pack.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernel
    pub(crate) fn pair_bytes(self) -> usize {
        match self {
            PackKind::Q4_0 => 16 + 128,
            PackKind::Q4_1 => 32 + 128,
        }
    }
}

/// A Q4_0 / Q4_1 weight `W[n, k]` in the decode layout of the module docs,
/// for CPUs with AVX-512 VNNI. Attach it to the weight's [`Weights`] with
/// [`Weights::with_decode_pack`].
#[derive(Clone)]
pub struct DecodePack {
    kind: PackKind,
    n: usize,
    k: usize,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for DecodePack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodePack")
            .field("kind", &self.kind)
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl DecodePack {
    /// `w` re-laid, if the decode dots of `level` read a pack of it: the
    /// level runs AVX-512 VNNI, `w` is Q4_0 or Q4_1 with at least four rows
    /// and an even number of blocks per row. `None` otherwise (the dots
    /// then read `w` as it is).
    pub fn new(level: SimdLevel, w: &Weights) -> Option<DecodePack> {
        if !cfg!(target_arch = "x86_64") || !level.has_avx512() {
            return None;
        }
        let (kind, bytes, row_bytes) = match w.data() {
            WeightData::Encoded {
                format: Format::Gguf(GgufBlockType::Q4_0),
                bytes,
                row_bytes,
            } => (PackKind::Q4_0, bytes, row_bytes),
            WeightData::Encoded {
                format: Format::Gguf(GgufBlockType::Q4_1),
                bytes,
                row_bytes,
            } => (PackKind::Q4_1, bytes, row_bytes),
            _ => return None,
        };
        let (n, k) = (w.n(), w.k());
        if n < GROUP_ROWS || !k.is_multiple_of(64) {
            return None;
        }
        let groups = n / GROUP_ROWS;
        let pairs = k / 64;
        let mut out = Vec::with_capacity(groups * pairs * kind.pair_bytes());
        for g in 0..groups {
            let rows = &bytes[g * GROUP_ROWS * row_bytes..(g + 1) * GROUP_ROWS * row_bytes];
            for p in 0..pairs {
                push_pair(kind, rows, row_bytes, p, &mut out);
            }
        }
        Some(DecodePack {
            kind,
            n,
            k,
            bytes: out,
        })
    }

    /// Whether weights of `format` can have a pack (on a CPU whose decode
    /// dots read one): lets a caller skip copying a weight that cannot.
    pub fn takes(format: Format) -> bool {
        matches!(
            format,
            Format::Gguf(GgufBlockType::Q4_0) | Format::Gguf(GgufBlockType::Q4_1)
        )
    }

    /// Rows of the weight.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes the pack holds.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The format it was made from.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernel
    pub(crate) fn kind(&self) -> PackKind {
        self.kind
    }

    /// The GGUF format it was made from.
    pub(crate) fn format(&self) -> Format {
        Format::Gguf(match self.kind {
            PackKind::Q4_0 => GgufBlockType::Q4_0,
            PackKind::Q4_1 => GgufBlockType::Q4_1,
        })
    }

    /// Whole groups of four rows in the pack.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernel
    pub(crate) fn groups(&self) -> usize {
        self.n / GROUP_ROWS
    }

    /// The bytes of group `g` (rows `4g .. 4g + 4`): every pair of blocks,
    /// in order.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 kernel
    pub(crate) fn group(&self, g: usize) -> &[u8] {
        let len = self.k / 64 * self.kind.pair_bytes();
        &self.bytes[g * len..(g + 1) * len]
    }
}

/// Appends pair `p` of the four rows at `rows` (GGUF blocks, `row_bytes`
/// per row) in the pack layout.
fn push_pair(kind: PackKind, rows: &[u8], row_bytes: usize, p: usize, out: &mut Vec<u8>) {
    let bb = kind.block_bytes();
    let block = |r: usize, half: usize| {
        let at = r * row_bytes + (2 * p + half) * bb;
        &rows[at..at + bb]
    };
    let headers: &[usize] = match kind {
        PackKind::Q4_0 => &[0],
        PackKind::Q4_1 => &[0, 2],
    };
    for &field in headers {
        for half in 0..2 {
            for r in 0..GROUP_ROWS {
                out.extend_from_slice(&block(r, half)[field..field + 2]);
            }
        }
    }
    let codes_at = headers.len() * 2;
    // Value j of a 32-value block: the low nibble of byte j for j < 16,
    // else the high nibble of byte j - 16.
    let code = |r: usize, j: usize| {
        let qs = &block(r, j / 32)[codes_at..];
        let i = j % 32;
        if i < 16 {
            qs[i] & 0x0F
        } else {
            qs[i - 16] >> 4
        }
    };
    for two in 0..GROUP_ROWS / 2 {
        for j in 0..64 {
            out.push(code(2 * two, j) | (code(2 * two + 1, j) << 4));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q4_1_weights(n: usize, k: usize) -> Vec<u8> {
        let mut w: Vec<u8> = (0..n * k / 32 * 20)
            .map(|i| ((i * 73 + 11) % 251) as u8)
            .collect();
        for (b, block) in w.chunks_exact_mut(20).enumerate() {
            block[..2].copy_from_slice(&(0x2000u16 + b as u16).to_le_bytes());
            block[2..4].copy_from_slice(&(0xb800u16 + b as u16).to_le_bytes());
        }
        w
    }

    #[test]
    #[cfg(target_arch = "x86_64")] // the only architecture with the kernel
    fn the_layout_holds_every_header_and_code_once() {
        let (n, k) = (5, 128);
        let bytes = q4_1_weights(n, k);
        let w = Weights::new(Format::Gguf(GgufBlockType::Q4_1), &bytes, n, k).unwrap();
        // Made for the level's kernel, not the host's CPU.
        let pack = DecodePack::new(SimdLevel::Avx512, &w).expect("a pack");
        // One group (the fifth row stays out), two pairs of 160 bytes.
        assert_eq!((pack.groups(), pack.byte_len()), (1, 2 * 160));
        let g = pack.group(0);
        let block = |r: usize, b: usize| &bytes[r * 80 + b * 20..r * 80 + b * 20 + 20];
        // Pair 1, block 3 of row 2: its scale is the 7th f16, its min the
        // 15th, its value 17 the high nibble of byte 1, in the rows 2-3
        // chunk's low nibbles at 32 + 17.
        let pair = &g[160..320];
        assert_eq!(&pair[12..14], &block(2, 3)[0..2]);
        assert_eq!(&pair[28..30], &block(2, 3)[2..4]);
        assert_eq!(pair[96 + 32 + 17] & 0x0F, block(2, 3)[4 + 1] >> 4);
        assert_eq!(pair[96 + 32 + 17] >> 4, block(3, 3)[4 + 1] >> 4);
    }

    #[test]
    fn no_pack_where_the_dots_would_not_read_one() {
        let bytes = q4_1_weights(4, 96);
        let odd_blocks = Weights::new(Format::Gguf(GgufBlockType::Q4_1), &bytes, 4, 96).unwrap();
        assert!(DecodePack::new(SimdLevel::Avx512, &odd_blocks).is_none());
        let bytes = q4_1_weights(3, 64);
        let few_rows = Weights::new(Format::Gguf(GgufBlockType::Q4_1), &bytes, 3, 64).unwrap();
        assert!(DecodePack::new(SimdLevel::Avx512, &few_rows).is_none());
        let bytes = q4_1_weights(4, 64);
        let fine = Weights::new(Format::Gguf(GgufBlockType::Q4_1), &bytes, 4, 64).unwrap();
        assert!(DecodePack::new(SimdLevel::Avx2, &fine).is_none());
        assert!(DecodePack::new(SimdLevel::Scalar, &fine).is_none());
        let f32s = vec![0u8; 4 * 64 * 4];
        let dense = Weights::new(
            Format::Element(exodus_numerics::ElementFormat::F32),
            &f32s,
            4,
            64,
        )
        .unwrap();
        assert!(DecodePack::new(SimdLevel::Avx512, &dense).is_none());
    }
}
