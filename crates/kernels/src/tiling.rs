//! Explicit tiling of a matrix multiply: block sizes per cache level, the
//! micro-tile, the regime and the thread split.
//!
//! This is the programming surface a kernel author works with: a
//! [`Tiling`] is plain data, chosen by [`Tiling::choose`] from the shapes
//! and the cache sizes ([`CacheSizes::detect`]) or written by hand, and
//! checked by [`Tiling::check`] before a kernel uses it.
//!
//! # The heuristic (BLIS-style, for `out[rows, n] = x[rows, k] · W[n, k]ᵀ`)
//!
//! - **Regime.** `rows <= DECODE_MAX_ROWS` (4) is *decode*: memory-bound,
//!   every weight byte is read once and used `rows` times, so the kernel
//!   streams W row by row. Larger `rows` is *prefill*: compute-bound, a
//!   packed, tiled GEMM.
//! - **Micro-tile** `mr x nr = 6 x 16` (the packing unit): with AVX2, 12 of
//!   the 16 vector registers hold the accumulators, two hold a row of B, one
//!   a broadcast of A. AVX-512 kernels take two slivers of each at once
//!   (12 x 32: 24 of 32 zmm registers accumulate).
//! - **kc** (depth of a panel): an `mr x kc` sliver of A and a `kc x nr`
//!   sliver of B should fill half of L1d, so
//!   `kc_max = L1d / 2 / ((mr + nr) * 4 bytes)` (279 for a 48 KiB L1d).
//!   The AVX2 6x16 kernel needs its B sliver in L1: at kc = 512 it ran at
//!   0.41-0.45 of the FMA peak against 0.55-0.73 at 279. The AVX-512 12x32
//!   kernel reads two B slivers, which then stream from L2 (it prefetches
//!   them; each B vector feeds 12 FMAs): 279 and 512 measured the same
//!   within noise, so one rule serves both.
//!   `k` is then cut into `ceil(k / kc_max)` equal parts, each rounded up to
//!   a multiple of 16 and of the weight format's block along k (32 or 256
//!   for GGUF and MX), so the last part is not a sliver.
//! - **mc** (rows of A per block): an `mc x kc` block of A should fill half
//!   of L2: `mc_max = L2 / 2 / (kc * 4)`, a multiple of `mr`. The rows are
//!   cut into a multiple of `threads` blocks, at least `ceil(rows / mc_max)`,
//!   so every thread gets row blocks (the prefill thread split is over
//!   rows; each row block is one task).
//! - **nc** (columns of B per packed panel): the shared `kc x nc` panel
//!   should fill half of L3: `nc = L3 / 2 / (kc * 4)`, a multiple of `nr`,
//!   at most `n` rounded up to `nr`. Packing a panel is split over threads
//!   by `nr`-wide slivers.
//! - **decode split**: columns of W (outputs) are cut into about four tasks
//!   per thread (`decode_cols`, a multiple of 8, at least 16), so a slow
//!   thread does not hold the others up.

use std::sync::OnceLock;

use crate::error::{KernelError, Result};

/// Rows of the micro-tile (rows of x / out per micro-kernel call).
pub const MR: usize = 6;
/// Columns of the micro-tile (rows of W / columns of out per call).
pub const NR: usize = 16;
/// Largest `rows` for which [`Tiling::choose`] picks [`Regime::Decode`].
pub const DECODE_MAX_ROWS: usize = 4;

/// Data-cache sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    /// Level-1 data cache of one core.
    pub l1d: usize,
    /// Level-2 cache of one core.
    pub l2: usize,
    /// Last-level cache (shared).
    pub l3: usize,
}

impl CacheSizes {
    /// Used where the sizes cannot be read: 32 KiB, 1 MiB, 8 MiB.
    pub const FALLBACK: CacheSizes = CacheSizes {
        l1d: 32 << 10,
        l2: 1 << 20,
        l3: 8 << 20,
    };

    /// The sizes of CPU 0, read once from
    /// `/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}` on
    /// Linux; [`FALLBACK`](Self::FALLBACK) for any level that cannot be
    /// read (and on other systems).
    pub fn detect() -> CacheSizes {
        static DETECTED: OnceLock<CacheSizes> = OnceLock::new();
        *DETECTED.get_or_init(|| Self::from_sysfs("/sys/devices/system/cpu/cpu0/cache"))
    }

    /// Reads the `index*` entries under `dir` (a sysfs cache directory);
    /// missing levels keep their fallback.
    pub fn from_sysfs(dir: &str) -> CacheSizes {
        let mut sizes = Self::FALLBACK;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return sizes;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let read = |name: &str| std::fs::read_to_string(path.join(name)).ok();
            let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
            else {
                continue;
            };
            let Some(bytes) = parse_size(&size) else {
                continue;
            };
            match (level.trim(), kind.trim()) {
                ("1", "Data" | "Unified") => sizes.l1d = bytes,
                ("2", "Data" | "Unified") => sizes.l2 = bytes,
                ("3", "Data" | "Unified") => sizes.l3 = bytes,
                _ => {}
            }
        }
        sizes
    }
}

/// Parses a sysfs cache size such as `48K`, `1280K`, `2M` or `512`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
        .filter(|&v| v > 0)
}

/// Which algorithm a matrix multiply runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// Few rows: stream W once, dot products per output (memory-bound).
    Decode,
    /// Many rows: packed, tiled GEMM (compute-bound).
    Prefill,
}

/// Block sizes, micro-tile, regime and thread split of one matrix multiply
/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ`. All fields are public so a
/// caller can start from [`Tiling::choose`] and override any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Decode (dot products) or prefill (packed GEMM).
    pub regime: Regime,
    /// Micro-tile rows; must be [`MR`] (the kernels built).
    pub mr: usize,
    /// Micro-tile columns; must be [`NR`].
    pub nr: usize,
    /// Depth of a packed panel along k; a multiple of the weight format's
    /// block along k.
    pub kc: usize,
    /// Rows of x per row block (one prefill task); a multiple of `mr`.
    pub mc: usize,
    /// Columns (rows of W) per packed panel; a multiple of `nr`.
    pub nc: usize,
    /// Decode: outputs (rows of W) per task.
    pub decode_cols: usize,
    /// Threads the split was made for.
    pub threads: usize,
}

fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

/// Least common multiple of `a` and `b` (both positive).
fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

impl Tiling {
    /// Chooses a tiling for `out[rows, n] = x[rows, k] · W[n, k]ᵀ` with
    /// `threads` threads, cache sizes `caches`, and a weight format whose
    /// rows decode in blocks of `k_block` elements (1 for element formats).
    /// See the module docs for the heuristic.
    pub fn choose(
        rows: usize,
        n: usize,
        k: usize,
        k_block: usize,
        threads: usize,
        caches: &CacheSizes,
    ) -> Tiling {
        let threads = threads.max(1);
        let k_block = k_block.max(1);
        let regime = if rows <= DECODE_MAX_ROWS {
            Regime::Decode
        } else {
            Regime::Prefill
        };
        // kc: slivers of A and B fill half of L1d; k cut in equal parts.
        let granule = lcm(16, k_block);
        let kc_max = (caches.l1d / 2 / ((MR + NR) * 4)).max(granule);
        let k_parts = k.max(1).div_ceil(kc_max);
        let kc = round_up(k.max(1).div_ceil(k_parts), granule);
        // mc: the A block fills half of L2; a multiple of `threads` blocks.
        let mc_max = (caches.l2 / 2 / (kc * 4)) / MR * MR;
        let mc_max = mc_max.max(MR);
        let blocks = round_up(rows.max(1).div_ceil(mc_max), threads);
        let mc = round_up(rows.max(1).div_ceil(blocks), MR);
        // nc: the shared B panel fills half of L3.
        let nc_max = (caches.l3 / 2 / (kc * 4)) / NR * NR;
        let nc = nc_max.max(NR).min(round_up(n.max(1), NR));
        // decode: about four tasks per thread.
        let decode_cols = round_up(n.max(1).div_ceil(4 * threads), 8).max(16);
        Tiling {
            regime,
            mr: MR,
            nr: NR,
            kc,
            mc,
            nc,
            decode_cols,
            threads,
        }
    }

    /// Checks that the kernels can run this tiling for a weight format with
    /// blocks of `k_block` elements along k: a [`KernelError::BadShape`]
    /// names the first field that is wrong.
    pub fn check(&self, k_block: usize) -> Result<()> {
        let bad = |reason: String| {
            Err(KernelError::BadShape {
                kernel: "matmul tiling",
                reason,
            })
        };
        if self.mr != MR || self.nr != NR {
            return bad(format!(
                "micro-tile {}x{} is not the {MR}x{NR} the kernels are built for",
                self.mr, self.nr
            ));
        }
        if self.kc == 0 || !self.kc.is_multiple_of(k_block.max(1)) {
            return bad(format!(
                "kc = {} is not a positive multiple of the format's {k_block}-element block",
                self.kc
            ));
        }
        if self.mc == 0 || !self.mc.is_multiple_of(MR) {
            return bad(format!(
                "mc = {} is not a positive multiple of mr = {MR}",
                self.mc
            ));
        }
        if self.nc == 0 || !self.nc.is_multiple_of(NR) {
            return bad(format!(
                "nc = {} is not a positive multiple of nr = {NR}",
                self.nc
            ));
        }
        if self.decode_cols == 0 {
            return bad("decode_cols = 0".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ICE_LAKE: CacheSizes = CacheSizes {
        l1d: 48 << 10,
        l2: 1280 << 10,
        l3: 48 << 20,
    };

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("48K\n"), Some(48 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("0K"), None);
    }

    #[test]
    fn missing_sysfs_falls_back() {
        assert_eq!(
            CacheSizes::from_sysfs("/nonexistent/cache"),
            CacheSizes::FALLBACK
        );
        let d = CacheSizes::detect();
        assert!(d.l1d > 0 && d.l2 > 0 && d.l3 > 0);
    }

    #[test]
    fn chosen_tilings_pass_their_own_check() {
        for (rows, n, k, block) in [
            (1, 4096, 4096, 32),
            (512, 576, 576, 1),
            (512, 2048, 2048, 256),
            (7, 13, 17, 1),
            (1000, 1, 1, 1),
            (0, 0, 0, 1),
        ] {
            for threads in [1, 2, 3, 16] {
                for caches in [ICE_LAKE, CacheSizes::FALLBACK] {
                    let t = Tiling::choose(rows, n, k, block, threads, &caches);
                    t.check(block).unwrap();
                    assert!(t.mc <= rows.max(1).div_ceil(threads).next_multiple_of(MR));
                }
            }
        }
    }

    #[test]
    fn heuristic_on_ice_lake() {
        let t = Tiling::choose(512, 2048, 2048, 1, 2, &ICE_LAKE);
        assert_eq!(t.regime, Regime::Prefill);
        // kc_max = 24576 / 88 = 279: 2048 in 8 parts of 256.
        assert_eq!(t.kc, 256);
        // mc_max = 640 KiB / 1 KiB = 640 -> 1 block, rounded to 2 threads.
        assert_eq!(t.mc, 258);
        assert_eq!(t.nc, 2048);
        let t = Tiling::choose(512, 576, 576, 1, 2, &ICE_LAKE);
        assert_eq!(t.kc, 192);
        let t = Tiling::choose(1, 4096, 4096, 32, 2, &ICE_LAKE);
        assert_eq!(t.regime, Regime::Decode);
        assert_eq!(t.decode_cols, 512);
        // K formats need kc to be whole 256-element super-blocks.
        let t = Tiling::choose(64, 4096, 4096, 256, 2, &ICE_LAKE);
        assert_eq!(t.kc % 256, 0);
    }

    #[test]
    fn bad_tilings_are_typed_errors() {
        let good = Tiling::choose(64, 64, 64, 32, 2, &ICE_LAKE);
        for bad in [
            Tiling { mr: 4, ..good },
            Tiling { kc: 48, ..good },
            Tiling { mc: 7, ..good },
            Tiling { nc: 0, ..good },
            Tiling {
                decode_cols: 0,
                ..good
            },
        ] {
            assert!(matches!(bad.check(32), Err(KernelError::BadShape { .. })));
        }
    }
}
