//! The AVX2 loops against f64 (mod.rs).

use super::*;

/// `exp2_8` against f64 (`exp::assert_exp2_within_one_ulp`).
#[test]
fn exp2_8_matches_f64_to_one_ulp() {
    if !crate::cpu::CpuIsa::Avx2.is_supported() {
        eprintln!("no AVX2 here: nothing to test");
        return;
    }
    crate::cpu::exp::assert_exp2_within_one_ulp(|zs| {
        let mut out = vec![0.0f32; zs.len()];
        for (o, z) in out.chunks_exact_mut(8).zip(zs.chunks_exact(8)) {
            // SAFETY: AVX2 checked above; eight-element chunks.
            unsafe {
                _mm256_storeu_ps(
                    o.as_mut_ptr(),
                    exp2_8(_mm256_loadu_ps(z.as_ptr()), true, false),
                )
            };
        }
        out
    });
}

/// `exp2_8` with `clamp`, over what a guessed block (`rows::online`) can give it: above 0
/// within one ε of f64 up to the clamp, `2^64` past it and at +inf (past any kept sum), NaN
/// for a NaN exponent, 0 for −inf.
#[test]
fn clamped_exp2_8_above_zero_and_at_non_finite_exponents() {
    if !crate::cpu::CpuIsa::Avx2.is_supported() {
        eprintln!("no AVX2 here: nothing to test");
        return;
    }
    let eval = |zs: &[f32]| {
        let mut out = vec![0.0f32; zs.len()];
        for (o, z) in out.chunks_exact_mut(8).zip(zs.chunks_exact(8)) {
            // SAFETY: AVX2 checked above; eight-element chunks.
            unsafe {
                _mm256_storeu_ps(
                    o.as_mut_ptr(),
                    exp2_8(_mm256_loadu_ps(z.as_ptr()), true, true),
                )
            };
        }
        out
    };
    let mut zs: Vec<f32> = (1..=64_000).map(|i| i as f32 * 0.001).collect();
    zs.resize(zs.len().div_ceil(8) * 8, 1.0);
    let got = eval(&zs);
    let worst = zs
        .iter()
        .zip(&got)
        .map(|(&z, &g)| {
            let want = (z as f64).exp2();
            ((g as f64 - want) / want).abs()
        })
        .fold(0.0f64, f64::max);
    assert!(
        worst < f32::EPSILON as f64,
        "worst relative error {worst:e}"
    );
    let special = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        64.5,
        200.0,
        f32::MAX,
        -126.5,
        0.0,
    ];
    let got = eval(&special);
    assert!(got[0].is_nan(), "2^NaN = {}", got[0]);
    let p64 = 2f32.powi(64);
    assert_eq!(got[1..], [p64, 0.0, p64, p64, p64, 0.0, 1.0]);
}
