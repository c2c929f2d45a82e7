//! The row kernels' two hot loops with AVX-512F intrinsics, for the AVX-512 build: the same
//! formulas as avx2.rs and exp.rs, sixteen lanes at a time, and `2^n` applied with
//! `vscalefps` instead of built from the exponent bits.
//!
//! Measured on the development machine (AMD EPYC, Zen 4), one core summing `e^x` over an
//! L1-resident row: 1.7 G exponentials/s with the eight-lane AVX2 loop, 4.6 G/s with this one.
//! The row ops were bound by that rate (logsumexp took longer than a memcpy of the same row),
//! so this is the difference between an exp-bound and a memory-bound CPU path.

#![cfg(target_arch = "x86_64")]

use super::exp::{exp_with, C1, C2, LO, LOG2E, ROUND_MAGIC};
use super::lanes::SUM_BLOCK;
use crate::element::{DType, Element};
use crate::scale::RowScale;
use std::arch::x86_64::*;

/// Sixteen `e^x` at once: Cephes expf (exp.rs) with `2^n` from `vscalefps`. Lanes below `LO`
/// (−inf included) give exactly 0, as in every build; callers' arguments are `≤ 0` (up to
/// rounding), so the overflow clamp of the scalar `exp` is not needed (`vscalefps` would give
/// +inf there anyway). NaN rows are flagged before they get here.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn exp16(x: __m512) -> __m512 {
    let lo = _mm512_set1_ps(LO);
    let xc = _mm512_max_ps(x, lo);
    let t = _mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), _mm512_set1_ps(ROUND_MAGIC));
    let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND_MAGIC));
    let r = _mm512_fnmadd_ps(
        n,
        _mm512_set1_ps(C2),
        _mm512_fnmadd_ps(n, _mm512_set1_ps(C1), xc),
    );
    let r2 = _mm512_mul_ps(r, r);
    let mut p = _mm512_fmadd_ps(
        _mm512_set1_ps(1.987_569_1e-4),
        r,
        _mm512_set1_ps(1.398_199_9e-3),
    );
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.333_452e-3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.166_579_6e-2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.666_666_5e-1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
    let e_r = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, lo);
    _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(e_r, n))
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

/// Sixteen f32 values narrowed to `O` and stored at `p`, rounded to nearest-even: f16 with
/// `vcvtps2ph` (overflow to ±inf, NaN kept NaN), bf16 as [`crate::element::bf16_bits`] does it
/// (add `0x7fff` plus the lowest kept bit; NaN keeps its high bits with the quiet bit set).
///
/// # Safety
/// AVX-512F; `p` is valid for sixteen writes.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn store16<O: Element>(p: *mut O, v: __m512) {
    // SAFETY (all arms): sixteen elements writable at `p` (caller), unaligned stores.
    unsafe {
        match O::DTYPE {
            DType::F32 => _mm512_storeu_ps(p as *mut f32, v),
            DType::F16 => _mm256_storeu_si256(
                p as *mut __m256i,
                _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
            ),
            DType::BF16 => {
                let b = _mm512_castps_si512(v);
                let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
                let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                    b,
                    _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)),
                ));
                let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
                let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
                let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
                let h = _mm512_mask_mov_epi32(rounded, nan, quiet);
                _mm256_storeu_si256(p as *mut __m256i, _mm512_cvtepi32_epi16(h));
            }
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
        let (v0, v1) = unsafe { (load16(x.as_ptr().add(i)), load16(x.as_ptr().add(i + 16))) };
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
/// temperatures), storing each term into `store` when given; blocked (`SUM_BLOCK` elements in
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
    let (vh, vmh, vc) = (
        _mm512_set1_ps(sc.h),
        _mm512_set1_ps(sc.mh),
        _mm512_set1_ps(sc.c),
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
                let z0 = _mm512_mul_ps(_mm512_fmadd_ps(load16(x.as_ptr().add(i)), vh, vmh), vc);
                let z1 =
                    _mm512_mul_ps(_mm512_fmadd_ps(load16(x.as_ptr().add(i + 16)), vh, vmh), vc);
                let (e0, e1) = (exp16(z0), exp16(z1));
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

/// `dst ← src · s`, narrowed to `O` (round-to-nearest-even): the softmax's last pass and its
/// conversion in one.
///
/// # Safety
/// The processor must have AVX-512F; `dst` is as long as `src`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn scale_into<O: Element>(src: &[f32], s: f32, dst: &mut [O]) {
    assert_eq!(src.len(), dst.len());
    let vs = _mm512_set1_ps(s);
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n ≤ both lengths.
        unsafe {
            store16(
                dst.as_mut_ptr().add(i),
                _mm512_mul_ps(_mm512_loadu_ps(src.as_ptr().add(i)), vs),
            )
        };
    }
    for (d, &v) in dst[n..].iter_mut().zip(&src[n..]) {
        *d = O::from_f32(v * s);
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
mod tests {
    use super::*;
    use crate::element::bf16_bits;
    use half::{bf16, f16};

    fn have() -> bool {
        let ok = crate::cpu::CpuIsa::Avx512.is_supported();
        if !ok {
            eprintln!("no AVX-512F here: nothing to test");
        }
        ok
    }

    fn exp_of(xs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; xs.len()];
        for (o, x) in out.chunks_exact_mut(16).zip(xs.chunks_exact(16)) {
            // SAFETY: AVX-512F checked by the caller; 16-element chunks.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), exp16(_mm512_loadu_ps(x.as_ptr()))) };
        }
        out
    }

    /// Same bound as the scalar `exp` (exp.rs) over the arguments callers pass (`≤ 0`), and the
    /// same edges: exactly 0 below `LO` and at −inf, exactly 1 at 0.
    #[test]
    fn exp16_matches_f64_to_two_ulp() {
        if !have() {
            return;
        }
        let mut xs: Vec<f32> = (0..120_000)
            .map(|i| -87.3 + i as f32 * 0.000_727_5)
            .collect();
        xs.retain(|&x| x <= 0.0);
        xs.extend([
            0.0,
            -0.0,
            LO,
            f32::NEG_INFINITY,
            -87.34,
            -88.0,
            -1000.0,
            -f32::MAX,
        ]);
        xs.resize(xs.len().div_ceil(16) * 16, 0.0);
        let got = exp_of(&xs);
        let mut worst = 0.0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            if x < LO {
                assert_eq!(g, 0.0, "exp({x})");
                continue;
            }
            let want = (x as f64).exp();
            worst = worst.max(((g as f64 - want) / want).abs());
        }
        assert!(
            worst < 2.0 * f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
        assert_eq!(exp_of(&[0.0; 16])[0], 1.0);
    }

    /// f32 bit patterns: a stride through all of them, and every pattern within 2 of each
    /// rounding boundary of the half types near 1 and near their largest finite values.
    fn patterns() -> Vec<f32> {
        let mut bits: Vec<u32> = (0..=u32::MAX).step_by(65_537).collect();
        for base in [
            0x3f80_0000u32,
            0x477f_e000,
            0x7f7f_0000,
            0x3880_0000,
            0x0000_0000,
        ] {
            for k in 0..64u32 {
                for d in 0..5u32 {
                    bits.push((base + (k << 12) + d).wrapping_sub(2));
                    bits.push((base + (k << 15) + d).wrapping_sub(2));
                }
            }
        }
        bits.extend([
            0x7f80_0000,
            0xff80_0000,
            0x7f80_0001,
            0x7fc0_0000,
            0xffbf_ffff,
            0x0000_0001,
        ]);
        let mut v: Vec<f32> = bits
            .into_iter()
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
            .collect();
        v.resize(v.len().div_ceil(16) * 16, 0.0);
        v
    }

    /// `store16` narrows as the scalar conversions do, bit for bit: bf16 as `bf16_bits`, f16
    /// as the `half` crate's software rounding (round-to-nearest-even, ±inf past the range).
    #[test]
    fn store16_rounds_as_the_scalar_conversions() {
        if !have() {
            return;
        }
        let xs = patterns();
        let mut b = vec![bf16::ZERO; xs.len()];
        let mut h = vec![f16::ZERO; xs.len()];
        // SAFETY: AVX-512F checked; equal lengths.
        unsafe {
            scale_into(&xs, 1.0, &mut b);
            scale_into(&xs, 1.0, &mut h);
        }
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(
                b[i].to_bits(),
                bf16_bits(x),
                "bf16 of {:#010x}",
                x.to_bits()
            );
            let want = f16::from_f32(x);
            if x.is_nan() {
                assert!(h[i].is_nan(), "f16 of {:#010x}", x.to_bits());
            } else {
                assert_eq!(
                    h[i].to_bits(),
                    want.to_bits(),
                    "f16 of {:#010x}",
                    x.to_bits()
                );
            }
        }
    }

    /// `widen` (`load16`) is exact for all 65536 patterns of both half types.
    #[test]
    fn widen_is_exact_for_every_half_pattern() {
        if !have() {
            return;
        }
        let b: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        let h: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let (mut wb, mut wh) = (vec![0.0f32; b.len()], vec![0.0f32; h.len()]);
        // SAFETY: AVX-512F checked; equal lengths.
        unsafe {
            widen(&b, &mut wb);
            widen(&h, &mut wh);
        }
        for i in 0..b.len() {
            assert_eq!(
                wb[i].to_bits(),
                (b[i].to_bits() as u32) << 16,
                "bf16 {i:#06x}"
            );
            let want = h[i].to_f32();
            if want.is_nan() {
                assert!(wh[i].is_nan(), "f16 {i:#06x}");
            } else {
                assert_eq!(wh[i].to_bits(), want.to_bits(), "f16 {i:#06x}");
            }
        }
    }
}
