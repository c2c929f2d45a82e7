//! A branch-free `exp` for f32 that LLVM vectorizes (`f32::exp` is a libm call per element).
//!
//! Cephes `expf` (S. Moshier): `exp(x) = 2^n · e^r` with `n = round(x·log2 e)` and
//! `r = x − n·ln 2` (ln 2 split in two parts so `n·C1` is exact), then a degree-6 polynomial for
//! `e^r` on `|r| ≤ ln2/2`. Max error about 1 ulp on the range used here.
//!
//! Domain: arguments are `x − max ≤ 0` in every caller. Below `LO` the result is exactly 0
//! (so `exp(−inf) = 0`, as the masked softmax needs); above `HI` it is `+inf`. NaN in gives an
//! unspecified value: callers flag NaN rows before they get here.

use crate::scale::{ExpScale, RowScale};

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split: `C1` = 355/512 has few mantissa bits so `n·C1` is exact for |n| < 2^9.
pub(crate) const C1: f32 = 355.0 / 512.0;
pub(crate) const C2: f32 = -2.121_944_4e-4;
/// Below this, `2^n` would be subnormal: flush to 0.
pub(crate) const LO: f32 = -87.336_55;
/// Above this, `2^(n+1)` overflows the exponent field.
pub(crate) const HI: f32 = 88.376_26;
/// `1.5 · 2^23`: adding and subtracting it rounds to the nearest integer (ties to even) with
/// two plain adds, which vectorize on SSE2 where `round` does not.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;

/// Bits of `ROUND_MAGIC`: after `t = x·log2 e + ROUND_MAGIC`, `t.to_bits() − MAGIC_BITS` is
/// `n` itself (|n| < 2^22), so `2^n` is built with integer ops on the bits. A float→int `as`
/// conversion would not do: Rust's saturating `as i32` compiles to scalar `cvttss2si` and stops
/// the loop from vectorizing.
pub(crate) const MAGIC_BITS: u32 = 0x4b40_0000;

/// `2^f` on `[−1/2, 1/2]`, degree 6, lowest first: a relative-error-weighted least-squares
/// fit on Chebyshev nodes (near-minimax; tools/exp2_poly.py prints them), worst relative
/// error 1.6e-8 with the coefficients rounded to f32, about 0.13 ε: the f32 evaluation's own
/// rounding dominates.
pub(crate) const EXP2_POLY: [f32; 7] = [
    1.0,
    std::f32::consts::LN_2, // the fit gives ln 2 to f32 precision
    0.240_226_46,
    0.055_503_29,
    0.009_618_52,
    0.001_339_986,
    0.000_153_375_77,
];

/// Below this, `2^z` would be subnormal: exactly 0 instead, as the other builds' `exp`
/// flushes below `e^LO` (the crate's accuracy contract allows either).
pub(crate) const EXP2_LO: f32 = -126.0;

/// Whether the base-2 loops (avx512/, avx2/) take this row scale: not the tiny form
/// (this file's `exp` handles it), and `c·log₂e` finite (it is not for temperatures between
/// 2.9e-39 and 4.2e-39, where `c` alone is).
#[inline(always)]
pub(crate) fn base2_fits(sc: &RowScale) -> bool {
    !sc.tiny && base2_c(sc).is_finite()
}

/// Whether the builds' `Arith::exp_sums_unchecked` takes this scale: the base-2 loops'
/// ([`base2_fits`]), and `h = 1` where a linear sum (`with_linear`) is wanted, as the fused
/// loops' domain asks (`lin_terms::Linear::fits`).
#[inline(always)]
pub(crate) fn unchecked_fits(sc: &RowScale, with_linear: bool) -> bool {
    base2_fits(sc) && (!with_linear || sc.h == 1.0)
}

/// The base-2 loops' exponent factor: their exponent is `fma(x, h, −m·h)·c₂` with
/// `c₂ = c·log₂e`, formed in f64 and rounded once.
#[inline(always)]
pub(crate) fn base2_c(sc: &RowScale) -> f32 {
    (sc.c as f64 * std::f64::consts::LOG2_E) as f32
}

/// The scale of a row (or a block of one) whose running max is `m` and whose largest `|x|`
/// has the bits `abits`, marked [`RowScale::no_flush`] where no exponent can fall below
/// [`EXP2_LO`]: then the base-2 loops skip the mask that flushes such lanes to 0 (the
/// AVX-512 exp-sum's compare, one of its 12-13 arithmetic instructions per sixteen elements
/// (rows.rs's table), and the AVX2 exp-sum's compare and mask, two per eight; the AVX2 loop
/// with the linear sum keeps them, avx2/ says why). The exponent `fma(x, h, −m·h)·c₂`, each
/// step rounded once, is non-decreasing in `x` (`h, c₂ > 0`), and every value is at least
/// `−|x|max`, so the exponent of `−|x|max`, formed with the loops' own roundings, is a safe
/// lower bound (not the least exponent itself unless `−|x|max` is a value of the block: at
/// `T = 1` a block whose max is above 43.7 is never marked, `|x|max ≥ m`). Never marks a
/// block holding a non-finite value (`abits` at or above the infinity's bits).
#[inline(always)]
pub(crate) fn bounded_row(es: &ExpScale, m: f32, abits: u32) -> RowScale {
    let mut sc = es.row(m);
    sc.no_flush = !sc.tiny && abits < f32::INFINITY.to_bits() && {
        let least = (-f32::from_bits(abits)).mul_add(sc.h, sc.mh);
        least * base2_c(&sc) >= EXP2_LO
    };
    sc
}

/// How `a·b + c` is formed: one fused instruction where the processor has FMA, else a multiply
/// and an add. Kernels are generic over it so the FMA build gets vfmadd without the baseline
/// build calling the (slow, software) `fmaf`. The row loops each build runs are
/// `cpu::arith::Arith`, on top of this.
pub(crate) trait Fma: Copy {
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// `a.mul_add(b, c)`: only for code compiled with the `fma` target feature.
#[derive(Copy, Clone)]
pub(crate) struct Fused;

/// `a.mul_add(b, c)` in the AVX-512 build (its own type so that `cpu::arith::Arith` can give
/// that build its sixteen-lane loops): only for code compiled with `avx512f` and `fma`.
#[derive(Copy, Clone)]
pub(crate) struct Fused512;

/// `a * b + c`.
#[derive(Copy, Clone)]
pub(crate) struct Separate;

impl Fma for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Fma for Fused512 {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl Fma for Separate {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `e^x` to about 1 ulp, vectorizable; see the module docs for the domain.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<Separate>(x)
}

/// [`exp`] with the multiply-adds formed by `A`.
#[inline(always)]
pub(crate) fn exp_with<A: Fma>(x: f32) -> f32 {
    // `if` selects (not f32::max/min, whose NaN rules add work) compile to maxps/minps.
    let lo = if x < LO { LO } else { x };
    let xc = if lo > HI { HI } else { lo };
    let t = A::fma(xc, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = A::fma(n, -C2, A::fma(n, -C1, xc));
    let r2 = r * r;
    let mut p = A::fma(1.987_569_1e-4, r, 1.398_199_9e-3);
    p = A::fma(p, r, 8.333_452e-3);
    p = A::fma(p, r, 4.166_579_6e-2);
    p = A::fma(p, r, 1.666_666_5e-1);
    p = A::fma(p, r, 0.5); // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e_r = A::fma(p, r2, r) + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_add(127u32.wrapping_sub(MAGIC_BITS)) << 23);
    let y = e_r * scale;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

/// Checks a vectorized `2^z` (`eval` maps a slice whose length is a multiple of 16): within
/// one ε of f64 over `[−126, 0]`, exact at the integers (so 1 at 0), exactly 0 below
/// `EXP2_LO` and at −inf.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn assert_exp2_within_one_ulp(eval: impl Fn(&[f32]) -> Vec<f32>) {
    let mut zs: Vec<f32> = (0..400_000)
        .map(|i| -126.0 + i as f32 * 0.000_315)
        .collect();
    zs.retain(|&z| z <= 0.0);
    zs.extend((0..=126).map(|k| -(k as f32)));
    zs.extend([
        -0.0,
        -0.5,
        -126.000_01,
        -127.0,
        -1000.0,
        -f32::MAX,
        f32::NEG_INFINITY,
    ]);
    zs.resize(zs.len().div_ceil(16) * 16, 0.0);
    let got = eval(&zs);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Worst relative error against f64 over a dense sweep of the domain callers use.
    #[test]
    fn matches_f64_exp_to_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_73;
        }
        assert!(
            worst < 2.0 * f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
    }

    /// The loops' exponent of `x` (as `bounded_row` forms its bound).
    fn z(sc: &RowScale, x: f32) -> f32 {
        x.mul_add(sc.h, sc.mh) * base2_c(sc)
    }

    /// The largest `a ≥ max(|m|, 1)` whose exponent `z(−a)` is at least [`EXP2_LO`] (by
    /// bisection on the bits: `z(−a)` does not increase with `a`), or `None` where even the
    /// first is below it.
    fn tightest(es: &ExpScale, m: f32) -> Option<f32> {
        let sc = es.row(m);
        let (mut lo, mut hi) = (m.abs().max(1.0).to_bits(), f32::MAX.to_bits());
        let ok = |b: u32| z(&sc, -f32::from_bits(b)) >= EXP2_LO;
        if es.tiny || !base2_fits(&sc) || !ok(lo) {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            (lo, hi) = if ok(mid) { (mid, hi) } else { (lo, mid) };
        }
        Some(f32::from_bits(lo))
    }

    /// [`bounded_row`] marks a block only where every exponent the base-2 loops form
    /// (`fma(x, h, −m·h)·c₂`, each step rounded) is at least [`EXP2_LO`], and the mark is
    /// tight: at each temperature form and max, over rows reaching down past the bound, every
    /// value of a marked row gives an exponent at or above it; the largest `|x|` that still
    /// does is marked and the next float is not. Non-finite blocks are never marked.
    #[test]
    fn bounded_rows_have_no_exponent_below_the_flush() {
        let bits = |v: f32| v.to_bits() & 0x7fff_ffff;
        let mut tight = 0;
        for kappa in [1.0f64, 4.0, 0.25, 1e-3, 1e30] {
            let es = ExpScale::new(kappa, 1.0);
            for m in [0.0f32, 30.0, -20.0, 1e4] {
                for span in [1.0f32, 60.0, 87.0, 87.5, 88.0, 100.0, 500.0, 1e5, 1e9] {
                    // Values from m down to m − span (at least −|x|max, as every row's are).
                    let x: Vec<f32> = (0..=64).map(|k| m - span * k as f32 / 64.0).collect();
                    let a = x.iter().map(|&v| bits(v)).max().unwrap_or(0);
                    let sc = bounded_row(&es, m, a);
                    if sc.no_flush {
                        for &v in &x {
                            assert!(z(&sc, v) >= EXP2_LO, "κ {kappa} m {m} x {v}");
                        }
                    }
                }
                if let Some(a) = tightest(&es, m) {
                    assert!(bounded_row(&es, m, bits(a)).no_flush, "κ {kappa} m {m} {a}");
                    let past = f32::from_bits(a.to_bits() + 1);
                    assert!(!bounded_row(&es, m, bits(past)).no_flush);
                    tight += 1;
                }
            }
            for a in [f32::INFINITY.to_bits(), f32::NAN.to_bits()] {
                assert!(!bounded_row(&es, 0.0, a).no_flush);
            }
        }
        assert!(tight >= 10, "the tight bound was checked {tight} times");
    }

    /// The SIMD loops on rows reaching down to the tightest marked value (exponents in
    /// `[−126, −125]`, where `2^n` is at its smallest normal): without the flush they give
    /// the sums (exp and linear) and stored terms of the loops with it, bit for bit, over rows
    /// with every kind of tail. And a row forged as marked while holding an exponent of −137
    /// gets a term the flushed loop zeroes (AVX-512: a subnormal; AVX2: a wrong value), so
    /// the mark does select the unflushed loop.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn unflushed_loops_match_the_flushed_ones_on_marked_rows() {
        use crate::cpu::lin_terms::Linear;
        use crate::cpu::CpuIsa;
        type Loop = fn(&[f32], &RowScale, &mut [f32]) -> (f32, f32, f32);
        const LIN: Linear = Linear {
            sigma: 0.5,
            k: None,
        };
        let mut loops: Vec<(&str, Loop)> = Vec::new();
        if CpuIsa::Avx2.is_supported() {
            // SAFETY: AVX2 + FMA detected; `out` as long as `x`, which is finite (h = 1).
            loops.push(("avx2", |x, sc, out| unsafe {
                let s = crate::cpu::avx2::exp_sum(x, sc, Some(&mut *out), &[]);
                let (e, l) = crate::cpu::avx2::exp_linear_sums(x, sc, &LIN, None, &[]);
                (s, e, l)
            }));
        }
        if CpuIsa::Avx512.is_supported() {
            // SAFETY: AVX-512F detected; as above.
            loops.push(("avx512", |x, sc, out| unsafe {
                let s = crate::cpu::avx512::exp_sum(x, sc, Some(&mut *out), &[]);
                let (e, l) = crate::cpu::avx512::exp_linear_sums(x, sc, &LIN, None, &[]);
                (s, e, l)
            }));
        }
        if loops.is_empty() {
            eprintln!("no AVX2 here: nothing to test");
            return;
        }
        let es = ExpScale::new(1.0, 1.0);
        let edge = tightest(&es, 0.0).unwrap_or(0.0);
        assert!(z(&es.row(0.0), -edge) < -125.0, "{edge}");
        let mut state = 7u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1 << 24) as f32
        };
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for cols in [3usize, 16, 31, 32, 40, 1000, 1031] {
            // The max 0 first; −edge first in the loop, in the middle and last (in the tail).
            let mut x: Vec<f32> = (0..cols).map(|_| -next() * edge).collect();
            x[0] = 0.0;
            for j in [1, cols / 2, cols - 1] {
                x[j.min(cols - 1)] = -edge;
            }
            let marked = bounded_row(&es, 0.0, edge.to_bits());
            assert!(marked.no_flush, "{cols}");
            let flushed = RowScale {
                no_flush: false,
                ..marked
            };
            for (name, f) in &loops {
                let (mut o1, mut o2) = (vec![0.0f32; cols], vec![0.0f32; cols]);
                let (s1, e1, l1) = f(&x, &marked, &mut o1);
                let (s2, e2, l2) = f(&x, &flushed, &mut o2);
                assert_eq!(bits(&[s1, e1, l1]), bits(&[s2, e2, l2]), "{name} {cols}");
                assert_eq!(bits(&o1), bits(&o2), "{name} {cols}");
            }
        }
        let mut x = vec![-1.0f32; 64];
        (x[0], x[1]) = (0.0, -95.0);
        let forged = RowScale {
            no_flush: true,
            ..es.row(0.0)
        };
        for (name, f) in &loops {
            let (mut o1, mut o2) = (vec![0.0f32; 64], vec![0.0f32; 64]);
            f(&x, &forged, &mut o1);
            f(&x, &es.row(0.0), &mut o2);
            assert_eq!(o2[1], 0.0, "{name}");
            assert_ne!(
                o1[1], 0.0,
                "{name}: the mark did not select the unflushed loop"
            );
        }
    }

    #[test]
    fn edges() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(1000.0), f32::INFINITY);
    }
}
