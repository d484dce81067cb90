//! Which implementation a kernel runs for a requested
//! [`SimdLevel`]: the level itself when the CPU supports it and this crate
//! has kernels for it, the scalar reference otherwise.

use exodus_numerics::cpu::SimdLevel;

/// The implementation a `*_with(level, ..)` call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Portable Rust: the reference.
    Scalar,
    /// AVX2 + FMA (+ F16C) intrinsics, `crate::ops::x86`.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Advanced SIMD intrinsics, `crate::ops::neon`.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// The path for `level`; an unsupported level runs the scalar path.
pub(crate) fn path(level: SimdLevel) -> Path {
    if !level.is_supported() {
        return Path::Scalar;
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512 => Path::Avx2,
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => Path::Neon,
        _ => Path::Scalar,
    }
}
