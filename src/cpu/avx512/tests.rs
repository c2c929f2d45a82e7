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

fn exp2_of(zs: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; zs.len()];
    for (o, z) in out.chunks_exact_mut(16).zip(zs.chunks_exact(16)) {
        // SAFETY: AVX-512F checked by the caller; 16-element chunks.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), exp2_16(_mm512_loadu_ps(z.as_ptr()))) };
    }
    out
}

/// Within one ε of `2^z` over the arguments callers pass (`≤ 0`, down to the flush), and
/// the edges: exactly 0 below `EXP2_LO` and at −inf, exactly 1 at 0, exact at integers.
#[test]
fn exp2_16_matches_f64_to_one_ulp() {
    if !have() {
        return;
    }
    let mut zs: Vec<f32> = (0..400_000)
        .map(|i| -126.0 + i as f32 * 0.000_315)
        .collect();
    zs.retain(|&z| z <= 0.0);
    zs.extend((0..=126).map(|k| -(k as f32)));
    zs.extend([
        0.0,
        -0.0,
        -0.5,
        0.5 - 1.0,
        -126.000_01,
        -127.0,
        -1000.0,
        -f32::MAX,
    ]);
    zs.push(f32::NEG_INFINITY);
    zs.resize(zs.len().div_ceil(16) * 16, 0.0);
    let got = exp2_of(&zs);
    let mut worst = 0.0f64;
    for (&z, &g) in zs.iter().zip(&got) {
        if z < EXP2_LO {
            assert_eq!(g, 0.0, "2^{z}");
            continue;
        }
        let want = (z as f64).exp2();
        if z == z.round() {
            assert_eq!(g as f64, want, "2^{z}");
        }
        worst = worst.max(((g as f64 - want) / want).abs());
    }
    assert!(
        worst < f32::EPSILON as f64,
        "worst relative error {worst:e}"
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
        affine_into(&xs, [1.0, -0.0, 1.0, -0.0], &mut b, false);
        affine_into(&xs, [1.0, -0.0, 1.0, -0.0], &mut h, true);
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
