//! Non-matmul kernels on f32 slices: norms, rope, softmax, activations,
//! elementwise arithmetic, embedding gather, argmax and top-k, and layout
//! moves (transpose, slice, concat) with row sums.
//!
//! Conventions:
//! - tensors are row-major slices; each function states its shapes as
//!   `[rows, cols]`-style comments and takes the sizes as arguments, which
//!   are checked against the slice lengths ([`KernelError`](crate::KernelError),
//!   never a panic);
//! - every op has `op(..)`, which runs on [`exodus_numerics::cpu::active`]
//!   (so `EXODUS_FORCE_SCALAR=1` pins it to the scalar path), and
//!   `op_with(level, ..)` for tests and benchmarks;
//! - the scalar path is the reference; the SIMD paths (AVX2+FMA in `x86`,
//!   NEON in `neon`, the same kernels four lanes wide) are tested against
//!   it, and a level without a kernel for an op runs the scalar path;
//! - the kernels are single-threaded; [`parallel`] splits row-wise ones
//!   into bands of rows on the crate's thread pool.

mod activation;
pub(crate) mod check;
pub(crate) mod dispatch;
mod elementwise;
mod embedding;
mod layout;
mod math;
mod norm;
pub mod parallel;
mod rope;
mod select;
mod softmax;

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub use activation::{gelu, gelu_with, silu, silu_with, swiglu, swiglu_with, GeluApprox};
pub use elementwise::{
    add, add_with, div, div_with, mul, mul_with, scale, scale_with, sub, sub_with,
};
pub use embedding::{embedding, QuantizedRows};
pub use layout::{concat_axis, gather_rows, slice_axis, sum_rows, transpose};
pub use norm::{
    layer_norm, layer_norm_with, rms_norm, rms_norm_with, LayerNormParams, RmsNormParams,
};
pub use rope::{rope, rope_with, RopeParams, RopeStyle};
pub use select::{argmax, argmax_with, top_k, top_k_with};
pub use softmax::{softmax, softmax_with};
