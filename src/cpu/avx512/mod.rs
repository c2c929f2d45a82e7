//! The row kernels' hot loops with AVX-512F intrinsics, for the AVX-512 build: the loops of
//! avx2/ sixteen lanes at a time, with the exponential in base 2 (as the GPU kernels
//! evaluate it) and `2^n` applied with `vscalefps`; f16 / bf16 rows widened as they are
//! loaded, outputs narrowed as they are stored.
//!
//! Measured on the development machine (AMD EPYC, Zen 4), one core summing `e^x` over an
//! L1-resident row: 1.7 G exponentials/s with the eight-lane AVX2 loop, 4.6 G/s with the same
//! formula in sixteen lanes, 6.3 G/s with the base-2 form here ([`exp2_16`]).
//! The row ops were bound by that rate (logsumexp took longer than a memcpy of the same row),
//! so this is the difference between an exp-bound and a memory-bound CPU path.

#![cfg(target_arch = "x86_64")]

use super::exp::{EXP2_LO, EXP2_POLY};
use super::lanes::SUM_BLOCK;
use super::lin_terms::Linear;
use crate::element::Element;
use crate::scale::RowScale;
use std::arch::x86_64::*;

/// Sixteen `2^z` at once: `n = round(z)`, `f = z − n` (exact), `2^f` by [`EXP2_POLY`], times
/// `2^n` by `vscalefps`; worst relative error 0.64 ε over `[−126, 0]` (measured: the test
/// below), the same above 0 (`vscalefps` scales exactly, and gives +inf past f32's range).
/// With `flush`, lanes below [`EXP2_LO`] (−inf included) give exactly 0, and a NaN lane stays
/// NaN (the compare is unordered-true; +inf gives +inf, measured: the test below), so a sum
/// over a block whose values were never read before (`exp_sums_unchecked`) shows a NaN or
/// +inf among them; without `flush`, the caller has shown there are none below (the compare
/// is one instruction of ten).
///
/// Against `e^x` through `z = x·log₂e` this costs one more rounding than exp.rs's Cody–Waite
/// reduction: a relative error of about `|x|·ε/2` in the result, the same as the GPU
/// kernels' `exp2` (see `crate::scale`), and well inside the contract's `32·ε` for the terms
/// that matter to a sum or a softmax (a term `e^x` with `|x| ≥ 32` is below `e^{-32}` of the
/// row's largest). It takes 10 vector instructions (round, subtract, six multiply-adds,
/// compare, scale) where the Cephes form takes 15: 6.3 G exps/s per core against 4.9
/// (measured as in the module docs, with the clamp this version drops).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn exp2_16(z: __m512, flush: bool) -> __m512 {
    let lo = _mm512_set1_ps(EXP2_LO);
    // No clamp of z first: the lanes a clamp would fix are the ones the mask zeroes (below
    // −126, where `vscalefps` alone would give subnormals or 0, and −inf, where `f` is NaN).
    // Without `flush` the caller has shown there are none (`exp::bounded_row`).
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(z);
    let f = _mm512_sub_ps(z, n);
    let c = |i: usize| _mm512_set1_ps(EXP2_POLY[i]);
    let mut p = _mm512_fmadd_ps(c(6), f, c(5));
    for i in (0..5).rev() {
        p = _mm512_fmadd_ps(p, f, c(i));
    }
    if flush {
        _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(z, lo), p, n)
    } else {
        _mm512_scalef_ps(p, n)
    }
}

/// Adds a block sum's sixteen f32 lanes into eight f64 lanes (see `SUM_BLOCK`).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn fold_f64(v: __m512, d: &mut __m512d) {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    *d = _mm512_add_pd(*d, _mm512_add_pd(_mm512_cvtps_pd(lo), _mm512_cvtps_pd(hi)));
}

/// Max of the values (NaN and −inf never win: `vmaxps` returns its second operand on NaN) and
/// the max of `|bits|`, reading any element type (widened in registers). A row of at least 32
/// elements ends with its last 32, overlapping the groups before (both maxima are idempotent):
/// no scalar tail.
///
/// # Safety
/// The processor must have AVX-512F.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let (mut m0, mut m1) = (_mm512_set1_ps(f32::MIN), _mm512_set1_ps(f32::MIN));
    let (mut b0, mut b1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut step = |i: usize| {
        // SAFETY: i + 32 ≤ x.len() (both callers).
        let (v0, v1) = unsafe { load32_any_order(x.as_ptr().add(i)) };
        m0 = _mm512_max_ps(v0, m0);
        m1 = _mm512_max_ps(v1, m1);
        b0 = _mm512_max_epu32(b0, _mm512_and_si512(_mm512_castps_si512(v0), abs));
        b1 = _mm512_max_epu32(b1, _mm512_and_si512(_mm512_castps_si512(v1), abs));
    };
    let mut n = x.len() / 32 * 32;
    for i in (0..n).step_by(32) {
        step(i);
    }
    if n < x.len() && x.len() >= 32 {
        step(x.len() - 32);
        n = x.len();
    }
    let mut m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    let mut bits = _mm512_reduce_max_epu32(_mm512_max_epu32(b0, b1));
    for v in x[n..].iter().map(|v| v.to_f32()) {
        m = if v > m { v } else { m };
        bits = bits.max(v.to_bits() & 0x7fff_ffff);
    }
    (m, bits)
}

/// `Σ e^{fma(x, h, −m·h)·c}` over a row of any element type (see `crate::scale`; not for tiny
/// temperatures, nor where `c·log₂e` overflows: `exp::base2_fits`), storing each term into
/// `store` when given; blocked (`SUM_BLOCK` elements in two f32 vectors, the block sums in
/// f64), with the next row prefetched as in avx2/.
///
/// # Safety
/// The processor must have AVX-512F; `store`, when given, is as long as `x`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn exp_sum<E: Element>(
    x: &[E],
    sc: &RowScale,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> f32 {
    // SAFETY: as the caller's.
    unsafe {
        if sc.no_flush {
            exp_sums::<E, false, false>(x, sc, store, next, None).0
        } else {
            exp_sums::<E, false, true>(x, sc, store, next, None).0
        }
    }
}

/// [`exp_sum`] (each term stored into `store` when given, the next row prefetched) and the
/// linear sum of `lin` in one read of `x` (cross-entropy with smoothing or probability
/// targets): `(Σ e, σ·Σ k̂·(x − m))`.
///
/// # Safety
/// The processor must have AVX-512F; `lin.k` and `store`, when given, are as long as `x`;
/// `x` and `sc` are in [`Linear::fits`]'s domain (checked in debug builds).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn exp_linear_sums<E: Element>(
    x: &[E],
    sc: &RowScale,
    lin: &Linear,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> (f32, f32) {
    lin.check(x, sc.h);
    // SAFETY: as the caller's.
    unsafe {
        if sc.no_flush {
            exp_sums::<E, true, false>(x, sc, store, next, Some(lin))
        } else {
            exp_sums::<E, true, true>(x, sc, store, next, Some(lin))
        }
    }
}

/// [`exp_sum`] and, with `lin`, the linear sum over a block whose values were not read
/// before (`rows::online`'s guessed blocks): `sc`'s reference `m` may lie below some of them,
/// and any value may be non-finite. The terms are formed as [`exp_sum`] forms them (above 1 as
/// accurately as below); a NaN value makes the exp sum NaN, a +inf value or one whose term
/// overflows makes it +inf, and a −inf value makes the linear sum non-finite (its term is
/// −inf, or NaN where `k̂ = 0`), so the caller tells from the sums alone whether the block
/// needs its checked pass.
///
/// # Safety
/// The processor must have AVX-512F; `lin.k`, when given, is as long as `x`; `sc` is for the
/// base-2 loops (`exp::base2_fits`), with `h = 1` when `lin` is given.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn exp_sums_unchecked<E: Element>(
    x: &[E],
    sc: &RowScale,
    lin: Option<&Linear>,
    next: &[f32],
) -> (f32, f32) {
    if let Some(l) = lin {
        l.check_len(x.len());
    }
    super::avx2::prefetch_l1(x);
    // SAFETY: as the caller's, `k`'s length asserted.
    unsafe {
        match lin {
            Some(l) => exp_sums::<E, true, true>(x, sc, None, next, Some(l)),
            None => exp_sums::<E, false, true>(x, sc, None, next, None),
        }
    }
}

/// [`exp_sum`], plus the linear sum of `lin` where `LIN`.
///
/// The last `r < 32` elements go through the same vector code, in a group of 32 whose other
/// lanes are −inf (exp terms exactly 0) with `k̂` 0 (linear terms −inf or NaN, dropped by
/// position). Where the row holds 32 elements that group is the row's last 32, loaded in place
/// and masked (the new elements in lanes `32 − r..`); a shorter row is copied into a padded
/// buffer (lanes `..r`). (Padding every row's tail that way, read back as vectors at once,
/// stalled on store forwarding: a 40-column logsumexp took 0.48-0.51 ms per 8192 rows on one
/// core, 0.34 in place.)
///
/// # Safety
/// As [`exp_sum`] and [`exp_linear_sums`].
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn exp_sums<E: Element, const LIN: bool, const FLUSH: bool>(
    x: &[E],
    sc: &RowScale,
    store: Option<&mut [f32]>,
    next: &[f32],
    lin: Option<&Linear>,
) -> (f32, f32) {
    debug_assert!(!sc.tiny);
    // `next` is counted in f32 words; one prefetch per 64 bytes of this row's progress.
    let words_per_step = 32 * E::DTYPE.size() / 4;
    let pf = next.len();
    // The exponent in base 2: `fma(x, h, −m·h)·c·log₂e`, with `c·log₂e` formed once (in
    // f64, rounded once). Callers take the portable loop where it overflows f32.
    let c2 = super::exp::base2_c(sc);
    debug_assert!(c2.is_finite());
    let (vh, vmh, vc) = (
        _mm512_set1_ps(sc.h),
        _mm512_set1_ps(sc.mh),
        _mm512_set1_ps(c2),
    );
    let (ninf, zero) = (_mm512_set1_ps(f32::NEG_INFINITY), _mm512_setzero_ps());
    let k = lin.and_then(|l| l.k);
    // From the mutable borrow (see avx2/), which ends here.
    let out_ptr = store.map_or(std::ptr::null_mut(), |o| {
        assert_eq!(o.len(), x.len());
        o.as_mut_ptr()
    });
    // The terms of thirty-two elements `v0, v1` (`k̂` in `k0, k1`, when given): the exp
    // terms' two vectors and the (unscaled) linear terms' two. The last group's padding is
    // −inf, always flushed.
    let terms = |v0: __m512, v1: __m512, k0: __m512, k1: __m512, flush: bool| {
        let (t0, t1) = (_mm512_fmadd_ps(v0, vh, vmh), _mm512_fmadd_ps(v1, vh, vmh));
        let (e0, e1) = (
            exp2_16(_mm512_mul_ps(t0, vc), flush),
            exp2_16(_mm512_mul_ps(t1, vc), flush),
        );
        let (l0, l1) = match (LIN, k) {
            (false, _) => (zero, zero),
            (true, None) => (t0, t1),
            (true, Some(_)) => (_mm512_mul_ps(k0, t0), _mm512_mul_ps(k1, t1)),
        };
        (e0, e1, l0, l1)
    };
    let (mut total, mut lin_total) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let n = x.len() / 32 * 32;
    for b0 in (0..n).step_by(SUM_BLOCK) {
        let (mut a0, mut a1) = (zero, zero);
        let (mut s0, mut s1) = (zero, zero);
        for i in (b0..n.min(b0 + SUM_BLOCK)).step_by(32) {
            // SAFETY: i + 32 ≤ n ≤ the length of x, of out and of k (when given, asserted
            // equal); prefetch never faults.
            unsafe {
                let w = i / 32 * words_per_step;
                if w < pf {
                    _mm_prefetch::<_MM_HINT_T1>(next.as_ptr().add(w) as *const i8);
                    if words_per_step > 16 && w + 16 < pf {
                        _mm_prefetch::<_MM_HINT_T1>(next.as_ptr().add(w + 16) as *const i8);
                    }
                }
                let p = x.as_ptr().add(i);
                // The terms' order matters only where they are stored or weighted.
                let (v0, v1) = if out_ptr.is_null() && k.is_none() {
                    load32_any_order(p)
                } else {
                    (load16(p), load16(p.add(16)))
                };
                let (k0, k1) = match k {
                    Some(k) if LIN => (
                        _mm512_loadu_ps(k.as_ptr().add(i)),
                        _mm512_loadu_ps(k.as_ptr().add(i + 16)),
                    ),
                    _ => (zero, zero),
                };
                let (e0, e1, l0, l1) = terms(v0, v1, k0, k1, FLUSH);
                if !out_ptr.is_null() {
                    _mm512_storeu_ps(out_ptr.add(i), e0);
                    _mm512_storeu_ps(out_ptr.add(i + 16), e1);
                }
                a0 = _mm512_add_ps(a0, e0);
                a1 = _mm512_add_ps(a1, e1);
                if LIN {
                    s0 = _mm512_add_ps(s0, l0);
                    s1 = _mm512_add_ps(s1, l1);
                }
            }
        }
        fold_f64(_mm512_add_ps(a0, a1), &mut total);
        if LIN {
            fold_f64(_mm512_add_ps(s0, s1), &mut lin_total);
        }
    }
    let r = x.len() - n;
    if r > 0 {
        // The group starts at `base`: the row's last 32 elements, of which lanes `32 − r..`
        // are new, or a short row's copy, its elements in lanes `..r`.
        let base = x.len().saturating_sub(32);
        let keep = if x.len() >= 32 {
            u32::MAX << (32 - r)
        } else {
            u32::MAX >> (32 - r)
        };
        let (m0, m1) = (keep as u16, (keep >> 16) as u16);
        let (v0, v1, k0, k1) = if x.len() >= 32 {
            // SAFETY: 32 elements of x (and of k, as long) from `base`.
            unsafe {
                let p = x.as_ptr().add(base);
                let (k0, k1) = match k {
                    Some(k) if LIN => (
                        _mm512_maskz_loadu_ps(m0, k.as_ptr().add(base)),
                        _mm512_maskz_loadu_ps(m1, k.as_ptr().add(base + 16)),
                    ),
                    _ => (zero, zero),
                };
                (
                    _mm512_mask_mov_ps(ninf, m0, load16(p)),
                    _mm512_mask_mov_ps(ninf, m1, load16(p.add(16))),
                    k0,
                    k1,
                )
            }
        } else {
            let mut xt = [E::from_f32(f32::NEG_INFINITY); 32];
            xt[..r].copy_from_slice(x);
            let mut kt = [0.0f32; 32];
            if let Some(k) = k {
                kt[..r].copy_from_slice(k);
            }
            // SAFETY: the padded copies hold 32 elements each.
            unsafe {
                (
                    load16(xt.as_ptr()),
                    load16(xt.as_ptr().add(16)),
                    _mm512_loadu_ps(kt.as_ptr()),
                    _mm512_loadu_ps(kt.as_ptr().add(16)),
                )
            }
        };
        let (e0, e1, l0, l1) = terms(v0, v1, k0, k1, true);
        fold_f64(_mm512_add_ps(e0, e1), &mut total);
        if LIN {
            // The padding's linear terms (−inf, or NaN: 0·−inf) dropped by position, so that
            // a −inf of the row's own shows in an unchecked sum.
            let (kl0, kl1) = (_mm512_maskz_mov_ps(m0, l0), _mm512_maskz_mov_ps(m1, l1));
            fold_f64(_mm512_add_ps(kl0, kl1), &mut lin_total);
        }
        if !out_ptr.is_null() {
            // SAFETY: `out` is as long as x, so the group's kept lanes land inside it from
            // `base` (masked stores write only those lanes and never fault on the others).
            unsafe {
                let o = out_ptr.add(base);
                _mm512_mask_storeu_ps(o, m0, e0);
                _mm512_mask_storeu_ps(o.wrapping_add(16), m1, e1);
            }
        }
    }
    // σ is a power of two: the scaling is exact (see `Linear`).
    let sigma = lin.map_or(0.0, |l| l.sigma as f64);
    (
        _mm512_reduce_add_pd(total) as f32,
        (_mm512_reduce_add_pd(lin_total) * sigma) as f32,
    )
}

mod elements;

pub(crate) use elements::{affine_into, widen};
use elements::{load16, load32_any_order};

#[cfg(test)]
mod tests;
