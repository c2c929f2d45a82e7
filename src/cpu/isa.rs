//! Which build of the CPU kernels runs: AVX-512, AVX2 or the portable baseline.
//!
//! The row kernels are compiled three times (see the `multiversion!` macro in `cpu/mod.rs`):
//! with AVX-512F + AVX2 + FMA, with AVX2 + FMA, and for the build target alone (SSE2 on x86-64,
//! NEON on aarch64, whatever else the target has). By default a [`Cpu`](super::Cpu) runs the
//! widest build the processor supports. `SMOOTHMAX_CPU_ISA=avx512|avx2|baseline` picks one for
//! the whole process (CI uses it to test every build on one machine); [`Cpu::with_isa`] picks
//! one for one engine. Asking for a build the processor lacks, or for an unknown name, is an
//! error, never a silent fallback.
//!
//! [`Cpu::with_isa`]: super::Cpu::with_isa

use crate::error::{Error, Result};
use std::fmt;
use std::sync::OnceLock;

/// The environment variable that picks the CPU build for the process.
pub const ISA_ENV: &str = "SMOOTHMAX_CPU_ISA";

/// A build of the CPU kernels.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CpuIsa {
    /// AVX-512F (+ AVX2, FMA): 16 lanes, x86-64 only.
    Avx512,
    /// AVX2 + FMA: 8 lanes, x86-64 only.
    Avx2,
    /// Whatever the build target has, with separate multiplies and adds (SSE2 on x86-64).
    Baseline,
}

impl CpuIsa {
    /// Every build, widest first.
    pub const ALL: [CpuIsa; 3] = [CpuIsa::Avx512, CpuIsa::Avx2, CpuIsa::Baseline];

    /// The name `SMOOTHMAX_CPU_ISA` and `smoothmax info` use.
    pub fn name(self) -> &'static str {
        match self {
            CpuIsa::Avx512 => "avx512",
            CpuIsa::Avx2 => "avx2",
            CpuIsa::Baseline => "baseline",
        }
    }

    /// The build with this name.
    pub fn from_name(name: &str) -> Option<CpuIsa> {
        CpuIsa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this processor can run the build.
    pub fn is_supported(self) -> bool {
        match self {
            CpuIsa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx512 => {
                CpuIsa::Avx2.is_supported() && std::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            CpuIsa::Avx2 | CpuIsa::Avx512 => false,
        }
    }

    /// The builds this processor can run, widest first (the first is the default).
    pub fn supported() -> Vec<CpuIsa> {
        CpuIsa::ALL
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }

    /// The build `SMOOTHMAX_CPU_ISA` names, or the widest supported one when it is unset; an
    /// error for an unknown name or a build this processor cannot run. Read once per process.
    pub fn from_env() -> Result<CpuIsa> {
        static CHOICE: OnceLock<Result<CpuIsa>> = OnceLock::new();
        CHOICE
            .get_or_init(|| {
                let choices = CpuIsa::ALL.map(|i| (i.name(), Some(i)));
                crate::env::choice(ISA_ENV, &choices, None)?
                    .map_or(Ok(CpuIsa::widest()), CpuIsa::check_supported)
            })
            .clone()
    }

    /// `Ok(self)` when the processor can run it, else an error naming what it can run.
    pub fn check_supported(self) -> Result<CpuIsa> {
        self.check_among(&CpuIsa::supported())
    }

    /// `Ok(self)` when `supported` holds it, else an error naming what is supported.
    fn check_among(self, supported: &[CpuIsa]) -> Result<CpuIsa> {
        if supported.contains(&self) {
            Ok(self)
        } else {
            Err(Error::Unavailable(format!(
                "the {} CPU build needs instructions this processor lacks; it can run: {}",
                self.name(),
                names(supported)
            )))
        }
    }

    fn widest() -> CpuIsa {
        CpuIsa::supported()
            .first()
            .copied()
            .unwrap_or(CpuIsa::Baseline)
    }
}

impl fmt::Display for CpuIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn names(isas: &[CpuIsa]) -> String {
    isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_baseline_always_runs() {
        for isa in CpuIsa::ALL {
            assert_eq!(CpuIsa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(CpuIsa::from_name("sse2"), None);
        assert!(CpuIsa::supported().contains(&CpuIsa::Baseline));
        assert_eq!(CpuIsa::supported().last(), Some(&CpuIsa::Baseline));
    }

    /// A build missing from the supported list is an error naming what is supported (on a
    /// processor that has every build, `Cpu::with_isa` can only exercise the other branch).
    #[test]
    fn a_build_missing_from_the_supported_list_is_an_error() {
        let e = CpuIsa::Avx512
            .check_among(&[CpuIsa::Avx2, CpuIsa::Baseline])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the avx512 CPU build") && e.contains("avx2, baseline"),
            "{e}"
        );
        assert_eq!(
            CpuIsa::Baseline.check_among(&[CpuIsa::Baseline]),
            Ok(CpuIsa::Baseline)
        );
    }
}
