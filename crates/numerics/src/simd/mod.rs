//! Instruction-set specific bulk kernels, one module per instruction set.
//!
//! Nothing here is called directly: [`crate::bulk`] and [`crate::mx`] pick a
//! kernel through [`crate::cpu`] and fall back to the scalar reference
//! otherwise. Each module's functions are safe wrappers whose only
//! precondition, that the CPU supports the instruction set, is checked by
//! the caller through [`crate::cpu::SimdLevel::is_supported`].

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod x86;

#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
pub(crate) mod neon;
