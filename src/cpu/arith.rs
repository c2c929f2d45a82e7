//! What each CPU build runs for the row kernels' two hot loops: the AVX2 + FMA intrinsic loops
//! (avx2.rs) where the build is `Fused` on x86-64, the portable lane loops (lanes.rs)
//! otherwise. Generic kernels take `A: Arith` and get both the multiply-add and the loops.

use super::exp::{Fma, Fused, Separate};
use super::lanes;
use crate::scale::RowScale;

/// A build's multiply-add and its row loops.
pub(crate) trait Arith: Fma {
    /// Whether the AVX2 + FMA intrinsic loops may be used.
    const SIMD: bool;

    /// Pass 1: the max of the values and the max of their `|bits|`.
    fn max_and_abs_bits(x: &[f32]) -> (f32, u32);
    /// Pass 2: `Σ e^{κ(x − m)}`, storing each term into `store` when given.
    fn exp_sum(x: &[f32], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32;
}

impl Arith for Fused {
    const SIMD: bool = cfg!(target_arch = "x86_64");

    #[inline(always)]
    fn max_and_abs_bits(x: &[f32]) -> (f32, u32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fused` is only used inside functions compiled for (and called after
        // detecting) AVX2 + FMA.
        return unsafe { super::avx2::max_and_abs_bits(x) };
        #[cfg(not(target_arch = "x86_64"))]
        lanes::max_and_abs_bits(x)
    }

    #[inline(always)]
    fn exp_sum(x: &[f32], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if !sc.tiny {
            // SAFETY: as above.
            return unsafe { super::avx2::exp_sum(x, sc, store, next) };
        }
        let _ = next;
        lanes::exp_sum_portable::<Self>(x, sc, store)
    }
}

impl Arith for Separate {
    const SIMD: bool = false;

    #[inline(always)]
    fn max_and_abs_bits(x: &[f32]) -> (f32, u32) {
        lanes::max_and_abs_bits(x)
    }

    #[inline(always)]
    fn exp_sum(x: &[f32], sc: &RowScale, store: Option<&mut [f32]>, _next: &[f32]) -> f32 {
        lanes::exp_sum_portable::<Self>(x, sc, store)
    }
}
