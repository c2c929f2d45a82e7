//! The cross-entropy's own AVX2 loops besides the exp-sums (mod.rs): the linear sum where the
//! fused loop does not take a block, and the gradient's update from the stored terms.

use super::sums::{fold_f64, hsum_f64};
use crate::cpu::lanes::SUM_BLOCK;
use std::arch::x86_64::*;

/// `k̂_j` for eight classes from `j` (the normalized inputs of `cross_entropy::fast`): the
/// row's probability-target weights when given, else the class weights, else 1.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k8(j: usize, w: Option<&[f32]>, q: Option<&[f32]>) -> __m256 {
    // SAFETY (callers): j + 8 ≤ the length of w and q.
    unsafe {
        match (q, w) {
            (Some(q), _) => _mm256_loadu_ps(q.as_ptr().add(j)),
            (None, Some(w)) => _mm256_loadu_ps(w.as_ptr().add(j)),
            (None, None) => _mm256_set1_ps(1.0),
        }
    }
}

/// The cross-entropy linear sum over a row with finite max `m`:
/// `a = Σ_finite k̂_j·fma(x_j, σ, −σm)` (no overflow however the row spans). `k̂` as in
/// [`k8`]; `k_scalar(j)` for the tail. Blocked like mod.rs's `exp_sum` (64 additions per f32
/// lane at most).
///
/// # Safety
/// AVX2 + FMA; `w` and `q`, when given, are as long as `x`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn linear_sums(
    x: &[f32],
    sigma: f32,
    minus_m_sigma: f32,
    w: Option<&[f32]>,
    q: Option<&[f32]>,
    k_scalar: impl Fn(usize) -> f32,
) -> f32 {
    let (vs, vms) = (_mm256_set1_ps(sigma), _mm256_set1_ps(minus_m_sigma));
    let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut a_total = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let n = x.len() / 8 * 8;
    for b0 in (0..n).step_by(SUM_BLOCK) {
        let mut a = _mm256_setzero_ps();
        for j in (b0..n.min(b0 + SUM_BLOCK)).step_by(8) {
            // SAFETY: j + 8 ≤ n ≤ every slice's length.
            unsafe {
                let d = _mm256_fmadd_ps(_mm256_loadu_ps(x.as_ptr().add(j)), vs, vms);
                let k = k8(j, w, q);
                let fin = _mm256_cmp_ps::<_CMP_GT_OQ>(d, ninf);
                a = _mm256_add_ps(a, _mm256_and_ps(_mm256_mul_ps(k, d), fin));
            }
        }
        fold_f64(a, &mut a_total);
    }
    let mut at = 0.0f32;
    for (j, &v) in x.iter().enumerate().skip(n) {
        let d = v.mul_add(sigma, minus_m_sigma);
        if d > f32::NEG_INFINITY {
            at += k_scalar(j) * d;
        }
    }
    (hsum_f64(a_total) + at as f64) as f32
}

/// The gradient from stored `e`: `g_j ← g_j·scale − coef·k̂_j`.
///
/// # Safety
/// AVX2 + FMA; `w` and `q`, when given, are as long as `g`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn grad_update(
    g: &mut [f32],
    scale: f32,
    coef: f32,
    w: Option<&[f32]>,
    q: Option<&[f32]>,
    k_scalar: impl Fn(usize) -> f32,
) {
    let (vs, vc) = (_mm256_set1_ps(scale), _mm256_set1_ps(coef));
    let n = g.len() / 8 * 8;
    for j in (0..n).step_by(8) {
        // SAFETY: j + 8 ≤ n ≤ every slice's length.
        unsafe {
            let p = g.as_mut_ptr().add(j);
            let v = _mm256_mul_ps(_mm256_loadu_ps(p), vs);
            let v = if coef != 0.0 {
                _mm256_fnmadd_ps(vc, k8(j, w, q), v)
            } else {
                v
            };
            _mm256_storeu_ps(p, v);
        }
    }
    for (j, gj) in g.iter_mut().enumerate().skip(n) {
        *gj = *gj * scale - if coef != 0.0 { coef * k_scalar(j) } else { 0.0 };
    }
}
