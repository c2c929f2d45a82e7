//! The row kernels' hot loops with AVX-512F intrinsics, for the AVX-512 build: the loops of
//! avx2.rs sixteen lanes at a time, with the exponential in base 2 (as the GPU kernels
//! evaluate it) and `2^n` applied with `vscalefps`; f16 / bf16 rows widened as they are
//! loaded, outputs narrowed as they are stored.
//!
//! Measured on the development machine (AMD EPYC, Zen 4), one core summing `e^x` over an
//! L1-resident row: 1.7 G exponentials/s with the eight-lane AVX2 loop, 4.6 G/s with the same
//! formula in sixteen lanes, 6.3 G/s with the base-2 form here ([`exp2_16`]).
//! The row ops were bound by that rate (logsumexp took longer than a memcpy of the same row),
//! so this is the difference between an exp-bound and a memory-bound CPU path.

#![cfg(target_arch = "x86_64")]

use super::exp::{exp_with, EXP2_LO, EXP2_POLY};
use super::lanes::SUM_BLOCK;
use crate::element::{DType, Element};
use crate::scale::RowScale;
use std::arch::x86_64::*;

/// Sixteen `2^z` at once: `n = round(z)`, `f = z − n` (exact), `2^f` by [`EXP2_POLY`], times
/// `2^n` by `vscalefps`; worst relative error 0.64 ε over `[−126, 0]` (measured: the test
/// below). Lanes below [`EXP2_LO`] (−inf included) give exactly 0. Callers' arguments are
/// `≤ 0` (up to rounding), so there is no overflow clamp (`vscalefps` would give +inf past
/// the range anyway); NaN rows are flagged before they get here.
///
/// Against `e^x` through `z = x·log₂e` this costs one more rounding than exp.rs's Cody–Waite
/// reduction: a relative error of about `|x|·ε/2` in the result, the same as the GPU
/// kernels' `exp2` (see `crate::scale`), and well inside the contract's `32·ε` for the terms
/// that matter to a sum or a softmax (a term `e^x` with `|x| ≥ 32` is below `e^{-32}` of the
/// row's largest). It takes 11 vector instructions where the Cephes form takes 15: 6.3 G
/// exps/s per core against 4.9 (measured as in the module docs).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn exp2_16(z: __m512) -> __m512 {
    let lo = _mm512_set1_ps(EXP2_LO);
    let zc = _mm512_max_ps(z, lo);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(zc);
    let f = _mm512_sub_ps(zc, n);
    let c = |i: usize| _mm512_set1_ps(EXP2_POLY[i]);
    let mut p = _mm512_fmadd_ps(c(6), f, c(5));
    for i in (0..5).rev() {
        p = _mm512_fmadd_ps(p, f, c(i));
    }
    _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(z, lo), p, n)
}

/// Sixteen elements from `p`, widened exactly to f32: f16 with `vcvtph2ps`, bf16 by a shift
/// into the high half of each word.
///
/// # Safety
/// AVX-512F; `p` is valid for sixteen reads.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn load16<E: Element>(p: *const E) -> __m512 {
    // SAFETY (all arms): sixteen elements readable at `p` (caller), unaligned loads.
    unsafe {
        match E::DTYPE {
            DType::F32 => _mm512_loadu_ps(p as *const f32),
            DType::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
            DType::BF16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(p as *const __m256i),
            ))),
        }
    }
}

/// Thirty-two elements from `p`, widened exactly, in an order of its choosing: for a pass
/// that only reduces them (a max, a sum). bf16 comes as one 64-byte load split into the
/// even elements (shifted up) and the odd ones (high halves kept): two instructions for
/// thirty-two elements where [`load16`] takes four.
///
/// # Safety
/// AVX-512F; `p` is valid for thirty-two reads.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn load32_any_order<E: Element>(p: *const E) -> (__m512, __m512) {
    // SAFETY (both arms): thirty-two elements readable at `p` (caller).
    unsafe {
        if E::DTYPE == DType::BF16 {
            let v = _mm512_loadu_si512(p as *const __m512i);
            (
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v)),
                _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536))),
            )
        } else {
            (load16(p), load16(p.add(16)))
        }
    }
}

/// Sixteen f32 values narrowed to a half type `O` (the sixteen 16-bit patterns), rounded to
/// nearest-even: f16 with `vcvtps2ph` (overflow to ±inf, NaN kept NaN), bf16 as
/// [`crate::element::bf16_bits`] does it (add `0x7fff` plus the lowest kept bit; NaN keeps its
/// high bits with the quiet bit set).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn narrow16<O: Element>(v: __m512) -> __m256i {
    match O::DTYPE {
        DType::F16 => _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
        _ => {
            let b = _mm512_castps_si512(v);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
            let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                b,
                _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)),
            ));
            let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
            let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
            let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
            _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet))
        }
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
/// the max of `|bits|`, reading any element type (widened in registers).
///
/// # Safety
/// The processor must have AVX-512F.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
    let abs = _mm512_set1_epi32(0x7fff_ffff);
    let (mut m0, mut m1) = (_mm512_set1_ps(f32::MIN), _mm512_set1_ps(f32::MIN));
    let (mut b0, mut b1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let n = x.len() / 32 * 32;
    for i in (0..n).step_by(32) {
        // SAFETY: i + 32 ≤ n ≤ x.len().
        let (v0, v1) = unsafe { load32_any_order(x.as_ptr().add(i)) };
        m0 = _mm512_max_ps(v0, m0);
        m1 = _mm512_max_ps(v1, m1);
        b0 = _mm512_max_epu32(b0, _mm512_and_si512(_mm512_castps_si512(v0), abs));
        b1 = _mm512_max_epu32(b1, _mm512_and_si512(_mm512_castps_si512(v1), abs));
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
/// `store` when given; blocked (`SUM_BLOCK` elements in
/// two f32 vectors, the block sums in f64), with the next row prefetched as in avx2.rs.
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
    debug_assert!(!sc.tiny);
    // `next` is counted in f32 words; one prefetch per 64 bytes of this row's progress.
    let words_per_step = 32 * E::DTYPE.size() / 4;
    let pf = next.len();
    // The exponent in base 2: `fma(x, h, −m·h)·c·log₂e`, with `c·log₂e` formed once (in
    // f64, rounded once). Callers take the portable loop where it overflows f32.
    let c2 = (sc.c as f64 * std::f64::consts::LOG2_E) as f32;
    debug_assert!(c2.is_finite());
    let (vh, vmh, vc) = (
        _mm512_set1_ps(sc.h),
        _mm512_set1_ps(sc.mh),
        _mm512_set1_ps(c2),
    );
    let mut total = _mm512_setzero_pd();
    let n = x.len() / 32 * 32;
    let mut out = store;
    if let Some(o) = &out {
        assert_eq!(o.len(), x.len());
    }
    // From the mutable borrow (see avx2.rs); not used after the loop.
    let out_ptr = out
        .as_deref_mut()
        .map_or(std::ptr::null_mut(), |o| o.as_mut_ptr());
    for b0 in (0..n).step_by(SUM_BLOCK) {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for i in (b0..n.min(b0 + SUM_BLOCK)).step_by(32) {
            // SAFETY: i + 32 ≤ n ≤ the length of x and of out (when given, asserted equal);
            // prefetch never faults.
            unsafe {
                let w = i / 32 * words_per_step;
                if w < pf {
                    _mm_prefetch::<_MM_HINT_T1>(next.as_ptr().add(w) as *const i8);
                    if words_per_step > 16 && w + 16 < pf {
                        _mm_prefetch::<_MM_HINT_T1>(next.as_ptr().add(w + 16) as *const i8);
                    }
                }
                // The terms' order matters only where they are stored.
                let (v0, v1) = if out_ptr.is_null() {
                    load32_any_order(x.as_ptr().add(i))
                } else {
                    (load16(x.as_ptr().add(i)), load16(x.as_ptr().add(i + 16)))
                };
                let z0 = _mm512_mul_ps(_mm512_fmadd_ps(v0, vh, vmh), vc);
                let z1 = _mm512_mul_ps(_mm512_fmadd_ps(v1, vh, vmh), vc);
                let (e0, e1) = (exp2_16(z0), exp2_16(z1));
                if !out_ptr.is_null() {
                    _mm512_storeu_ps(out_ptr.add(i), e0);
                    _mm512_storeu_ps(out_ptr.add(i + 16), e1);
                }
                a0 = _mm512_add_ps(a0, e0);
                a1 = _mm512_add_ps(a1, e1);
            }
        }
        fold_f64(_mm512_add_ps(a0, a1), &mut total);
    }
    let mut tail = 0.0f32;
    for i in n..x.len() {
        let e = exp_with::<super::exp::Fused>(x[i].to_f32().mul_add(sc.h, sc.mh) * sc.c);
        if let Some(o) = out.as_deref_mut() {
            o[i] = e;
        }
        tail += e;
    }
    (_mm512_reduce_add_pd(total) + tail as f64) as f32
}

/// The cross-entropy linear sum over a row of any element type with finite max `m`:
/// `Σ_finite k̂_j·fma(x_j, σ, −σm)` and whether any `x_j` is −inf, as avx2.rs's
/// `linear_sums` (`k̂` from `q`, else `w`, else 1; `k_scalar(j)` for the tail). Blocked like
/// [`exp_sum`].
///
/// # Safety
/// The processor must have AVX-512F; `w` and `q`, when given, are as long as `x`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn linear_sums<E: Element>(
    x: &[E],
    sigma: f32,
    minus_m_sigma: f32,
    w: Option<&[f32]>,
    q: Option<&[f32]>,
    k_scalar: impl Fn(usize) -> f32,
) -> (f32, bool) {
    let (vs, vms) = (_mm512_set1_ps(sigma), _mm512_set1_ps(minus_m_sigma));
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let kv = q.or(w);
    let mut neg: __mmask16 = 0;
    let mut total = _mm512_setzero_pd();
    let n = x.len() / 16 * 16;
    for b0 in (0..n).step_by(SUM_BLOCK) {
        let mut a = _mm512_setzero_ps();
        for j in (b0..n.min(b0 + SUM_BLOCK)).step_by(16) {
            // SAFETY: j + 16 ≤ n ≤ every slice's length.
            unsafe {
                let d = _mm512_fmadd_ps(load16(x.as_ptr().add(j)), vs, vms);
                let fin = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, ninf);
                let kd = match kv {
                    Some(k) => _mm512_mul_ps(_mm512_loadu_ps(k.as_ptr().add(j)), d),
                    None => d,
                };
                a = _mm512_mask_add_ps(a, fin, a, kd);
                neg |= !fin;
            }
        }
        fold_f64(a, &mut total);
    }
    let (mut at, mut nt) = (0.0f32, false);
    for (j, v) in x.iter().enumerate().skip(n) {
        let d = v.to_f32().mul_add(sigma, minus_m_sigma);
        if d > f32::NEG_INFINITY {
            at += k_scalar(j) * d;
        } else {
            nt = true;
        }
    }
    (
        (_mm512_reduce_add_pd(total) + at as f64) as f32,
        nt || neg != 0,
    )
}

/// `dst ← fma(x, a, b)·c + d`, read in `E`, narrowed to `O` (round-to-nearest-even): the
/// softmax's last pass (`x·(1/s)`), the log-softmax's (`fma(x, h, −m·h)·κ − ln s`) and a plain
/// conversion (`x`, with `b = d = −0`, which keeps every value and the sign of zeros), each
/// with its conversion in one. With `stream`, the stores bypass the cache (non-temporal,
/// whole 64-byte lines from the first aligned one): an output written once and not read back
/// soon then costs no read-for-ownership of its lines, as in a large memcpy.
///
/// # Safety
/// The processor must have AVX-512F; `dst` is as long as `x`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn affine_into<E: Element, O: Element>(
    x: &[E],
    [a, b, c, d]: [f32; 4],
    dst: &mut [O],
    stream: bool,
) {
    assert_eq!(x.len(), dst.len());
    let (va, vb, vc, vd) = (
        _mm512_set1_ps(a),
        _mm512_set1_ps(b),
        _mm512_set1_ps(c),
        _mm512_set1_ps(d),
    );
    // SAFETY (callers of f): sixteen elements readable at `p`.
    let f = |p: *const E| unsafe { _mm512_fmadd_ps(_mm512_fmadd_ps(load16(p), va, vb), vc, vd) };
    let scalar = |v: &E| O::from_f32(v.to_f32().mul_add(a, b).mul_add(c, d));
    // Elements per 64-byte line.
    let line = 64 / O::DTYPE.size();
    let head = if stream {
        dst.as_ptr().align_offset(64).min(dst.len())
    } else {
        0
    };
    for (o, v) in dst[..head].iter_mut().zip(&x[..head]) {
        *o = scalar(v);
    }
    let n = head + (dst.len() - head) / line * line;
    for i in (head..n).step_by(line) {
        // SAFETY: i + line ≤ n ≤ both lengths; with `stream`, dst + i is 64-byte aligned.
        unsafe {
            let p = dst.as_mut_ptr().add(i);
            let v0 = f(x.as_ptr().add(i));
            if O::DTYPE == DType::F32 {
                if stream {
                    _mm512_stream_ps(p as *mut f32, v0);
                } else {
                    _mm512_storeu_ps(p as *mut f32, v0);
                }
                continue;
            }
            let v1 = f(x.as_ptr().add(i + 16));
            let h = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(narrow16::<O>(v0)),
                narrow16::<O>(v1),
            );
            if stream {
                _mm512_stream_si512(p as *mut __m512i, h);
            } else {
                _mm512_storeu_si512(p as *mut __m512i, h);
            }
        }
    }
    for (o, v) in dst[n..].iter_mut().zip(&x[n..]) {
        *o = scalar(v);
    }
    if stream {
        // Non-temporal stores are weakly ordered: make them visible before the row is handed
        // on (to another thread, or back to the caller).
        _mm_sfence();
    }
}

/// `dst ← src` widened exactly to f32.
///
/// # Safety
/// The processor must have AVX-512F; `dst` is as long as `src`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn widen<E: Element>(src: &[E], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n ≤ both lengths.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add(i), load16(src.as_ptr().add(i))) };
    }
    for (d, s) in dst[n..].iter_mut().zip(&src[n..]) {
        *d = s.to_f32();
    }
}

#[cfg(test)]
mod tests;
