//! x86_64 kernels of the matmul. AVX2 + FMA + F16C: the float row dots
//! ([`fdot`]), the int8 row dots ([`idot`]) and the 6x16 GEMM micro-kernel
//! ([`gemm`]); AVX-512 ([`avx512`]): VNNI int8 dots, 64-code E4M3 dots and
//! a 6x32 micro-kernel.
//!
//! Every kernel is a safe function that takes an [`Avx2`] (or
//! [`avx512::Avx512`]) token, which can only be made on a CPU with those
//! features, so the `target_feature` calls inside are sound. Memory is reached through slices walked with
//! `chunks_exact` (each vector load reads inside its chunk) or, in the
//! micro-kernel, through pointers whose range is asserted first.

pub(crate) mod avx512;
pub(crate) mod fdot;
pub(crate) mod gemm;
pub(crate) mod idot;
pub(crate) mod quant;

use exodus_numerics::cpu::SimdLevel;

/// Proof that the CPU runs AVX2, FMA and F16C.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if `level` runs AVX2 kernels ([`SimdLevel::has_avx2`]).
    pub(crate) fn new(level: SimdLevel) -> Option<Avx2> {
        level.has_avx2().then_some(Avx2(()))
    }
}
