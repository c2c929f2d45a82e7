//! The AVX2 loops' f64 accumulation of their f32 block sums (see `SUM_BLOCK` in lanes.rs).

use std::arch::x86_64::*;

/// Adds the eight f32 lanes of a block sum into two four-lane f64 accumulators (see
/// `SUM_BLOCK` in lanes.rs: each f32 lane then takes at most one block's additions).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn fold_f64(v: __m256, d: &mut (__m256d, __m256d)) {
    d.0 = _mm256_add_pd(d.0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    d.1 = _mm256_add_pd(d.1, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
}

/// The sum of [`fold_f64`]'s accumulators.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum_f64(d: (__m256d, __m256d)) -> f64 {
    let mut v = [0.0f64; 4];
    // SAFETY: a 4-lane store into a 4-element array.
    unsafe { _mm256_storeu_pd(v.as_mut_ptr(), _mm256_add_pd(d.0, d.1)) };
    (v[0] + v[1]) + (v[2] + v[3])
}
