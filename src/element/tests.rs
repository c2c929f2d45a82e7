//! Rounding and widening checked against the `half` crate's scalar conversions.
use super::*;

/// Round-to-nearest-even by exhaustive comparison with the `half` crate's scalar
/// conversions (independent code) over a sweep of f32 bit patterns: every exponent, the
/// mantissas around each rounding boundary, NaN payloads, infinities, subnormals.
#[test]
fn narrowing_matches_half_and_rounds_to_nearest_even() {
    let mut patterns = Vec::new();
    for e in 0u32..256 {
        for low in [
            0u32, 1, 0x7fff, 0x8000, 0x8001, 0xffff, 0x1_0000, 0x1_8000, 0x7f_ffff,
        ] {
            for s in [0u32, 0x8000_0000] {
                patterns.push(s | (e << 23) | low);
                patterns.push(s | (e << 23) | (0x40_0000 ^ low));
                patterns.push(s | (e << 23) | (0x3fe000 | (low & 0x1fff)));
            }
        }
    }
    for b in patterns {
        let v = f32::from_bits(b);
        let ours = bf16::from_f32(v);
        let theirs = half::bf16::from_f32(v);
        if v.is_nan() {
            assert!(ours.is_nan(), "{b:#x}");
        } else {
            assert_eq!(ours.to_bits(), theirs.to_bits(), "{b:#x}");
        }
        let mut out = [bf16::ZERO; 1];
        <bf16 as Element>::narrow(&[v], &mut out);
        assert_eq!(out[0].to_bits(), ours.to_bits(), "{b:#x}");
        let mut h = [f16::ZERO; 1];
        <f16 as Element>::narrow(&[v], &mut h);
        let scalar = f16::from_f32(v);
        assert!(h[0].to_bits() == scalar.to_bits() || (v.is_nan() && h[0].is_nan()));
    }
    // The cases the contract names.
    assert_eq!(f16::from_f32(65520.0), f16::INFINITY); // past 65504 + half an ulp
    assert_eq!(f16::from_f32(65519.0), f16::MAX);
    assert_eq!(bf16::from_f32(f32::MAX), bf16::INFINITY);
    assert_eq!(bf16::from_f32(1.0 + 1.0 / 256.0).to_f32(), 1.0); // tie to even
    assert_eq!(
        bf16::from_f32(1.0 + 3.0 / 256.0).to_f32(),
        1.0 + 4.0 / 256.0
    );
    assert!(bf16::from_f32(f32::from_bits(0x7f80_0001)).is_nan());
}

#[test]
fn widening_is_exact() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let h: Vec<f16> = all.iter().map(|&b| f16::from_bits(b)).collect();
    let g: Vec<bf16> = all.iter().map(|&b| bf16::from_bits(b)).collect();
    let mut w = vec![0.0f32; all.len()];
    <f16 as Element>::widen(&h, &mut w);
    for (a, b) in h.iter().zip(&w) {
        assert!(a.to_f64() == *b as f64 || (a.is_nan() && b.is_nan()));
    }
    <bf16 as Element>::widen(&g, &mut w);
    for (a, b) in g.iter().zip(&w) {
        assert!(a.to_f64() == *b as f64 || (a.is_nan() && b.is_nan()));
    }
}
