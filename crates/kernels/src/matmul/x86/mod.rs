//! AVX2 + FMA + F16C kernels of the matmul (x86_64): the float row dots
//! ([`fdot`]), the int8 row dots ([`idot`]) and the 6x16 GEMM micro-kernel
//! ([`gemm`]).
//!
//! Every kernel is a safe function that takes an [`Avx2`] token, which can
//! only be made on a CPU with AVX2, FMA and F16C, so the `target_feature`
//! calls inside are sound. Memory is reached through slices walked with
//! `chunks_exact` (each vector load reads inside its chunk) or, in the
//! micro-kernel, through pointers whose range is asserted first.

pub(crate) mod fdot;
pub(crate) mod gemm;
pub(crate) mod idot;

use exodus_numerics::cpu::SimdLevel;

/// Proof that the CPU runs AVX2, FMA and F16C.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, if `level` is [`SimdLevel::Avx2`] and the CPU supports it.
    pub(crate) fn new(level: SimdLevel) -> Option<Avx2> {
        (level == SimdLevel::Avx2 && level.is_supported()).then_some(Avx2(()))
    }
}
