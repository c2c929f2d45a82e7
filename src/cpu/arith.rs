//! What each CPU build runs for the row kernels' hot loops: the AVX-512 intrinsic loops
//! (avx512.rs) in the AVX-512 build (`Fused512`), the AVX2 + FMA ones (avx2.rs) in the AVX2
//! build (`Fused`), the portable lane loops (lanes.rs) in the baseline build (`Separate`).
//! Generic kernels take `A: Arith` and get both the multiply-add and the loops.
//!
//! The loops read rows of any element type. The AVX-512 loops widen f16 / bf16 in registers
//! as they load and narrow as they store; the others widen `SUM_BLOCK` elements at a time
//! into a buffer on the stack ([`Arith::f32_blocks`]), still inside the row's pass.

use super::exp::{Fma, Fused, Fused512, Separate};
use super::lanes::{self, SUM_BLOCK};
use crate::element::{DType, Element};
use crate::scale::RowScale;

/// A build's multiply-add and its row loops.
pub(crate) trait Arith: Fma {
    /// Whether the AVX2 + FMA intrinsic loops may be used.
    const SIMD: bool;

    /// Pass 1: the max of the values and the max of their `|bits|` (as f32).
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32);
    /// Pass 2: `Σ e^{κ(x − m)}`, storing each term into `store` when given.
    fn exp_sum<E: Element>(x: &[E], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32;
    /// `dst ← src · s` in `O` (round-to-nearest-even).
    fn scale_into<O: Element>(src: &[f32], s: f32, dst: &mut [O]) {
        scale_by_blocks(src, s, dst)
    }
    /// `dst ← src` in `O` (round-to-nearest-even).
    fn narrow<O: Element>(src: &[f32], dst: &mut [O]) {
        O::narrow(src, dst)
    }
    /// `dst ← src` widened exactly (`dst` as long as `src`).
    fn widen<E: Element>(src: &[E], dst: &mut [f32]) {
        E::widen(src, dst)
    }
    /// Calls `f(j, block)` on `x` as f32, block by block (`j` is the block's first index):
    /// `x` itself, as one block, when it is f32; else `SUM_BLOCK` elements at a time widened
    /// into a buffer on the stack, which stays in L1 between the widening and `f`.
    #[inline(always)]
    fn f32_blocks<E: Element>(x: &[E], mut f: impl FnMut(usize, &[f32])) {
        if E::DTYPE == DType::F32 {
            f(0, bytemuck::cast_slice(x));
            return;
        }
        let mut buf = [0.0f32; SUM_BLOCK];
        for (k, b) in x.chunks(SUM_BLOCK).enumerate() {
            Self::widen(b, &mut buf[..b.len()]);
            f(k * SUM_BLOCK, &buf[..b.len()]);
        }
    }
}

/// [`Arith::scale_into`] a block at a time through a buffer on the stack.
#[inline(always)]
fn scale_by_blocks<O: Element>(src: &[f32], s: f32, dst: &mut [O]) {
    let mut buf = [0.0f32; SUM_BLOCK];
    for (src, dst) in src.chunks(SUM_BLOCK).zip(dst.chunks_mut(SUM_BLOCK)) {
        for (b, &v) in buf.iter_mut().zip(src) {
            *b = v * s;
        }
        O::narrow(&buf[..src.len()], dst);
    }
}

/// [`Arith::max_and_abs_bits`] from an f32 loop, a block at a time.
#[inline(always)]
fn max_by_blocks<A: Arith, E: Element>(x: &[E], f: impl Fn(&[f32]) -> (f32, u32)) -> (f32, u32) {
    let (mut m, mut bits) = (f32::MIN, 0u32);
    A::f32_blocks(x, |_, b| {
        let (bm, bb) = f(b);
        m = if bm > m { bm } else { m };
        bits = bits.max(bb);
    });
    (m, bits)
}

/// [`Arith::exp_sum`] from an f32 loop, a block at a time (block sums added in f64, as the
/// loops add theirs).
#[inline(always)]
fn exp_sum_by_blocks<A: Arith, E: Element>(
    x: &[E],
    mut store: Option<&mut [f32]>,
    f: impl Fn(usize, &[f32], Option<&mut [f32]>) -> f32,
) -> f32 {
    if E::DTYPE == DType::F32 {
        return f(0, bytemuck::cast_slice(x), store);
    }
    let mut total = 0.0f64;
    A::f32_blocks(x, |j, b| {
        let out = store.as_deref_mut().map(|o| &mut o[j..j + b.len()]);
        total += f(j, b, out) as f64;
    });
    total as f32
}

impl Arith for Fused {
    const SIMD: bool = cfg!(target_arch = "x86_64");

    #[inline(always)]
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fused` is only used inside functions compiled for (and called after
        // detecting) AVX2 + FMA.
        return max_by_blocks::<Self, E>(x, |b| unsafe { super::avx2::max_and_abs_bits(b) });
        #[cfg(not(target_arch = "x86_64"))]
        max_by_blocks::<Self, E>(x, lanes::max_and_abs_bits)
    }

    #[inline(always)]
    fn exp_sum<E: Element>(x: &[E], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if !sc.tiny {
            // SAFETY: as above.
            return exp_sum_by_blocks::<Self, E>(x, store, |j, b, o| {
                // The part of the next row (f32 words) that lies as far in as this block.
                let w = (j * E::DTYPE.size() / 4).min(next.len());
                unsafe { super::avx2::exp_sum(b, sc, o, &next[w..]) }
            });
        }
        let _ = next;
        exp_sum_by_blocks::<Self, E>(x, store, |_, b, o| {
            lanes::exp_sum_portable::<Self>(b, sc, o)
        })
    }
}

impl Arith for Fused512 {
    const SIMD: bool = cfg!(target_arch = "x86_64");

    #[inline(always)]
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fused512` is only used inside functions compiled for (and called after
        // detecting) AVX-512F, AVX2 and FMA.
        return unsafe { super::avx512::max_and_abs_bits(x) };
        #[cfg(not(target_arch = "x86_64"))]
        max_by_blocks::<Self, E>(x, lanes::max_and_abs_bits)
    }

    #[inline(always)]
    fn exp_sum<E: Element>(x: &[E], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if !sc.tiny {
            // SAFETY: as above.
            return unsafe { super::avx512::exp_sum(x, sc, store, next) };
        }
        let _ = next;
        exp_sum_by_blocks::<Self, E>(x, store, |_, b, o| {
            lanes::exp_sum_portable::<Self>(b, sc, o)
        })
    }

    #[inline(always)]
    fn scale_into<O: Element>(src: &[f32], s: f32, dst: &mut [O]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `dst` is as long as `src` (asserted there).
        unsafe {
            super::avx512::scale_into(src, s, dst)
        }
        #[cfg(not(target_arch = "x86_64"))]
        scale_by_blocks(src, s, dst)
    }

    #[inline(always)]
    fn narrow<O: Element>(src: &[f32], dst: &mut [O]) {
        // Times 1: exact.
        Self::scale_into(src, 1.0, dst)
    }

    #[inline(always)]
    fn widen<E: Element>(src: &[E], dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `dst` is as long as `src` (asserted there).
        unsafe {
            super::avx512::widen(src, dst)
        }
        #[cfg(not(target_arch = "x86_64"))]
        E::widen(src, dst)
    }
}

impl Arith for Separate {
    const SIMD: bool = false;

    #[inline(always)]
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
        max_by_blocks::<Self, E>(x, lanes::max_and_abs_bits)
    }

    #[inline(always)]
    fn exp_sum<E: Element>(
        x: &[E],
        sc: &RowScale,
        store: Option<&mut [f32]>,
        _next: &[f32],
    ) -> f32 {
        exp_sum_by_blocks::<Self, E>(x, store, |_, b, o| {
            lanes::exp_sum_portable::<Self>(b, sc, o)
        })
    }
}
