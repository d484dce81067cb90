//! Run-time CPU-feature dispatch.
//!
//! Every bulk conversion has a scalar reference and, where it pays, SIMD
//! versions. Which one runs is decided here, once, from the features the CPU
//! reports at run time (never from `-C target-cpu=native`, so one binary runs
//! on every x86_64 and aarch64 machine). Setting the environment variable
//! `EXODUS_FORCE_SCALAR=1`, or calling [`force_scalar`], pins every bulk
//! function to the scalar path; this is how a suspected SIMD bug is ruled in
//! or out without a rebuild. `EXODUS_SIMD=avx2` (or `scalar`, `avx512`,
//! `neon`) caps the level instead, e.g. to compare AVX2 with AVX-512 on one
//! machine.
//!
//! The x86 levels nest: a CPU at [`SimdLevel::Avx512`] also runs every
//! AVX2 kernel, and a kernel that has no AVX-512 version runs its AVX2 one
//! there (ask [`SimdLevel::has_avx2`], not `== Avx2`).
//!
//! Tests and benchmarks do not flip the global switch (tests run in
//! parallel); they call the `*_with(level, ..)` form of a function instead.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level that a bulk kernel can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// Portable Rust, no intrinsics: the reference every other level is tested against.
    Scalar,
    /// x86_64 with AVX2, FMA and F16C (Intel Haswell / AMD Zen and later).
    Avx2,
    /// x86_64 with everything of [`SimdLevel::Avx2`] plus AVX-512 F, BW, VL,
    /// DQ and VNNI (Intel Ice Lake / Sapphire Rapids, AMD Zen 4 and later).
    Avx512,
    /// aarch64 with Advanced SIMD (every aarch64 CPU has it).
    Neon,
}

impl SimdLevel {
    /// Short lowercase name, as printed by `exodus formats` and the benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Neon => "neon",
        }
    }

    /// The level named `name` (as [`SimdLevel::name`] prints it).
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        SimdLevel::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Every level, in the order [`SimdLevel::supported`] lists them.
    pub const ALL: [SimdLevel; 4] = [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Neon,
    ];

    /// Whether AVX2 kernels may run at this level: [`SimdLevel::Avx2`] and
    /// [`SimdLevel::Avx512`], when the CPU supports them.
    pub fn has_avx2(self) -> bool {
        matches!(self, SimdLevel::Avx2 | SimdLevel::Avx512) && self.is_supported()
    }

    /// Whether AVX-512 kernels may run at this level.
    pub fn has_avx512(self) -> bool {
        self == SimdLevel::Avx512 && self.is_supported()
    }

    /// Whether this level can run on the current CPU.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            SimdLevel::Avx2 => has_avx2(),
            SimdLevel::Avx512 => has_avx2() && has_avx512(),
            SimdLevel::Neon => cfg!(target_arch = "aarch64"),
        }
    }

    /// Every level the current CPU supports, scalar first.
    pub fn supported() -> Vec<SimdLevel> {
        SimdLevel::ALL
            .into_iter()
            .filter(|l| l.is_supported())
            .collect()
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// The best level the CPU supports, ignoring the scalar switch and the
/// `EXODUS_SIMD` cap.
pub fn detected() -> SimdLevel {
    if SimdLevel::Avx512.is_supported() {
        SimdLevel::Avx512
    } else if SimdLevel::Avx2.is_supported() {
        SimdLevel::Avx2
    } else if SimdLevel::Neon.is_supported() {
        SimdLevel::Neon
    } else {
        SimdLevel::Scalar
    }
}

const UNSET: u8 = 0;
const AUTO: u8 = 1;
const SCALAR: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// Pin every bulk conversion to the scalar path (`true`) or go back to the
/// detected level (`false`). Overrides `EXODUS_FORCE_SCALAR`.
pub fn force_scalar(on: bool) {
    MODE.store(if on { SCALAR } else { AUTO }, Ordering::Relaxed);
}

/// The level named by `EXODUS_SIMD`, if it names one this CPU supports;
/// otherwise [`detected`]. Read once.
fn capped() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        std::env::var("EXODUS_SIMD")
            .ok()
            .and_then(|name| SimdLevel::from_name(name.trim()))
            .filter(|l| l.is_supported())
            .unwrap_or_else(detected)
    })
}

/// The level bulk conversions use now: [`detected`] (capped by
/// `EXODUS_SIMD` when it names a supported level), unless the scalar path
/// is forced by [`force_scalar`] or `EXODUS_FORCE_SCALAR=1`.
pub fn active() -> SimdLevel {
    let mut mode = MODE.load(Ordering::Relaxed);
    if mode == UNSET {
        let forced = std::env::var("EXODUS_FORCE_SCALAR")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false);
        mode = if forced { SCALAR } else { AUTO };
        // A racing `force_scalar` call wins over the environment.
        let _ = MODE.compare_exchange(UNSET, mode, Ordering::Relaxed, Ordering::Relaxed);
        mode = MODE.load(Ordering::Relaxed);
    }
    if mode == SCALAR {
        SimdLevel::Scalar
    } else {
        capped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_supported_and_listed_first() {
        let levels = SimdLevel::supported();
        assert_eq!(levels[0], SimdLevel::Scalar);
        assert!(levels.contains(&detected()));
    }

    #[test]
    fn names_round_trip_and_x86_levels_nest() {
        for l in SimdLevel::ALL {
            assert_eq!(SimdLevel::from_name(l.name()), Some(l));
        }
        assert_eq!(SimdLevel::from_name("sse"), None);
        // Every AVX-512 CPU also runs the AVX2 kernels.
        if SimdLevel::Avx512.is_supported() {
            assert!(SimdLevel::Avx512.has_avx2() && SimdLevel::Avx2.is_supported());
        }
        assert!(!SimdLevel::Scalar.has_avx2() && !SimdLevel::Avx2.has_avx512());
    }
}
