//! `exodus-kernels`: the programming surface of exodus — kernels on plain
//! slices with explicit tiling, run-time CPU-feature dispatch and a
//! persistent thread pool. Kernels know nothing of graphs or devices.
//!
//! Every kernel has a scalar reference; SIMD versions (AVX2+FMA on x86_64,
//! NEON on aarch64) are picked at run time through
//! [`exodus_numerics::cpu::SimdLevel`] and tested equal to (or within a
//! stated tolerance of) the reference. `EXODUS_FORCE_SCALAR=1` forces the
//! scalar paths everywhere.
//!
//! Modules: [`pool`] (persistent worker threads), [`tiling`] (block sizes
//! and thread split, chosen from shapes and cache sizes or given by the
//! caller), [`matmul`](mod@matmul) (`out = x · Wᵀ` against weights in any
//! exodus-numerics format), [`ops`] (norms, rope, softmax, activations,
//! elementwise, embedding gather, argmax/top-k), [`attention`] (causal GQA
//! flash-style attention over a paged KV cache), [`bench`](mod@bench) (the cases and
//! machine limits behind `exodus bench kernels`).
//!
//! SIMD levels (`exodus_numerics::cpu::SimdLevel`): AVX2 covers every
//! kernel; AVX-512 has its own matmul kernels (VNNI int8 dots for Q8_0 /
//! Q4_0 / Q4_1, E4M3 dots, a 12x32 GEMM micro-kernel, a VNNI integer
//! prefill GEMM for the 4- and 8-bit formats) and runs the AVX2
//! code elsewhere; NEON covers every kernel too: the matmul (every row-dot
//! kernel and the 6x16 GEMM micro-kernel), the ops (norms, rope, softmax,
//! activations, elementwise, argmax/top-k) and the attention fold.

pub mod attention;
pub mod bench;
pub mod error;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod tiling;

pub use error::{KernelError, Result};
pub use matmul::{matmul, matmul_reference, Weights};
pub use pool::{StayAwake, ThreadPool};
pub use tiling::{Regime, Tiling};
