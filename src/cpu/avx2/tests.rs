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
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), exp2_8(_mm256_loadu_ps(z.as_ptr()), true)) };
        }
        out
    });
}
