//! Integer prefill: many rows of x against Q4_0 / Q4_1 / Q8_0 / Q4_K /
//! MXFP4 weights with int8 dot products instead of an f32 GEMM, on CPUs with
//! AVX-512 VNNI (one `vpdpbusd` does 64 byte multiply-adds, four times the
//! lanes of an f32 FMA).
//!
//! # The arithmetic
//!
//! Every one of these formats is, per block of 32 values along k, an
//! unsigned byte code `u` with a scale `s` and an offset `o` per (row of W,
//! block): `w = s * u + o` (Q4_0: `u` = the nibble, `o = -8 s`; Q4_1:
//! `o = m`; Q8_0: `u = q + 128`, `o = -128 s`; Q4_K: `s = d * sc`,
//! `o = -dmin * mn` of the 32-value sub-block; MXFP4: `u` = twice the E2M1
//! value plus 12, `s` = half the E8M0 scale, `o = -12 s`). x is quantized
//! per block of 32 to int8 codes `q` with scale `dx` and code sum `S`
//! (`quant_x.rs`, as in the decode regime), so
//!
//! ```text
//! sum over a block of w * x = dx * (s * sum(u * q) + o * S)
//! ```
//!
//! with `sum(u * q)` exact in i32. The error budget is the decode
//! regime's int8 one with blocks of 32.
//!
//! # Layout and loops
//!
//! W is repacked once per call ([`pack`], in parallel) into groups of 16
//! rows: per block, the 32 codes of each of the 16 rows as 8 groups of 4
//! bytes, interleaved `[k-group][row][4 bytes]` (512 bytes), so one 64-byte
//! load feeds `vpdpbusd` for 16 outputs at once, plus 16 scales and 16
//! offsets. The packed buffers stay with the calling thread for the next
//! call (no page faults on reuse; the cost is holding the largest packed W
//! seen, about 1.25x its Q4 size). Packing once at model load instead is
//! the next step. x is quantized once and packed per 8-row tile
//! (`[block][row][32]` codes, `[block][row]` scales). A micro-tile is 8
//! rows of x by 16 outputs over all of k (8 i32 and 8 f32 accumulators).
//! Tasks own contiguous row ranges of `out`; each walks the W groups in
//! chunks that fit half of L2 and, per chunk, every 8-row tile of its rows.

use exodus_numerics::gguf::GgufBlockType;
use exodus_numerics::mx::MxElement;
use exodus_numerics::Format;
use half::f16;

use super::dot_scalar::{scales_mins_k4, FP4_X2};
use super::quant_x::{QuantX, XRow};
use super::weights::{WeightData, Weights};
use crate::error::{FirstError, KernelError, Result};
use crate::pool::ThreadPool;
use crate::tiling::CacheSizes;

/// Values per block along k.
pub(crate) const BLOCK: usize = 32;
/// Outputs (rows of W) per packed group.
pub(crate) const COLS: usize = 16;
/// Rows of x per micro-tile.
pub(crate) const ROWS: usize = 8;
/// Bytes of one packed block of a group.
pub(crate) const GROUP_BLOCK_BYTES: usize = BLOCK * COLS;

/// The weight formats this path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int8Kind {
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    MxFp4,
}

impl Int8Kind {
    /// The kind of `w`, if this path takes it.
    pub(crate) fn of(w: &Weights) -> Option<Int8Kind> {
        match w.data() {
            WeightData::Encoded { format, .. } => match format {
                Format::Gguf(GgufBlockType::Q4_0) => Some(Int8Kind::Q4_0),
                Format::Gguf(GgufBlockType::Q4_1) => Some(Int8Kind::Q4_1),
                Format::Gguf(GgufBlockType::Q8_0) => Some(Int8Kind::Q8_0),
                Format::Gguf(GgufBlockType::Q4K) => Some(Int8Kind::Q4K),
                Format::Mx(MxElement::Fp4E2M1) => Some(Int8Kind::MxFp4),
                _ => None,
            },
            _ => None,
        }
    }

    /// Bytes of one encoded block and the values it holds.
    fn block_shape(self) -> (usize, usize) {
        match self {
            Int8Kind::Q4_0 => (18, 32),
            Int8Kind::Q4_1 => (20, 32),
            Int8Kind::Q8_0 => (34, 32),
            Int8Kind::Q4K => (144, 256),
            Int8Kind::MxFp4 => (17, 32),
        }
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The codes, scales and offsets of every 32-value block of one encoded
/// block `b` (one for the 32-value formats, eight for Q4_K):
/// `w = s * u + o`.
fn block_codes(kind: Int8Kind, b: &[u8], u: &mut [[u8; BLOCK]], so: &mut [(f32, f32)]) {
    let nibbles = |qs: &[u8], u: &mut [u8; BLOCK]| {
        for l in 0..16 {
            u[l] = qs[l] & 0x0F;
            u[l + 16] = qs[l] >> 4;
        }
    };
    match kind {
        Int8Kind::Q4_0 => {
            nibbles(&b[2..18], &mut u[0]);
            let d = f16_at(b, 0);
            so[0] = (d, -8.0 * d);
        }
        Int8Kind::Q4_1 => {
            nibbles(&b[4..20], &mut u[0]);
            so[0] = (f16_at(b, 0), f16_at(b, 2));
        }
        Int8Kind::Q8_0 => {
            for (o, &q) in u[0].iter_mut().zip(&b[2..34]) {
                *o = q ^ 0x80;
            }
            let d = f16_at(b, 0);
            so[0] = (d, -128.0 * d);
        }
        Int8Kind::Q4K => {
            let (sc, mn) = scales_mins_k4(&b[4..16]);
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            for (i, qs) in b[16..144].chunks_exact(32).enumerate() {
                for (l, &q) in qs.iter().enumerate() {
                    u[2 * i][l] = q & 0x0F;
                    u[2 * i + 1][l] = q >> 4;
                }
            }
            for (j, so) in so.iter_mut().enumerate().take(8) {
                *so = (d * sc[j] as f32, -dmin * mn[j] as f32);
            }
        }
        Int8Kind::MxFp4 => {
            for (l, &c) in b[1..17].iter().enumerate() {
                u[0][2 * l] = (FP4_X2[(c & 0x0F) as usize] + 12) as u8;
                u[0][2 * l + 1] = (FP4_X2[(c >> 4) as usize] + 12) as u8;
            }
            let s = super::dot_scalar::e8m0_f32(b[0]) * 0.5;
            so[0] = (s, -12.0 * s);
        }
    }
}

/// One packed group of 16 rows of W.
#[derive(Default)]
pub(crate) struct Group {
    /// `[block][k-group 0..8][row 0..16][4 bytes]`.
    pub(crate) codes: Vec<u8>,
    /// `[block][row]`.
    pub(crate) scales: Vec<f32>,
    /// `[block][row]`.
    pub(crate) offsets: Vec<f32>,
}

/// Packs rows `16 g .. 16 g + 16` of `w` (rows past `n` stay zero).
fn pack_group(kind: Int8Kind, w: &Weights, g: usize, group: &mut Group) -> Result<()> {
    let blocks = w.k() / BLOCK;
    group.codes.resize(blocks * GROUP_BLOCK_BYTES, 0);
    group.scales.resize(blocks * COLS, 0.0);
    group.offsets.resize(blocks * COLS, 0.0);
    let (bytes, values) = kind.block_shape();
    let per = values / BLOCK;
    let mut u = [[0u8; BLOCK]; 8];
    let mut so = [(0f32, 0f32); 8];
    for c in 0..COLS.min(w.n().saturating_sub(g * COLS)) {
        let j = g * COLS + c;
        let row = w.encoded_row(j).ok_or_else(|| KernelError::BadShape {
            kernel: "matmul int8 prefill",
            reason: format!("row {j} of W is out of range"),
        })?;
        for (eb, enc) in row.chunks_exact(bytes).enumerate() {
            block_codes(kind, enc, &mut u, &mut so);
            for sub in 0..per {
                let b = eb * per + sub;
                let dst = &mut group.codes[b * GROUP_BLOCK_BYTES..(b + 1) * GROUP_BLOCK_BYTES];
                // Four codes of row c per 64-byte k-group.
                for (kg, four) in u[sub].chunks_exact(4).enumerate() {
                    let at = kg * 4 * COLS + 4 * c;
                    dst[at] = four[0];
                    dst[at + 1] = four[1];
                    dst[at + 2] = four[2];
                    dst[at + 3] = four[3];
                }
                group.scales[b * COLS + c] = so[sub].0;
                group.offsets[b * COLS + c] = so[sub].1;
            }
        }
    }
    Ok(())
}

/// Repacks all of `w` into `groups` (in parallel over groups; the buffers
/// of a previous call are reused, so a repeated call does not fault in
/// fresh pages).
pub(crate) fn pack(
    pool: &ThreadPool,
    kind: Int8Kind,
    w: &Weights,
    groups: &mut Vec<Group>,
) -> Result<()> {
    groups.resize_with(w.n().div_ceil(COLS), Group::default);
    let errors = FirstError::default();
    let per_task = groups.len().div_ceil(4 * pool.threads()).max(1);
    pool.for_each_chunk_mut(groups, per_task, |t, chunk| {
        for (i, group) in chunk.iter_mut().enumerate() {
            let g = t * per_task + i;
            // `pack_group` writes every row below `n`; rows past it (in the
            // last group only) must be zero even if a previous, larger
            // matrix left codes there.
            if (g + 1) * COLS > w.n() {
                group.codes.fill(0);
                group.scales.fill(0.0);
                group.offsets.fill(0.0);
            }
            errors.keep(pack_group(kind, w, g, group));
        }
    });
    errors.into_result()
}

thread_local! {
    /// The packed W of this thread's last integer prefill, kept so that the
    /// next call reuses its buffers.
    static PACKED: std::cell::RefCell<Vec<Group>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Eight rows of quantized x over all of k, packed per block so that a
/// micro-kernel walks three arrays: codes `q[b][r][0..32]`, block scales
/// `d[b][r]` and scaled code sums `ds[b][r] = dx * S` (rows past the end of
/// x are zero).
#[derive(Clone, Copy)]
pub(crate) struct XTile<'a> {
    pub(crate) q: &'a [i8],
    pub(crate) d: &'a [f32],
    pub(crate) ds: &'a [f32],
}

/// The storage behind an [`XTile`].
#[derive(Default)]
pub(crate) struct XTileBuf {
    q: Vec<i8>,
    d: Vec<f32>,
    ds: Vec<f32>,
}

impl XTileBuf {
    /// Packs rows `r0 .. r0 + 8` of `qx` (`ds`: `dx * S` per row block),
    /// zero past `rows`.
    fn pack(&mut self, qx: &QuantX, ds: &[f32], rows: usize, r0: usize) {
        let blocks = qx.k / BLOCK;
        self.q.clear();
        self.q.resize(blocks * ROWS * BLOCK, 0);
        self.d.clear();
        self.d.resize(blocks * ROWS, 0.0);
        self.ds.clear();
        self.ds.resize(blocks * ROWS, 0.0);
        for r in 0..ROWS.min(rows.saturating_sub(r0)) {
            let row = r0 + r;
            let q = &qx.q[row * qx.k..(row + 1) * qx.k];
            for (b, src) in q.chunks_exact(BLOCK).enumerate() {
                let at = (b * ROWS + r) * BLOCK;
                // An element loop, not `copy_from_slice`: 32 bytes are two
                // vector moves, not a call into memmove.
                for (d, &v) in self.q[at..at + BLOCK].iter_mut().zip(src) {
                    *d = v;
                }
                self.d[b * ROWS + r] = qx.d[row * blocks + b];
                self.ds[b * ROWS + r] = ds[row * blocks + b];
            }
        }
    }

    fn tile(&self) -> XTile<'_> {
        XTile {
            q: &self.q,
            d: &self.d,
            ds: &self.ds,
        }
    }
}

/// One block's step of the canonical accumulation of an output, the same
/// fused operations in the same order in every kernel that takes these
/// formats (the integer tile of any row count, the decode dots of one W
/// row or four): `f + sum(u * q) * (s * dx)`, fused, then `+ o * (dx * S)`,
/// fused. That shared order is what makes a row's result independent of
/// the batch it runs in (see [`row_results_independent_of_batch`](super::row_results_independent_of_batch)).
#[inline]
pub(crate) fn block_step(f: f32, dot: i32, s: f32, o: f32, dx: f32, ds: f32) -> f32 {
    let f = (dot as f32).mul_add(s * dx, f);
    o.mul_add(ds, f)
}

/// One encoded W row · one row of int8 x in the canonical order, starting
/// from `f` (the scalar definition the SIMD decode dots are tested
/// against bit for bit, and their tail for an odd block count).
pub(crate) fn canonical_dot(kind: Int8Kind, w: &[u8], x: XRow, mut f: f32) -> f32 {
    let (bytes, values) = kind.block_shape();
    let per = values / BLOCK;
    let mut u = [[0u8; BLOCK]; 8];
    let mut so = [(0f32, 0f32); 8];
    for (eb, enc) in w.chunks_exact(bytes).enumerate() {
        block_codes(kind, enc, &mut u, &mut so);
        for sub in 0..per {
            let b = eb * per + sub;
            let q = &x.q[b * BLOCK..(b + 1) * BLOCK];
            let dot: i32 = u[sub]
                .iter()
                .zip(q)
                .map(|(&u, &q)| u as i32 * q as i32)
                .sum();
            let (dx, sum) = (x.d[b], x.sums[b]);
            f = block_step(f, dot, so[sub].0, so[sub].1, dx, dx * sum as f32);
        }
    }
    f
}

/// Scalar twin of the micro-kernel: `out[r][c] = sum over blocks of
/// dx * (s * sum(u * q) + o * S)` for the 8 rows of `x` and the 16 rows of
/// `group`, blocks `0..blocks`.
pub(crate) fn tile_scalar(group: &Group, blocks: usize, x: &XTile, out: &mut [[f32; COLS]; ROWS]) {
    *out = [[0.0; COLS]; ROWS];
    for b in 0..blocks {
        let codes = &group.codes[b * GROUP_BLOCK_BYTES..(b + 1) * GROUP_BLOCK_BYTES];
        for (r, acc) in out.iter_mut().enumerate() {
            let q = &x.q[(b * ROWS + r) * BLOCK..(b * ROWS + r + 1) * BLOCK];
            let (d, ds) = (x.d[b * ROWS + r], x.ds[b * ROWS + r]);
            for (c, o) in acc.iter_mut().enumerate() {
                let mut dot = 0i32;
                for kg in 0..BLOCK / 4 {
                    for i in 0..4 {
                        let u = codes[kg * 4 * COLS + 4 * c + i] as i32;
                        dot += u * q[4 * kg + i] as i32;
                    }
                }
                let (s, off) = (group.scales[b * COLS + c], group.offsets[b * COLS + c]);
                *o = block_step(*o, dot, s, off, d, ds);
            }
        }
    }
}

/// The micro-kernel a call runs.
#[derive(Clone, Copy)]
pub(crate) enum TileKernel {
    /// [`tile_scalar`] (tests, and the reference for the SIMD one).
    #[cfg_attr(not(test), allow(dead_code))]
    Scalar,
    /// The AVX-512 VNNI kernel.
    #[cfg(target_arch = "x86_64")]
    Vnni(super::x86::avx512::Avx512),
}

impl TileKernel {
    fn run(self, group: &Group, blocks: usize, x: &XTile, out: &mut [[f32; COLS]; ROWS]) {
        match self {
            TileKernel::Scalar => tile_scalar(group, blocks, x, out),
            #[cfg(target_arch = "x86_64")]
            TileKernel::Vnni(t) => super::x86::avx512::int8_tile(t, group, blocks, x, out),
        }
    }
}

/// `out[rows, n] = x[rows, k] · W[n, k]ᵀ` through the int8 path. Shapes
/// were checked by the caller; `k` is a multiple of 32 for these formats.
pub(crate) fn prefill(
    pool: &ThreadPool,
    kernel: TileKernel,
    kind: Int8Kind,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
) -> Result<()> {
    let k = w.k();
    if !k.is_multiple_of(BLOCK) {
        return Err(KernelError::BadShape {
            kernel: "matmul int8 prefill",
            reason: format!("k = {k} is not a multiple of {BLOCK}"),
        });
    }
    PACKED.with_borrow_mut(|groups| prefill_packed(pool, kernel, kind, x, rows, w, out, groups))
}

/// [`prefill`] with the packed-W buffers to fill and use.
#[allow(clippy::too_many_arguments)]
fn prefill_packed(
    pool: &ThreadPool,
    kernel: TileKernel,
    kind: Int8Kind,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
    groups: &mut Vec<Group>,
) -> Result<()> {
    pack(pool, kind, w, groups)?;
    prefill_groups(pool, kernel, x, rows, w, out, groups)
}

/// The integer GEMM against W already packed into `groups` ([`pack`]).
pub(crate) fn prefill_groups(
    pool: &ThreadPool,
    kernel: TileKernel,
    x: &[f32],
    rows: usize,
    w: &Weights,
    out: &mut [f32],
    groups: &[Group],
) -> Result<()> {
    let (n, k) = (w.n(), w.k());
    let blocks = k / BLOCK;
    let qx = QuantX::new(x, rows, k, BLOCK, BLOCK);
    let ds: Vec<f32> =
        qx.d.iter()
            .zip(&qx.sums)
            .map(|(&d, &s)| d * s as f32)
            .collect();
    // W groups per chunk: half of L2 (codes, scales and offsets).
    let group_bytes = blocks * (GROUP_BLOCK_BYTES + 8 * COLS);
    let chunk_groups = (CacheSizes::detect().l2 / 2 / group_bytes).max(1);
    let rows_per_task = rows.div_ceil(pool.threads()).next_multiple_of(ROWS);
    pool.for_each_chunk_mut(out, rows_per_task * n, |task, out_rows| {
        let r0 = task * rows_per_task;
        let task_rows = out_rows.len() / n;
        // This task's x, packed once per 8-row tile.
        let tiles: Vec<XTileBuf> = (0..task_rows)
            .step_by(ROWS)
            .map(|rt| {
                let mut buf = XTileBuf::default();
                buf.pack(&qx, &ds, rows, r0 + rt);
                buf
            })
            .collect();
        let mut tile = [[0f32; COLS]; ROWS];
        for (ci, chunk) in groups.chunks(chunk_groups).enumerate() {
            for (ti, xt) in tiles.iter().enumerate() {
                let rt = ti * ROWS;
                for (gi, group) in chunk.iter().enumerate() {
                    let j0 = (ci * chunk_groups + gi) * COLS;
                    kernel.run(group, blocks, &xt.tile(), &mut tile);
                    let cols = COLS.min(n - j0);
                    for (i, t) in tile.iter().enumerate().take(task_rows - rt) {
                        let at = (rt + i) * n + j0;
                        for (o, &v) in out_rows[at..at + cols].iter_mut().zip(t) {
                            *o = v;
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exodus_numerics::cpu::SimdLevel;

    /// Random weights of `format` (quantized from Gaussian values).
    fn weights(format: Format, n: usize, k: usize, seed: u64) -> Vec<u8> {
        let v = exodus_numerics::sample::normal(n * k, seed);
        format.quantize(&v, &Default::default()).unwrap()
    }

    #[test]
    fn packed_codes_times_scales_plus_offsets_are_the_dequantized_weights() {
        let pool = ThreadPool::new(2);
        let (n, k) = (21, 512);
        for name in ["q4_0", "q4_1", "q8_0", "q4_k", "mxfp4"] {
            let format: Format = name.parse().unwrap();
            let bytes = weights(format, n, k, 3);
            let w = Weights::new(format, &bytes, n, k).unwrap();
            let kind = Int8Kind::of(&w).expect("an int8 format");
            let mut groups = Vec::new();
            pack(&pool, kind, &w, &mut groups).unwrap();
            let mut row = vec![0f32; k];
            for j in 0..n {
                w.dequantize_row(SimdLevel::Scalar, j, 0, k, &mut row)
                    .unwrap();
                let (g, c) = (&groups[j / COLS], j % COLS);
                for (i, &want) in row.iter().enumerate() {
                    let (b, l) = (i / BLOCK, i % BLOCK);
                    let u = g.codes[b * GROUP_BLOCK_BYTES + (l / 4) * 4 * COLS + 4 * c + l % 4];
                    let got = g.scales[b * COLS + c] * u as f32 + g.offsets[b * COLS + c];
                    assert!(
                        (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                        "{name} W[{j}, {i}]: {got} vs {want}"
                    );
                }
            }
            // Rows past n are zero with zero scales.
            let last = &groups[n / COLS];
            assert!(last
                .scales
                .iter()
                .skip(n % COLS)
                .step_by(COLS)
                .all(|&s| s == 0.0));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vnni_tile_matches_scalar_tile() {
        let Some(t) = crate::matmul::x86::avx512::Avx512::new(SimdLevel::Avx512) else {
            return;
        };
        let mut rng = exodus_numerics::sample::SplitMix64::new(9);
        let blocks = 5;
        let group = Group {
            codes: (0..blocks * GROUP_BLOCK_BYTES)
                .map(|_| rng.next_u64() as u8)
                .collect(),
            scales: (0..blocks * COLS).map(|_| rng.normal() as f32).collect(),
            offsets: (0..blocks * COLS).map(|_| rng.normal() as f32).collect(),
        };
        let q: Vec<i8> = (0..blocks * ROWS * BLOCK)
            .map(|_| ((rng.next_u64() % 255) as i8).max(-127))
            .collect();
        let d: Vec<f32> = (0..blocks * ROWS).map(|_| rng.normal() as f32).collect();
        let ds: Vec<f32> = (0..blocks * ROWS).map(|_| rng.normal() as f32).collect();
        let x = XTile {
            q: &q,
            d: &d,
            ds: &ds,
        };
        let (mut want, mut got) = ([[0f32; COLS]; ROWS], [[0f32; COLS]; ROWS]);
        TileKernel::Scalar.run(&group, blocks, &x, &mut want);
        TileKernel::Vnni(t).run(&group, blocks, &x, &mut got);
        for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
            assert_eq!(g.to_bits(), w.to_bits(), "{g} vs {w}: the canonical order");
        }
    }
}
