//! The two hot loops of the row kernels written with AVX2 + FMA intrinsics: auto-vectorization
//! of them proved fragile (a change of lane count turned the exp loop scalar; measured), and
//! these are most of the CPU time. Same formulas as rows.rs and cross_entropy::fast, with the
//! exponential in base 2 as the AVX-512 build evaluates it (exp.rs: `EXP2_POLY`).

#![cfg(target_arch = "x86_64")]

use super::exp::{EXP2_LO, EXP2_POLY};
use super::lanes::SUM_BLOCK;
use super::lin_terms::Linear;
use crate::scale::RowScale;
use std::arch::x86_64::*;
use sums::{fold_f64, hsum_f64};

/// The largest exponent [`exp2_8`] takes with `clamp`: `2^64` is past any guessed block's
/// kept sum (`rows::GUESSED_SUM_MAX`), and `p·2^64` is normal.
const UNCHECKED_Z_MAX: f32 = 64.0;

/// Eight `2^z` at once: the base-2 form of avx512/'s `exp2_16` (same polynomial, same
/// flush below `EXP2_LO`, same error bound), with `p·2^n` formed by adding `n` to the exponent
/// field of `p = 2^f`: exact wherever the result is normal, which the lanes kept are
/// (`z ≥ −126` gives `n ≥ −126`, and `n = −126` only with `f ≥ 0`, so `p ≥ 1`); the lanes
/// below are masked to 0 at the end with `flush` (callers that have shown there are none pass
/// `false`, and save that compare and mask), a NaN lane kept NaN (the compare is
/// unordered-true). 13 vector instructions where the Cephes form (exp.rs) takes 20. With
/// `clamp` (a block whose values were not read before: `exp_sums_unchecked`), `z` is first
/// lowered to at most [`UNCHECKED_Z_MAX`] (NaN kept), so that `n` fits the exponent field
/// and a lane past it gives `2^64`, which the caller's bound on the sum rejects.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp2_8(z: __m256, flush: bool, clamp: bool) -> __m256 {
    let lo = _mm256_set1_ps(EXP2_LO);
    // No clamp of z from below: the lanes whose exponent bits it would keep in range are the
    // ones the final mask zeroes (below −126, and −inf, whose `f` is NaN). `min_ps` returns
    // its second operand where either is NaN.
    let z = if clamp {
        _mm256_min_ps(_mm256_set1_ps(UNCHECKED_Z_MAX), z)
    } else {
        z
    };
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(z);
    let f = _mm256_sub_ps(z, n);
    let c = |i: usize| _mm256_set1_ps(EXP2_POLY[i]);
    let mut p = _mm256_fmadd_ps(c(6), f, c(5));
    for i in (0..5).rev() {
        p = _mm256_fmadd_ps(p, f, c(i));
    }
    let shift = _mm256_slli_epi32::<23>(_mm256_cvtps_epi32(n));
    let y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), shift));
    if flush {
        _mm256_and_ps(y, _mm256_cmp_ps::<_CMP_NLT_UQ>(z, lo))
    } else {
        // The caller has shown no lane is below −126 (`exp::bounded_row`).
        y
    }
}

/// Prefetches every 64-byte line of `x` into L1, each a prefetch that does not wait (a
/// guessed block's lines are in L2 or on their way, prefetched two blocks back): before a
/// guessed block's loop (`exp_sums_unchecked`, here and in avx512/), as the checked form's
/// max pass did with loads. Measured (two threads, interleaved rounds, time over the row-sum
/// yardstick's), logsumexp without and with it: AVX-512 1.04 / 0.98 at `[512, 128256]`, 1.07
/// / 1.00 at `[4096, 32000]`, 1.13 / 1.06 at `[65536, 1000]`; AVX2 1.16 / 1.12 and 1.24 /
/// 1.16 at the first and last (ce-fwd 1.17 / 1.11, 1.35 / 1.26).
#[inline(always)]
pub(crate) fn prefetch_l1<E>(x: &[E]) {
    let p = x.as_ptr() as *const i8;
    for off in (0..std::mem::size_of_val(x)).step_by(64) {
        // SAFETY: inside `x`; a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
    }
}

/// Max of the values (NaN and −inf never win: `max_ps` returns its second operand on NaN) and
/// the max of `|bits|`. A row of at least 16 ends with its last 16, overlapping the groups
/// before (both maxima are idempotent): no scalar tail.
///
/// # Safety
/// The processor must have AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn max_and_abs_bits(x: &[f32]) -> (f32, u32) {
    let abs = _mm256_set1_epi32(0x7fff_ffff);
    let (mut m0, mut m1) = (_mm256_set1_ps(f32::MIN), _mm256_set1_ps(f32::MIN));
    let (mut b0, mut b1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut step = |blk: &[f32]| {
        // SAFETY: blk has 16 floats (both callers); unaligned loads.
        let (v0, v1) = unsafe {
            (
                _mm256_loadu_ps(blk.as_ptr()),
                _mm256_loadu_ps(blk.as_ptr().add(8)),
            )
        };
        m0 = _mm256_max_ps(v0, m0);
        m1 = _mm256_max_ps(v1, m1);
        b0 = _mm256_max_epu32(b0, _mm256_and_si256(_mm256_castps_si256(v0), abs));
        b1 = _mm256_max_epu32(b1, _mm256_and_si256(_mm256_castps_si256(v1), abs));
    };
    let c = x.chunks_exact(16);
    let mut rest = c.remainder();
    for blk in c {
        step(blk);
    }
    if !rest.is_empty() && x.len() >= 16 {
        step(&x[x.len() - 16..]);
        rest = &[];
    }
    let mut mx = [0.0f32; 8];
    let mut mb = [0u32; 8];
    // SAFETY: 8-lane stores into 8-element arrays.
    unsafe {
        _mm256_storeu_ps(mx.as_mut_ptr(), _mm256_max_ps(m0, m1));
        _mm256_storeu_si256(mb.as_mut_ptr() as *mut __m256i, _mm256_max_epu32(b0, b1));
    }
    let (mut m, mut bits) = (f32::MIN, 0u32);
    for l in 0..8 {
        m = if mx[l] > m { mx[l] } else { m };
        bits = bits.max(mb[l]);
    }
    for &v in rest {
        m = if v > m { v } else { m };
        bits = bits.max(v.to_bits() & 0x7fff_ffff);
    }
    (m, bits)
}

/// `Σ e^{fma(x, h, −m·h)·c}` (see `crate::scale`; not for tiny temperatures), storing each
/// term into `store` when given; blocked (`SUM_BLOCK` floats in two f32 vectors, the block
/// sums in f64). One cache line of `next` (the following row) is prefetched into L2 per 16
/// floats: this loop is compute-bound, so the next row's DRAM read overlaps it instead of
/// stalling the next max pass (measured: about 15% off a `[4096, 32000]` softmax).
///
/// # Safety
/// The processor must have AVX2 and FMA; `store`, when given, is as long as `x`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_sum(
    x: &[f32],
    sc: &RowScale,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> f32 {
    // SAFETY: as the caller's.
    unsafe {
        if sc.no_flush {
            exp_sums::<false, false, false>(x, sc, store, next, None).0
        } else {
            exp_sums::<false, true, false>(x, sc, store, next, None).0
        }
    }
}

/// [`exp_sum`] and the linear sum of `lin` in one read of `x` (cross-entropy with smoothing
/// or probability targets): `(Σ e, σ·Σ k̂·(x − m))`, as `lin_terms` describes.
///
/// # Safety
/// AVX2 + FMA; `lin.k` and `store`, when given, are as long as `x`; `x` and `sc` are in
/// [`Linear::fits`]'s domain (checked in debug builds).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_linear_sums(
    x: &[f32],
    sc: &RowScale,
    lin: &Linear,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> (f32, f32) {
    lin.check(x, sc.h);
    // Always flushed: without it this loop ran faster in cache but slower from memory (at
    // [65536, 1000], two threads, 1.31 to 1.44 times the row-sum yardstick's time, with its
    // prefetches stalling more often), where the plain exp-sum gained (1.24 to 1.21).
    // SAFETY: as the caller's.
    unsafe { exp_sums::<true, true, false>(x, sc, store, next, Some(lin)) }
}

/// [`exp_sum`] and, with `lin`, the linear sum over a block whose values were not read
/// before, as avx512/'s `exp_sums_unchecked` (the same use, the same signs of trouble: a NaN
/// value gives a NaN exp sum, a +inf one or one whose exponent passes 64 a term of `2^64`,
/// a −inf a non-finite linear sum), its exponent clamped first ([`exp2_8`]).
///
/// # Safety
/// AVX2 + FMA; `lin.k`, when given, is as long as `x`; `sc` is for the base-2 loops, with
/// `h = 1` when `lin` is given.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_sums_unchecked(
    x: &[f32],
    sc: &RowScale,
    lin: Option<&Linear>,
    next: &[f32],
) -> (f32, f32) {
    if let Some(l) = lin {
        l.check_len(x.len());
    }
    prefetch_l1(x);
    // SAFETY: as the caller's, `k`'s length asserted.
    unsafe {
        match lin {
            Some(l) => exp_sums::<true, true, true>(x, sc, None, next, Some(l)),
            None => exp_sums::<false, true, true>(x, sc, None, next, None),
        }
    }
}

/// [`exp_sum`], plus the linear sum of `lin` where `LIN`. The last `r < 16` elements go
/// through the same vector code as lanes `16 − r..` of the row's last 16, loaded in place,
/// the other lanes −inf (exp terms exactly 0) with `k̂` 0 (linear terms −inf or NaN, dropped
/// by position); a row shorter than 16 takes scalar exps (scalar, the tail of a 1000-column
/// row was 8 exps a row), except with `CLAMP` (the portable exp's NaN is unspecified): then
/// the sums are NaN, and the caller sums the block checked.
///
/// # Safety
/// As [`exp_sum`] and [`exp_linear_sums`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_sums<const LIN: bool, const FLUSH: bool, const CLAMP: bool>(
    x: &[f32],
    sc: &RowScale,
    store: Option<&mut [f32]>,
    next: &[f32],
    lin: Option<&Linear>,
) -> (f32, f32) {
    debug_assert!(super::exp::base2_fits(sc));
    if CLAMP && x.len() < 16 {
        return (f32::NAN, f32::NAN);
    }
    let pf = next.len().min(x.len()) / 16 * 16;
    // The exponent in base 2, as in avx512/.
    let c2 = super::exp::base2_c(sc);
    let (vh, vmh, vc) = (
        _mm256_set1_ps(sc.h),
        _mm256_set1_ps(sc.mh),
        _mm256_set1_ps(c2),
    );
    let (ninf, zero) = (_mm256_set1_ps(f32::NEG_INFINITY), _mm256_setzero_ps());
    let k = lin.and_then(|l| l.k);
    let mut total = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut lin_total = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let n = x.len() / 16 * 16;
    // Where each term goes, when wanted: one loop for both cases (the test is loop-invariant
    // and always predicted; the exps dominate). From the mutable borrow (writing through a
    // pointer taken from a shared one is UB); `out` is used again for the tail.
    let mut out = store;
    if let Some(o) = &out {
        assert_eq!(o.len(), x.len());
    }
    let out_ptr = out
        .as_deref_mut()
        .map_or(std::ptr::null_mut(), |o| o.as_mut_ptr());
    // Sixteen elements' exp terms and their (unscaled) linear terms `k̂·t`, two vectors each.
    // The tail's padding is −inf, always flushed.
    let terms = |v0: __m256, v1: __m256, k0: __m256, k1: __m256, flush: bool| {
        let t0 = _mm256_fmadd_ps(v0, vh, vmh);
        let t1 = _mm256_fmadd_ps(v1, vh, vmh);
        let (e0, e1) = (
            exp2_8(_mm256_mul_ps(t0, vc), flush, CLAMP),
            exp2_8(_mm256_mul_ps(t1, vc), flush, CLAMP),
        );
        let (l0, l1) = match (LIN, k) {
            (false, _) => (zero, zero),
            (true, None) => (t0, t1),
            (true, Some(_)) => (_mm256_mul_ps(k0, t0), _mm256_mul_ps(k1, t1)),
        };
        (e0, e1, l0, l1)
    };
    for b0 in (0..n).step_by(SUM_BLOCK) {
        let (mut a0, mut a1, mut s) = (zero, zero, zero);
        for i in (b0..n.min(b0 + SUM_BLOCK)).step_by(16) {
            // SAFETY: i + 16 ≤ n ≤ the length of x, of out and of k (when given, asserted
            // equal); prefetch never faults.
            unsafe {
                if i < pf {
                    _mm_prefetch::<_MM_HINT_T1>(next.as_ptr().add(i) as *const i8);
                }
                let p = x.as_ptr().add(i);
                let (k0, k1) = match k {
                    Some(k) if LIN => (
                        _mm256_loadu_ps(k.as_ptr().add(i)),
                        _mm256_loadu_ps(k.as_ptr().add(i + 8)),
                    ),
                    _ => (zero, zero),
                };
                let (v0, v1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                let (e0, e1, l0, l1) = terms(v0, v1, k0, k1, FLUSH);
                if !out_ptr.is_null() {
                    _mm256_storeu_ps(out_ptr.add(i), e0);
                    _mm256_storeu_ps(out_ptr.add(i + 8), e1);
                }
                a0 = _mm256_add_ps(a0, e0);
                a1 = _mm256_add_ps(a1, e1);
                if LIN {
                    s = _mm256_add_ps(s, _mm256_add_ps(l0, l1));
                }
            }
        }
        fold_f64(_mm256_add_ps(a0, a1), &mut total);
        if LIN {
            fold_f64(s, &mut lin_total);
        }
    }
    let r = x.len() - n;
    let mut tail = (0.0f32, 0.0f32);
    if r > 0 && x.len() >= 16 {
        let base = x.len() - 16;
        // Lanes `16 − r..` are the row's last r elements.
        let iota = |a: i32| _mm256_setr_epi32(a, a + 1, a + 2, a + 3, a + 4, a + 5, a + 6, a + 7);
        let first = _mm256_set1_epi32(15 - r as i32);
        let keep0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota(0), first));
        let keep1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iota(8), first));
        // SAFETY: 16 elements of x (and of k, as long) from `base`.
        let (v0, v1, k0, k1) = unsafe {
            let p = x.as_ptr().add(base);
            let (k0, k1) = match k {
                Some(k) if LIN => (
                    _mm256_and_ps(keep0, _mm256_loadu_ps(k.as_ptr().add(base))),
                    _mm256_and_ps(keep1, _mm256_loadu_ps(k.as_ptr().add(base + 8))),
                ),
                _ => (zero, zero),
            };
            (
                _mm256_blendv_ps(ninf, _mm256_loadu_ps(p), keep0),
                _mm256_blendv_ps(ninf, _mm256_loadu_ps(p.add(8)), keep1),
                k0,
                k1,
            )
        };
        let (e0, e1, l0, l1) = terms(v0, v1, k0, k1, true);
        fold_f64(_mm256_add_ps(e0, e1), &mut total);
        if LIN {
            // The padding's linear terms (−inf, or NaN: 0·−inf) dropped by position, so that
            // a −inf of the row's own shows in an unchecked sum.
            let (kl0, kl1) = (_mm256_and_ps(l0, keep0), _mm256_and_ps(l1, keep1));
            fold_f64(_mm256_add_ps(kl0, kl1), &mut lin_total);
        }
        if let Some(o) = out.as_deref_mut() {
            let mut ob = [0.0f32; 16];
            // SAFETY: two 8-lane stores into a 16-element array.
            unsafe {
                _mm256_storeu_ps(ob.as_mut_ptr(), e0);
                _mm256_storeu_ps(ob.as_mut_ptr().add(8), e1);
            }
            o[n..].copy_from_slice(&ob[16 - r..]);
        }
    } else {
        for i in n..x.len() {
            let t = x[i].mul_add(sc.h, sc.mh);
            let e = super::exp::exp_with::<super::exp::Fused>(t * sc.c);
            if let Some(o) = out.as_deref_mut() {
                o[i] = e;
            }
            tail.0 += e;
            if LIN {
                tail.1 += k.map_or(1.0, |k| k[i]) * t;
            }
        }
    }
    // σ is a power of two: the scaling is exact (see `lin_terms`).
    let sigma = lin.map_or(0.0, |l| l.sigma as f64);
    (
        (hsum_f64(total) + tail.0 as f64) as f32,
        ((hsum_f64(lin_total) + tail.1 as f64) * sigma) as f32,
    )
}

/// `dst ← fma(fma(x, a, b), c, d)` on f32 rows (`[a, b, c, d] = k`), sixteen at a time, each
/// value as `Arith::affine_into` forms it; `patch = Some((j, v))` writes `v` at `j` in the
/// same store. With `stream`, the whole 64-byte lines of `dst` from its first aligned one
/// are stored past the cache (non-temporal: the caller fences, `Arith::fence_streams`), the
/// head and tail with plain stores.
///
/// # Safety
/// AVX2 + FMA; `dst` is as long as `x` (asserted).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn affine_f32(
    x: &[f32],
    [a, b, c, d]: [f32; 4],
    dst: &mut [f32],
    stream: bool,
    patch: Option<(usize, f32)>,
) {
    assert_eq!(x.len(), dst.len());
    let (va, vb, vc, vd) = (
        _mm256_set1_ps(a),
        _mm256_set1_ps(b),
        _mm256_set1_ps(c),
        _mm256_set1_ps(d),
    );
    let (pj, pv) = patch.unwrap_or((usize::MAX, 0.0));
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // The eight results from column `i`, the patched one replaced.
    let f = |i: usize| {
        // SAFETY: i + 8 ≤ x.len() (the loop below).
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        let v = _mm256_fmadd_ps(_mm256_fmadd_ps(v, va, vb), vc, vd);
        match pj.wrapping_sub(i) {
            k @ 0..8 => {
                let at = _mm256_cmpeq_epi32(lanes, _mm256_set1_epi32(k as i32));
                _mm256_blendv_ps(v, _mm256_set1_ps(pv), _mm256_castsi256_ps(at))
            }
            _ => v,
        }
    };
    let head = if stream {
        dst.as_ptr().align_offset(64).min(dst.len())
    } else {
        0
    };
    let n = head + (dst.len() - head) / 16 * 16;
    for i in (0..head).chain(n..dst.len()) {
        dst[i] = x[i].mul_add(a, b).mul_add(c, d);
    }
    for i in (head..n).step_by(16) {
        let (v0, v1) = (f(i), f(i + 8));
        // SAFETY: i + 16 ≤ n ≤ dst.len(); with `stream`, dst + i is 64-byte aligned.
        unsafe {
            let p = dst.as_mut_ptr().add(i);
            if stream {
                _mm256_stream_ps(p, v0);
                _mm256_stream_ps(p.add(8), v1);
            } else {
                _mm256_storeu_ps(p, v0);
                _mm256_storeu_ps(p.add(8), v1);
            }
        }
    }
    // A patch in the head or the tail (plain stores) goes in after them.
    if let Some(o) = dst.get_mut(pj).filter(|_| pj < head || pj >= n) {
        *o = pv;
    }
}

mod ce_loops;
mod sums;
#[cfg(test)]
mod tests;

pub(crate) use ce_loops::{grad_update, linear_sums};
