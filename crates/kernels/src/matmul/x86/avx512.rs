//! AVX-512 kernels of the matmul, for CPUs at
//! [`SimdLevel::Avx512`] (AVX-512 F, BW, VL, DQ and VNNI). Formats without
//! a kernel here run their AVX2 one (an [`Avx512`] token converts to an
//! [`Avx2`] token).
//!
//! - Int8 row dots for Q8_0 / Q4_0 / Q4_1: two 32-value blocks per 512-bit
//!   register and one `vpdpbusd` (u8 x i8, four products summed into each
//!   i32 lane) where AVX2 needs `vpmaddubsw` + `vpmaddwd`, one W row or
//!   four at a time. They take the integer GEMM's unsigned codes (nibbles;
//!   `q + 128` for Q8_0) and its canonical float order per block
//!   (`int8_prefill::block_step`), so a row's result does not depend on
//!   whether it runs here or in the prefill tile: the same bits for any
//!   batch. `vpdpbusd` does not saturate and no i32 lane can overflow
//!   (`4 * 255 * 127` per instruction).
//! - E4M3 row dots (per-row scale and 128-column tiles): 64 codes per step,
//!   decoded through `vcvtph2ps` as in the AVX2 kernel (the code shifted
//!   into an f16 is the value times `2^-8`), with the codes permuted first
//!   so that each 16-lane f32 vector holds 16 consecutive columns.
//! - The GEMM micro-kernel 6x32: two packed 16-column B slivers at once,
//!   12 zmm accumulators.
//!
//! Every kernel is a safe function taking the [`Avx512`] token; slices are
//! walked with `chunks_exact`, and the micro-kernel asserts its pointer
//! ranges, as in the AVX2 modules.

use std::arch::x86_64::*;

use exodus_numerics::cpu::SimdLevel;

use super::fdot::prefetch_next_row;
use super::{fdot, Avx2};
use crate::matmul::decode_pack::{DecodePack, PackKind};
use crate::matmul::int8_prefill::{block_step, canonical_dot, Int8Kind};
use crate::matmul::quant_x::XRow;
use crate::tiling::{MR, NR};

/// Proof that the CPU runs AVX-512 F/BW/VL/DQ/VNNI (and AVX2, FMA, F16C).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, if `level` runs AVX-512 kernels ([`SimdLevel::has_avx512`]).
    pub(crate) fn new(level: SimdLevel) -> Option<Avx512> {
        level.has_avx512().then_some(Avx512(()))
    }

    /// The AVX2 token: every AVX-512 CPU this level accepts runs AVX2.
    pub(crate) fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

/// 64 bytes of `b[..64]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn load64(b: &[u8]) -> __m512i {
    let b = &b[..64];
    // SAFETY: `b` holds 64 bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}

/// 64 int8 codes `q[..64]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn load64_i8(q: &[i8]) -> __m512i {
    let q = &q[..64];
    // SAFETY: `q` holds 64 bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(q.as_ptr().cast()) }
}

/// 16 f32 from `x[..16]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn load16_f32(x: &[f32]) -> __m512 {
    let x = &x[..16];
    // SAFETY: `x` holds 16 floats; the load is unaligned.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

/// `[lo | hi]` as one 512-bit register.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// f16 at `b[at..at + 2]` to f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn f16_at(b: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The nibbles of two legacy 4-bit blocks (`q0[..16]`, `q1[..16]`) in
/// element order: block 0's 32 values, then block 1's (each: low nibbles
/// are elements 0..16, high nibbles 16..32).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn nibbles_pair(q0: &[u8], q1: &[u8]) -> __m512i {
    let v = _mm256_set_m128i(fdot::load16(q1), fdot::load16(q0));
    let m = _mm256_set1_epi8(0x0F);
    let lo = _mm256_and_si256(v, m);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m);
    // [b0 lo, b1 lo, b0 hi, b1 hi] -> [b0 lo, b0 hi, b1 lo, b1 hi].
    let z = join(lo, hi);
    _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z)
}

/// The part of `x` from block `from` on (blocks of 32, one sum each).
fn x_tail(x: XRow<'_>, from: usize) -> XRow<'_> {
    XRow {
        q: &x.q[32 * from..],
        d: &x.d[from..],
        sums: &x.sums[from..],
    }
}

// The legacy GGUF formats' int8 dots, in the canonical order of
// `int8_prefill::block_step` (one block after another: the block's exact
// integer dot times `s * dx`, fused, then `o * (dx * S)`, fused), so that
// a row's result is the same bits whether it runs here (decode) or in the
// integer GEMM tile (prefill). The codes are the GEMM's unsigned ones:
// nibbles for Q4_0 / Q4_1 and `q + 128` for Q8_0, with the offset `o`
// (`-8 s`, the min `m`, `-128 s`) carried by the x code sums.

/// The formats of the dots below, as a const parameter.
const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

/// Bytes of one block of `KIND`.
const fn block_bytes(kind: u8) -> usize {
    match kind {
        Q8_0 => 34,
        Q4_0 => 18,
        _ => 20,
    }
}

fn int8_kind(kind: u8) -> Int8Kind {
    match kind {
        Q8_0 => Int8Kind::Q8_0,
        Q4_0 => Int8Kind::Q4_0,
        _ => Int8Kind::Q4_1,
    }
}

/// The 64 unsigned codes of the two blocks at `b` (block 0's 32 values,
/// then block 1's, in x's order).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn pair_codes<const KIND: u8>(b: &[u8]) -> __m512i {
    let bb = block_bytes(KIND);
    match KIND {
        Q8_0 => _mm512_xor_si512(
            join(fdot::load32(&b[2..]), fdot::load32(&b[2 + bb..])),
            _mm512_set1_epi8(-128),
        ),
        Q4_0 => nibbles_pair(&b[2..], &b[2 + bb..]),
        _ => nibbles_pair(&b[4..], &b[4 + bb..]),
    }
}

/// The scale and offset of the block whose header is at `b[0..]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn scale_offset<const KIND: u8>(b: &[u8]) -> (f32, f32) {
    let s = f16_at(b, 0);
    match KIND {
        Q8_0 => (s, -128.0 * s),
        Q4_0 => (s, -8.0 * s),
        _ => (s, f16_at(b, 2)),
    }
}

/// [`scale_offset`] of eight headers at once (each lane: the 32 bits at a
/// block's start).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn scales_offsets<const KIND: u8>(h: __m256i) -> (__m256, __m256) {
    let s = f16_lanes::<0>(h);
    let o = match KIND {
        Q8_0 => _mm256_mul_ps(s, _mm256_set1_ps(-128.0)),
        Q4_0 => _mm256_mul_ps(s, _mm256_set1_ps(-8.0)),
        _ => f16_lanes::<16>(h),
    };
    (s, o)
}

/// One encoded row · int8 x, canonical order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn legacy_row<const KIND: u8>(w: &[u8], x: XRow) -> f32 {
    let pair = 2 * block_bytes(KIND);
    let pairs = w.len() / pair;
    let mut f = 0f32;
    for ((b, xq), (xd, xs)) in w
        .chunks_exact(pair)
        .zip(x.q.chunks_exact(64))
        .zip(x.d.chunks_exact(2).zip(x.sums.chunks_exact(2)))
    {
        prefetch_next_row(w.len(), b);
        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), pair_codes::<KIND>(b), load64_i8(xq));
        let dots = [
            _mm512_mask_reduce_add_epi32(0x00FF, dot),
            _mm512_mask_reduce_add_epi32(0xFF00, dot),
        ];
        for h in 0..2 {
            let (s, o) = scale_offset::<KIND>(&b[h * pair / 2..]);
            f = block_step(f, dots[h], s, o, xd[h], xd[h] * xs[h] as f32);
        }
    }
    let tail = &w[pair * pairs..];
    if tail.is_empty() {
        return f;
    }
    canonical_dot(int8_kind(KIND), tail, x_tail(x, 2 * pairs), f)
}

/// Q8_0 row · int8 x.
pub(crate) fn q8_0_row(t: Avx512, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA, F16C.
    unsafe { legacy_row::<Q8_0>(w, x) }
}

/// Q4_0 row · int8 x.
pub(crate) fn q4_0_row(t: Avx512, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: as in `q8_0_row`.
    unsafe { legacy_row::<Q4_0>(w, x) }
}

/// Q4_1 row · int8 x.
pub(crate) fn q4_1_row(t: Avx512, w: &[u8], x: XRow) -> f32 {
    let _ = t;
    // SAFETY: as in `q8_0_row`.
    unsafe { legacy_row::<Q4_1>(w, x) }
}

/// Rows of W a multi-row decode dot takes at once.
pub(crate) const ROWS: usize = 4;

/// `ROWS` consecutive rows of one encoded W (row `r` at `rows[r *
/// row_len..]`).
#[derive(Clone, Copy)]
struct RowGroup<'a> {
    rows: &'a [u8],
    row_len: usize,
}

impl<'a> RowGroup<'a> {
    /// Row `r`.
    fn row(self, r: usize) -> &'a [u8] {
        &self.rows[r * self.row_len..(r + 1) * self.row_len]
    }

    /// The 32 bits at byte `at` of every row and at `at + half` (the
    /// headers of a pair's two blocks), in one gather: lanes `0..4` hold
    /// block 0 of rows `0..4`, lanes `4..8` block 1.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
    fn pair_headers(self, at: usize, half: usize) -> __m256i {
        let last = (ROWS - 1) * self.row_len + at + half + 4;
        assert!(last <= self.rows.len() && self.row_len < i32::MAX as usize / 4);
        let (l, h) = (self.row_len as i32, half as i32);
        let offsets = _mm256_set_epi32(3 * l + h, 2 * l + h, l + h, h, 3 * l, 2 * l, l, 0);
        // SAFETY: every lane reads 4 bytes at `at + offset`, at most `last`
        // bytes into `rows` (asserted above); the gather is unaligned.
        unsafe { _mm256_i32gather_epi32::<1>(self.rows.as_ptr().add(at).cast(), offsets) }
    }
}

/// The low (`SHIFT = 0`) or high (`SHIFT = 16`) f16 of each 32-bit lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn f16_lanes<const SHIFT: i32>(v: __m256i) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32::<SHIFT>(v)))
}

/// The block sums of four rows' pair dots (`dots[r]`: lanes `0..8` block
/// 0, `8..16` block 1): block 0 of rows `0..4`, then block 1.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn block_sums4(dots: [__m512i; ROWS]) -> [__m128i; 2] {
    // Per 128-bit lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3] for rows a, b.
    let ab = _mm512_add_epi32(
        _mm512_unpacklo_epi32(dots[0], dots[1]),
        _mm512_unpackhi_epi32(dots[0], dots[1]),
    );
    let cd = _mm512_add_epi32(
        _mm512_unpacklo_epi32(dots[2], dots[3]),
        _mm512_unpackhi_epi32(dots[2], dots[3]),
    );
    // Per 128-bit lane: the four rows' sums over its four i32 lanes.
    let quarter = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    // 128-bit lanes 0 + 1 are block 0, 2 + 3 block 1.
    let sums = _mm512_add_epi32(
        quarter,
        _mm512_shuffle_i32x4::<0b10_11_00_01>(quarter, quarter),
    );
    [
        _mm512_extracti32x4_epi32::<0>(sums),
        _mm512_extracti32x4_epi32::<2>(sums),
    ]
}

/// The canonical steps of one pair of blocks on four rows' lanes
/// ([`block_step`] per lane): `f += sum * (s * dx)`, then `f += o * (dx *
/// S)`, block 0 then block 1. `sums` are [`block_sums4`]'s, `(s, o)` the
/// eight scales and offsets (block 0 of rows `0..4`, then block 1), `xd`
/// and `xs` the two blocks' x scales and code sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn pair_steps(
    mut f: __m128,
    sums: [__m128i; 2],
    (s, o): (__m256, __m256),
    xd: &[f32],
    xs: &[i32],
) -> __m128 {
    let halves = |v: __m256| [_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v)];
    let (s, o) = (halves(s), halves(o));
    for h in 0..2 {
        let ds = xd[h] * xs[h] as f32;
        let sd = _mm_mul_ps(s[h], _mm_set1_ps(xd[h]));
        f = _mm_fmadd_ps(_mm_cvtepi32_ps(sums[h]), sd, f);
        f = _mm_fmadd_ps(o[h], _mm_set1_ps(ds), f);
    }
    f
}

/// Prefetches the place `at` of every row of the next group.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn prefetch_next_group(g: RowGroup, at: usize) {
    for r in 0..ROWS {
        prefetch_next_row(ROWS * g.row_len, &g.rows[r * g.row_len + at..]);
    }
}

/// [`legacy_row`] of `ROWS` rows at once: each x vector is loaded once for
/// the four, the eight block headers of a pair are gathered and converted
/// together, and the canonical steps run on four lanes (one per row), so
/// each result is the bits [`legacy_row`] gives.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn legacy_rows<const KIND: u8>(g: RowGroup, x: XRow) -> [f32; ROWS] {
    let bb = block_bytes(KIND);
    let pairs = g.row_len / (2 * bb);
    let mut f = _mm_setzero_ps();
    for (p, (xq, (xd, xs))) in
        x.q.chunks_exact(64)
            .zip(x.d.chunks_exact(2).zip(x.sums.chunks_exact(2)))
            .take(pairs)
            .enumerate()
    {
        let at = 2 * bb * p;
        prefetch_next_group(g, at);
        let xv = load64_i8(xq);
        let dots = std::array::from_fn(|r| {
            let codes = pair_codes::<KIND>(&g.row(r)[at..at + 2 * bb]);
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, xv)
        });
        let so = scales_offsets::<KIND>(g.pair_headers(at, bb));
        f = pair_steps(f, block_sums4(dots), so, xd, xs);
    }
    let mut lanes = [0f32; ROWS];
    // SAFETY: `lanes` holds 4 floats; the store is unaligned.
    unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), f) };
    if g.row_len == 2 * bb * pairs {
        return lanes;
    }
    std::array::from_fn(|r| {
        let tail = &g.row(r)[2 * bb * pairs..];
        canonical_dot(int8_kind(KIND), tail, x_tail(x, 2 * pairs), lanes[r])
    })
}

/// [`q8_0_row`] of `ROWS` consecutive rows (`w`: `ROWS` rows of `row_len`
/// bytes each).
pub(crate) fn q8_0_rows(t: Avx512, w: &[u8], row_len: usize, x: XRow) -> [f32; ROWS] {
    let _ = t;
    assert_eq!(w.len(), ROWS * row_len, "q8_0_rows: {ROWS} rows");
    // SAFETY: the token proves AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA, F16C.
    unsafe { legacy_rows::<Q8_0>(RowGroup { rows: w, row_len }, x) }
}

/// [`q4_0_row`] of `ROWS` consecutive rows.
pub(crate) fn q4_0_rows(t: Avx512, w: &[u8], row_len: usize, x: XRow) -> [f32; ROWS] {
    let _ = t;
    assert_eq!(w.len(), ROWS * row_len, "q4_0_rows: {ROWS} rows");
    // SAFETY: as in `q8_0_rows`.
    unsafe { legacy_rows::<Q4_0>(RowGroup { rows: w, row_len }, x) }
}

/// [`q4_1_row`] of `ROWS` consecutive rows.
pub(crate) fn q4_1_rows(t: Avx512, w: &[u8], row_len: usize, x: XRow) -> [f32; ROWS] {
    let _ = t;
    assert_eq!(w.len(), ROWS * row_len, "q4_1_rows: {ROWS} rows");
    // SAFETY: as in `q8_0_rows`.
    unsafe { legacy_rows::<Q4_1>(RowGroup { rows: w, row_len }, x) }
}

/// [`legacy_rows`] over one group of a [`DecodePack`] (four rows, every
/// pair of blocks; `x` from block 0): a pair's eight scales (and mins) come
/// from one load and two rows' codes from one 64-byte load and two masks,
/// and the canonical steps are the same, so each result is the bits
/// `legacy_rows` gives on the GGUF bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn packed_rows<const KIND: u8>(group: &[u8], x: XRow) -> [f32; ROWS] {
    let pair_bytes = if KIND == Q4_1 { 32 + 128 } else { 16 + 128 };
    let codes_at = pair_bytes - 128;
    let low = _mm512_set1_epi8(0x0F);
    let mut f = _mm_setzero_ps();
    for (pair, (xq, (xd, xs))) in group.chunks_exact(pair_bytes).zip(
        x.q.chunks_exact(64)
            .zip(x.d.chunks_exact(2).zip(x.sums.chunks_exact(2))),
    ) {
        let xv = load64_i8(xq);
        let s = _mm256_cvtph_ps(fdot::load16(pair));
        let o = if KIND == Q4_1 {
            _mm256_cvtph_ps(fdot::load16(&pair[16..]))
        } else {
            _mm256_mul_ps(s, _mm256_set1_ps(-8.0))
        };
        let (v01, v23) = (load64(&pair[codes_at..]), load64(&pair[codes_at + 64..]));
        let z = _mm512_setzero_si512();
        let dots = [
            _mm512_dpbusd_epi32(z, _mm512_and_si512(v01, low), xv),
            _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16::<4>(v01), low), xv),
            _mm512_dpbusd_epi32(z, _mm512_and_si512(v23, low), xv),
            _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16::<4>(v23), low), xv),
        ];
        f = pair_steps(f, block_sums4(dots), (s, o), xd, xs);
    }
    let mut lanes = [0f32; ROWS];
    // SAFETY: `lanes` holds 4 floats; the store is unaligned.
    unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), f) };
    lanes
}

/// The four rows of group `g` of `pack` · `x`: the bits
/// [`q4_0_rows`] / [`q4_1_rows`] give on the same rows' GGUF bytes.
pub(crate) fn packed_q4_rows(t: Avx512, pack: &DecodePack, g: usize, x: XRow) -> [f32; ROWS] {
    let _ = t;
    let group = pack.group(g);
    assert_eq!(
        group.len() / pack.kind().pair_bytes() * 64,
        x.q.len(),
        "packed_q4_rows: k"
    );
    match pack.kind() {
        // SAFETY: the token proves AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA, F16C.
        PackKind::Q4_0 => unsafe { packed_rows::<Q4_0>(group, x) },
        // SAFETY: as above.
        PackKind::Q4_1 => unsafe { packed_rows::<Q4_1>(group, x) },
    }
}

/// 64 E4M3 codes to four vectors of 16 f32 (columns `0..16`, `16..32`,
/// `32..48`, `48..64`), each the value times `2^-8`, or `None` if a code
/// is NaN (`0x7F` / `0xFF`).
///
/// Each code goes to the high byte of a 16-bit lane (`vpunpck*bw` with
/// zero); an arithmetic shift right by one puts the magnitude at bits
/// 7..14 and copies the sign into bit 14, which is cleared: the f16 with
/// the E4M3 fields. The unpacks work within 128-bit lanes, so the eight
/// 8-byte groups are first permuted to `0 4 1 5 2 6 3 7`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn e4m3x64(codes: __m512i) -> Option<[__m512; 4]> {
    let nan = _mm512_cmpeq_epi8_mask(
        _mm512_or_si512(codes, _mm512_set1_epi8(-128)),
        _mm512_set1_epi8(-1),
    );
    if nan != 0 {
        return None;
    }
    let p = _mm512_permutexvar_epi64(_mm512_set_epi64(7, 3, 6, 2, 5, 1, 4, 0), codes);
    let keep = _mm512_set1_epi16(!0x4000);
    let z = _mm512_setzero_si512();
    let lo = _mm512_and_si512(_mm512_srai_epi16::<1>(_mm512_unpacklo_epi8(z, p)), keep);
    let hi = _mm512_and_si512(_mm512_srai_epi16::<1>(_mm512_unpackhi_epi8(z, p)), keep);
    Some([
        _mm512_cvtph_ps(_mm512_castsi512_si256(lo)),
        _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(lo)),
        _mm512_cvtph_ps(_mm512_castsi512_si256(hi)),
        _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(hi)),
    ])
}

/// `acc[u] += w[u] * x[16u .. 16u + 16]` for the four vectors of 64 codes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn fma64(acc: &mut [__m512; 4], w: [__m512; 4], x: &[f32]) {
    for (u, a) in acc.iter_mut().enumerate() {
        *a = _mm512_fmadd_ps(w[u], load16_f32(&x[16 * u..]), *a);
    }
}

/// The sum of four accumulators.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn sum4(acc: [__m512; 4]) -> __m512 {
    _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))
}

/// E4M3 codes · x (no scale applied).
pub(crate) fn e4m3_row(t: Avx512, codes: &[u8], x: &[f32]) -> f32 {
    // SAFETY: the token proves AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA, F16C.
    unsafe { e4m3_row_avx512(t, codes, x) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn e4m3_row_avx512(t: Avx512, codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut wc = codes.chunks_exact(64);
    let mut xc = x.chunks_exact(64);
    for (wb, xb) in (&mut wc).zip(&mut xc) {
        prefetch_next_row(codes.len(), wb);
        let Some(w) = e4m3x64(load64(wb)) else {
            // Any NaN weight makes the dot NaN.
            return f32::NAN;
        };
        fma64(&mut acc, w, xb);
    }
    let tail = fdot::e4m3_row(t.avx2(), wc.remainder(), xc.remainder());
    _mm512_reduce_add_ps(sum4(acc)) * 256.0 + tail
}

/// E4M3 codes · x with one scale per `tile` columns (`scales[t]` for
/// columns `t * tile ..`); `tile` must be a multiple of 64. A last partial
/// tile may have any length.
pub(crate) fn e4m3_tiled_row(
    t: Avx512,
    codes: &[u8],
    x: &[f32],
    tile: usize,
    scales: &[f32],
) -> f32 {
    // SAFETY: the token proves AVX-512 F/BW/VL/DQ/VNNI, AVX2, FMA, F16C.
    unsafe { e4m3_tiled_row_avx512(t, codes, x, tile, scales) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn e4m3_tiled_row_avx512(t: Avx512, codes: &[u8], x: &[f32], tile: usize, scales: &[f32]) -> f32 {
    debug_assert!(tile > 0 && tile.is_multiple_of(64));
    let mut total = _mm512_setzero_ps();
    let mut tail = 0f32;
    for ((wt, xt), &s) in codes.chunks(tile).zip(x.chunks(tile)).zip(scales) {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut wc = wt.chunks_exact(64);
        let mut xc = xt.chunks_exact(64);
        for (wb, xb) in (&mut wc).zip(&mut xc) {
            prefetch_next_row(codes.len(), wb);
            let Some(w) = e4m3x64(load64(wb)) else {
                return f32::NAN;
            };
            fma64(&mut acc, w, xb);
        }
        total = _mm512_fmadd_ps(sum4(acc), _mm512_set1_ps(s), total);
        if !wc.remainder().is_empty() {
            tail += fdot::e4m3_row(t.avx2(), wc.remainder(), xc.remainder()) * s;
        }
    }
    _mm512_reduce_add_ps(total) * 256.0 + tail
}

/// Columns of the wide micro-tile: two packed B slivers.
pub(crate) const NR2: usize = 2 * NR;

/// `C (+)= A · [B0 B1]` for one 6x32 tile: `b0` and `b1` are two packed
/// 16-column slivers (layout of `gemm`), C's columns `0..16` come from
/// `b0` and `16..32` from `b1`; `accumulate == false` overwrites C.
///
/// Panics if a slice is too short for `kc` and `ldc` (an internal bug).
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel_6x32(
    t: Avx512,
    kc: usize,
    a: &[f32],
    b0: &[f32],
    b1: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let _ = t;
    assert!(a.len() >= kc * MR && b0.len() >= kc * NR && b1.len() >= kc * NR);
    assert!(ldc >= NR2 && c.len() >= (MR - 1) * ldc + NR2);
    // SAFETY: the token proves AVX-512F and FMA; the asserts above bound
    // every pointer the kernel forms: `a + 6p + i` (`p < kc`, `i < 6`),
    // `b0/b1 + 16p + 0..16`, and `c + i * ldc + 0..32`.
    unsafe {
        kernel_6x32_avx512(
            kc,
            a.as_ptr(),
            [b0.as_ptr(), b1.as_ptr()],
            c.as_mut_ptr(),
            ldc,
            accumulate,
        )
    }
}

/// # Safety
/// AVX-512F and FMA must be available; `a` must be valid for `6 * kc`
/// reads, each `b` for `16 * kc` reads and `c` for reads and writes of
/// `5 * ldc + 32` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn kernel_6x32_avx512(
    kc: usize,
    a: *const f32,
    b: [*const f32; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: `p < kc`, so these reads are within the stated ranges.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(b[0].add(NR * p)),
                _mm512_loadu_ps(b[1].add(NR * p)),
            )
        };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: `MR * p + i < MR * kc`.
            let ai = _mm512_set1_ps(unsafe { *a.add(MR * p + i) });
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row `i < 6` of C spans `c + i * ldc + 0..32`, within the
        // stated range.
        unsafe {
            let ci = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if accumulate {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(ci));
                r1 = _mm512_add_ps(r1, _mm512_loadu_ps(ci.add(16)));
            }
            _mm512_storeu_ps(ci, r0);
            _mm512_storeu_ps(ci.add(16), r1);
        }
    }
}

/// `C (+)= [A0; A1] · [B0 B1]` for one 12x32 tile: two packed 6-row A
/// slivers (rows `0..6` from `a0`, `6..12` from `a1`) against two
/// 16-column B slivers, 24 zmm accumulators; otherwise as [`kernel_6x32`].
///
/// Panics if a slice is too short for `kc` and `ldc` (an internal bug).
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel_12x32(
    t: Avx512,
    kc: usize,
    a: [&[f32]; 2],
    b: [&[f32]; 2],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let _ = t;
    assert!(a.iter().all(|a| a.len() >= kc * MR) && b.iter().all(|b| b.len() >= kc * NR));
    assert!(ldc >= NR2 && c.len() >= (2 * MR - 1) * ldc + NR2);
    // SAFETY: the token proves AVX-512F and FMA; the asserts above bound
    // every pointer the kernel forms: `a[h] + 6p + i` (`p < kc`, `i < 6`),
    // `b[h] + 16p + 0..16`, and `c + i * ldc + 0..32` (`i < 12`).
    unsafe {
        kernel_12x32_avx512(
            kc,
            [a[0].as_ptr(), a[1].as_ptr()],
            [b[0].as_ptr(), b[1].as_ptr()],
            c.as_mut_ptr(),
            ldc,
            accumulate,
        )
    }
}

/// # Safety
/// AVX-512F and FMA must be available; each `a` must be valid for
/// `6 * kc` reads, each `b` for `16 * kc` reads and `c` for reads and
/// writes of `11 * ldc + 32` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn kernel_12x32_avx512(
    kc: usize,
    a: [*const f32; 2],
    b: [*const f32; 2],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // C is read (or written) only after the loop: start its 24 lines on
    // their way now, so the misses overlap with the arithmetic.
    for i in 0..2 * MR {
        // SAFETY: prefetches do not fault; the addresses are in C's range.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc).cast());
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 16).cast());
        }
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; 2 * MR];
    for p in 0..kc {
        // B streams from L2: ask for the lines 8 steps ahead (a prefetch
        // past the end is harmless: it never faults).
        _mm_prefetch::<_MM_HINT_T0>(b[0].wrapping_add(NR * (p + 8)).cast());
        _mm_prefetch::<_MM_HINT_T0>(b[1].wrapping_add(NR * (p + 8)).cast());
        // SAFETY: `p < kc`, so these reads are within the stated ranges.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(b[0].add(NR * p)),
                _mm512_loadu_ps(b[1].add(NR * p)),
            )
        };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: `MR * p + i % MR < MR * kc`.
            let ai = _mm512_set1_ps(unsafe { *a[i / MR].add(MR * p + i % MR) });
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row `i < 12` of C spans `c + i * ldc + 0..32`, within the
        // stated range.
        unsafe {
            let ci = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if accumulate {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(ci));
                r1 = _mm512_add_ps(r1, _mm512_loadu_ps(ci.add(16)));
            }
            _mm512_storeu_ps(ci, r0);
            _mm512_storeu_ps(ci.add(16), r1);
        }
    }
}

/// Flops per round of [`fma_probe`]: 12 chains of 16 lanes, 2 flops each.
pub(crate) const FMA_PROBE_FLOPS_PER_ROUND: usize = 12 * 16 * 2;

/// Runs `iters` rounds of 12 independent 16-lane FMA chains and returns a
/// value that depends on all of them: the ceiling of the 6x32 kernel.
pub(crate) fn fma_probe(t: Avx512, iters: usize, seed: f32) -> f32 {
    let _ = t;
    // SAFETY: the token proves AVX-512F and FMA.
    unsafe { fma_probe_avx512(iters, seed) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn fma_probe_avx512(iters: usize, seed: f32) -> f32 {
    let mut acc = [_mm512_set1_ps(seed); 12];
    let a = _mm512_set1_ps(0.999_99);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for v in acc {
        s = _mm512_add_ps(s, v);
    }
    _mm512_reduce_add_ps(s)
}

/// The int8 prefill micro-kernel (`int8_prefill.rs`): 8 rows of quantized
/// x by the 16 rows of a packed W group, over `blocks` blocks of 32.
/// Per block and 4-byte k-group, one 64-byte load of W codes (16 rows x 4
/// bytes) feeds 8 `vpdpbusd` against the broadcast 4 x codes of each x
/// row; per block, the 8 i32 sums are scaled into f32 accumulators:
/// `acc += sum * (s * dx) + o * (dx * S)`.
pub(crate) fn int8_tile(
    t: Avx512,
    group: &crate::matmul::int8_prefill::Group,
    blocks: usize,
    x: &crate::matmul::int8_prefill::XTile,
    out: &mut [[f32; 16]; 8],
) {
    use crate::matmul::int8_prefill::{BLOCK, COLS, GROUP_BLOCK_BYTES, ROWS};
    let _ = t;
    assert!(group.codes.len() >= blocks * GROUP_BLOCK_BYTES);
    assert!(group.scales.len() >= blocks * COLS && group.offsets.len() >= blocks * COLS);
    assert!(x.q.len() >= blocks * ROWS * BLOCK);
    assert!(x.d.len() >= blocks * ROWS && x.ds.len() >= blocks * ROWS);
    // SAFETY: the token proves AVX-512 F/BW/VNNI; the asserts above bound
    // every read the kernel makes (see `int8_tile_avx512`).
    unsafe { int8_tile_avx512(group, blocks, x, out) }
}

/// # Safety
/// AVX-512 F/BW/VNNI must be available; `group` must hold `blocks` packed
/// blocks with their scales and offsets, and `x` `blocks` packed blocks of
/// 8 rows (codes, scales, scaled sums).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn int8_tile_avx512(
    group: &crate::matmul::int8_prefill::Group,
    blocks: usize,
    x: &crate::matmul::int8_prefill::XTile,
    out: &mut [[f32; 16]; 8],
) {
    use crate::matmul::int8_prefill::{BLOCK, COLS, GROUP_BLOCK_BYTES, ROWS};
    let (codes, scales, offsets) = (
        group.codes.as_ptr(),
        group.scales.as_ptr(),
        group.offsets.as_ptr(),
    );
    let (xq, xd, xds) = (x.q.as_ptr(), x.d.as_ptr(), x.ds.as_ptr());
    let mut facc = [_mm512_setzero_ps(); ROWS];
    for b in 0..blocks {
        // The reads below stay inside the asserted lengths because
        // `b < blocks`.
        // SAFETY: `b * 512 < blocks * 512 <= codes.len()`.
        let wb = unsafe { codes.add(b * GROUP_BLOCK_BYTES) };
        // SAFETY: `b * 256 < blocks * 256 <= x.q.len()`.
        let qb = unsafe { xq.add(b * ROWS * BLOCK) };
        let mut acc = [_mm512_setzero_si512(); ROWS];
        for kg in 0..BLOCK / 4 {
            // SAFETY: 64 bytes at `wb + kg * 64`, `kg < 8`: inside block b.
            let w = unsafe { _mm512_loadu_si512(wb.add(kg * 4 * COLS).cast()) };
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: 4 bytes at `qb + r * 32 + kg * 4` (`r < 8`,
                // `kg < 8`) are inside block b of x; the read is unaligned.
                let four =
                    unsafe { std::ptr::read_unaligned(qb.add(r * BLOCK + kg * 4).cast::<i32>()) };
                *a = _mm512_dpbusd_epi32(*a, w, _mm512_set1_epi32(four));
            }
        }
        // SAFETY: the 16 floats at `b * 16` of the scales and offsets.
        let (s, o) = unsafe {
            (
                _mm512_loadu_ps(scales.add(b * COLS)),
                _mm512_loadu_ps(offsets.add(b * COLS)),
            )
        };
        for (r, f) in facc.iter_mut().enumerate() {
            // SAFETY: `b * 8 + r < blocks * 8 <= x.d.len(), x.ds.len()`.
            let (d, ds) = unsafe { (*xd.add(b * ROWS + r), *xds.add(b * ROWS + r)) };
            let sd = _mm512_mul_ps(s, _mm512_set1_ps(d));
            *f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r]), sd, *f);
            *f = _mm512_fmadd_ps(o, _mm512_set1_ps(ds), *f);
        }
    }
    for (dst, f) in out.iter_mut().zip(facc) {
        // SAFETY: each output row holds 16 floats.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), f) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::dot_scalar;
    use crate::matmul::quant_x::QuantX;
    use crate::matmul::Weights;
    use exodus_numerics::gguf::GgufBlockType;
    use exodus_numerics::{bulk, ElementFormat, Format};

    #[test]
    fn e4m3x64_decodes_every_non_nan_code_in_column_order() {
        let Some(_) = Avx512::new(SimdLevel::Avx512) else {
            return;
        };
        let table = bulk::decode_table(ElementFormat::Fp8E4M3).expect("E4M3 table");
        for chunk in 0..4u8 {
            // Codes 0x7F and 0xFF (NaN) replaced by zero: tested below.
            let codes: Vec<u8> = (0..64)
                .map(|i| chunk * 64 + i)
                .map(|c| if c & 0x7F == 0x7F { 0 } else { c })
                .collect();
            let mut got = [0f32; 64];
            // SAFETY: the token above proves AVX-512F; `got` holds the 64
            // floats stored.
            unsafe {
                let v = e4m3x64(load64(&codes)).expect("no NaN code");
                for (u, w) in v.iter().enumerate() {
                    _mm512_storeu_ps(got[16 * u..].as_mut_ptr(), *w);
                }
            }
            for (&c, g) in codes.iter().zip(got) {
                assert_eq!(g * 256.0, table[c as usize], "code {c:#04x}");
            }
        }
    }

    #[test]
    fn multi_row_dots_are_the_one_row_dots_bit_for_bit() {
        let Some(t) = Avx512::new(SimdLevel::Avx512) else {
            return;
        };
        for blocks in [1usize, 2, 3, 18, 19] {
            let k = 32 * blocks;
            // Outliers, as in a real residual stream, and a zero block.
            let x: Vec<f32> = (0..k)
                .map(|i| match i % 97 {
                    5 => 600.0,
                    _ if i / 32 == 1 => 0.0,
                    _ => ((i * 37) % 101) as f32 * 0.013 - 0.6,
                })
                .collect();
            let q = QuantX::new(&x, 1, k, 32, 32);
            let xr = q.row(0);
            type One = fn(Avx512, &[u8], XRow) -> f32;
            type Many = fn(Avx512, &[u8], usize, XRow) -> [f32; ROWS];
            let cases: [(&str, usize, One, Many); 3] = [
                ("q8_0", 34, q8_0_row, q8_0_rows),
                ("q4_0", 18, q4_0_row, q4_0_rows),
                ("q4_1", 20, q4_1_row, q4_1_rows),
            ];
            for (name, block_bytes, one, many) in cases {
                let row_len = blocks * block_bytes;
                // Random bytes with sane f16 headers (scale ~0.01, min ~-0.5).
                let mut w: Vec<u8> = (0..ROWS * row_len)
                    .map(|i| ((i * 73 + 11) % 251) as u8)
                    .collect();
                for (b, block) in w.chunks_exact_mut(block_bytes).enumerate() {
                    block[..2].copy_from_slice(&(0x2000u16 + 37 * b as u16).to_le_bytes());
                    if name == "q4_1" {
                        block[2..4].copy_from_slice(&(0xb800u16 + b as u16).to_le_bytes());
                    }
                }
                let got = many(t, &w, row_len, xr);
                let kind = match name {
                    "q8_0" => Int8Kind::Q8_0,
                    "q4_0" => Int8Kind::Q4_0,
                    _ => Int8Kind::Q4_1,
                };
                for (r, g) in got.iter().enumerate() {
                    let row = &w[r * row_len..(r + 1) * row_len];
                    let want = one(t, row, xr);
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{name}, {blocks} blocks, row {r}"
                    );
                    // Both are the scalar canonical definition, bit for bit.
                    let scalar = canonical_dot(kind, row, xr, 0.0);
                    assert_eq!(want.to_bits(), scalar.to_bits(), "{name} vs canonical");
                }
            }
        }
    }

    #[test]
    fn packed_dots_are_the_gguf_dots_bit_for_bit() {
        let Some(t) = Avx512::new(SimdLevel::Avx512) else {
            return;
        };
        for (blocks, n) in [(2usize, 4usize), (18, 9), (48, 8)] {
            let k = 32 * blocks;
            let x: Vec<f32> = (0..k)
                .map(|i| match i % 89 {
                    7 => -450.0,
                    _ => ((i * 41) % 103) as f32 * 0.011 - 0.5,
                })
                .collect();
            let q = QuantX::new(&x, 1, k, 32, 32);
            let xr = q.row(0);
            type Many = fn(Avx512, &[u8], usize, XRow) -> [f32; ROWS];
            let cases: [(GgufBlockType, usize, Many); 2] = [
                (GgufBlockType::Q4_0, 18, q4_0_rows),
                (GgufBlockType::Q4_1, 20, q4_1_rows),
            ];
            for (format, block_bytes, gguf_rows) in cases {
                let row_len = blocks * block_bytes;
                let mut w: Vec<u8> = (0..n * row_len)
                    .map(|i| ((i * 89 + 5) % 253) as u8)
                    .collect();
                for (b, block) in w.chunks_exact_mut(block_bytes).enumerate() {
                    block[..2].copy_from_slice(&(0x2100u16 + 29 * b as u16).to_le_bytes());
                    if format == GgufBlockType::Q4_1 {
                        block[2..4].copy_from_slice(&(0xb700u16 + 3 * b as u16).to_le_bytes());
                    }
                }
                let weights = Weights::new(Format::Gguf(format), &w, n, k).unwrap();
                let pack = DecodePack::new(SimdLevel::Avx512, &weights).expect("a pack");
                assert_eq!(pack.groups(), n / ROWS);
                for g in 0..pack.groups() {
                    let got = packed_q4_rows(t, &pack, g, xr);
                    let rows = &w[g * ROWS * row_len..(g + 1) * ROWS * row_len];
                    let want = gguf_rows(t, rows, row_len, xr);
                    for r in 0..ROWS {
                        assert_eq!(
                            got[r].to_bits(),
                            want[r].to_bits(),
                            "{format:?}, {blocks} blocks, group {g}, row {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dots_match_scalar_with_odd_block_counts_and_nan_codes() {
        let Some(t) = Avx512::new(SimdLevel::Avx512) else {
            return;
        };
        for blocks in [1usize, 2, 3, 8, 9] {
            let k = 32 * blocks;
            let x: Vec<f32> = (0..k).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
            let q = QuantX::new(&x, 1, k, 32, 32);
            let xr = q.row(0);
            let byte = |i: usize| ((i * 73 + 11) % 251) as u8;
            // f16 scales of ~0.01 and mins of ~-0.5 in every block header.
            let block = |len: usize, header: &[u8]| -> Vec<u8> {
                (0..blocks)
                    .flat_map(|b| {
                        let h = header.to_vec();
                        let body = (h.len()..len).map(move |i| byte(b * len + i));
                        h.into_iter().chain(body)
                    })
                    .collect()
            };
            let close = |got: f32, want: f32, what: &str| {
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{what} {blocks} blocks: {got} vs {want}"
                );
            };
            let w = block(34, &[0x1f, 0x21]);
            close(q8_0_row(t, &w, xr), dot_scalar::q8_0_row(&w, xr), "q8_0");
            let w = block(18, &[0x1f, 0x21]);
            close(q4_0_row(t, &w, xr), dot_scalar::q4_0_row(&w, xr), "q4_0");
            let w = block(20, &[0x1f, 0x21, 0x00, 0xb8]);
            close(q4_1_row(t, &w, xr), dot_scalar::q4_1_row(&w, xr), "q4_1");
            let codes: Vec<u8> = (0..k).map(|i| byte(i) & !0x40).collect();
            let want = dot_scalar::e4m3_row(&codes, &x);
            close(e4m3_row(t, &codes, &x), want, "e4m3");
            let scales = [0.5f32, 2.0, 0.25, 4.0, 1.0];
            let tiled = e4m3_tiled_row(t, &codes, &x, 64, &scales);
            let want: f32 = codes
                .chunks(64)
                .zip(x.chunks(64))
                .zip(scales)
                .map(|((c, xs), s)| dot_scalar::e4m3_row(c, xs) * s)
                .sum();
            close(tiled, want, "e4m3 tiled");
            // One NaN code anywhere makes the dot NaN.
            for at in [0, k - 1, k / 2] {
                let mut nan = codes.clone();
                nan[at] = if at % 2 == 0 { 0x7F } else { 0xFF };
                assert!(e4m3_row(t, &nan, &x).is_nan(), "NaN at {at} of {k}");
                assert!(e4m3_tiled_row(t, &nan, &x, 64, &scales).is_nan());
            }
        }
    }
}
