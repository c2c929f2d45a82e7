//! Tests of the AVX-512 loops: the exponential against f64, the conversions bit for bit.

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

/// `exp2_16` against f64 (`exp::assert_exp2_within_one_ulp`).
#[test]
fn exp2_16_matches_f64_to_one_ulp() {
    if !have() {
        return;
    }
    crate::cpu::exp::assert_exp2_within_one_ulp(|zs| {
        let mut out = vec![0.0f32; zs.len()];
        for (o, z) in out.chunks_exact_mut(16).zip(zs.chunks_exact(16)) {
            // SAFETY: AVX-512F checked above; 16-element chunks.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), exp2_16(_mm512_loadu_ps(z.as_ptr()), true)) };
        }
        out
    });
}

/// `exp2_16` over what a guessed block (`rows::online`) can give it: above 0 within one ε of
/// f64 (exponents up to 32 are kept, up to 128 finite), +inf past f32's range and at +inf,
/// and with `flush` NaN for a NaN exponent (which the guess must see), 0 for −inf.
#[test]
fn exp2_16_above_zero_and_at_non_finite_exponents() {
    if !have() {
        return;
    }
    let eval = |zs: &[f32]| {
        let mut out = vec![0.0f32; zs.len()];
        for (o, z) in out.chunks_exact_mut(16).zip(zs.chunks_exact(16)) {
            // SAFETY: AVX-512F checked above; 16-element chunks.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), exp2_16(_mm512_loadu_ps(z.as_ptr()), true)) };
        }
        out
    };
    let mut zs: Vec<f32> = (1..=128_000).map(|i| i as f32 * 0.001).collect();
    zs.resize(zs.len().div_ceil(16) * 16, 1.0);
    let got = eval(&zs);
    let mut worst = 0.0f64;
    for (&z, &g) in zs.iter().zip(&got) {
        let want = (z as f64).exp2();
        if want < f32::MAX as f64 {
            worst = worst.max(((g as f64 - want) / want).abs());
        } else {
            assert_eq!(g, f32::INFINITY, "2^{z}");
        }
    }
    assert!(
        worst < f32::EPSILON as f64,
        "worst relative error {worst:e}"
    );
    let mut special = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        128.5,
        1e30,
        f32::MAX,
    ];
    special.resize(16, 0.0);
    let got = eval(&special);
    assert!(got[0].is_nan(), "2^NaN = {}", got[0]);
    assert_eq!(
        got[1..6],
        [
            f32::INFINITY,
            0.0,
            f32::INFINITY,
            f32::INFINITY,
            f32::INFINITY
        ]
    );
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
        affine_into(&xs, [1.0, -0.0, 1.0, -0.0], &mut b, false, None);
        affine_into(&xs, [1.0, -0.0, 1.0, -0.0], &mut h, true, None);
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
