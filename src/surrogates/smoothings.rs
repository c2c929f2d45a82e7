//! The f64 oracles of three more smoothings of non-smooth functions, each with its gradient
//! and its stated distance to the function it smooths. All run on every backend: the
//! element-wise two as [`crate::Surrogate::Smoothing`] (the GPU in f32 by the same two
//! evaluations of the floor, switching at `t = 1`), the power-mean max as
//! [`crate::Surrogate::PowerMax`] (the GPU in f32 from each value's exponent and significand:
//! shaders/surrogate_rows.wgsl); the CPU by these functions, rounded once.
//!
//! | smoothing | value | gradient | bound |
//! |-----------|-------|----------|-------|
//! | smooth absolute value, `k > 0` | `(1/k)·ln(e^{kx} + e^{−kx}) = |x| + ln(1 + e^{−2k|x|})/k` | `tanh(kx)` | `|x| ≤ f ≤ |x| + ln 2/k` |
//! | its smooth max | `(a + b + f(a − b))/2 = max + ln(1 + e^{−2k|a−b|})/(2k)` | `σ(±2k(a − b))` | `max ≤ f ≤ max + ln 2/(2k)` |
//! | power-mean max, `p ≥ 1`, `x ≥ 0` | `(Σ x_j^p)^{1/p} = m·(Σ (x_j/m)^p)^{1/p}`, `m = max x` | `(x_j/f)^{p−1}` | `max ≤ f ≤ C^{1/p}·max` |
//! | smoothed floor, `t > 0` | `Σ_{n∈ℤ} (σ(t(x − n)) − [n ≤ 0])` | `Σ_n t·σ'(t(x − n))` | `|f − ⌊x⌋| ≤ e^{−t·d}/(1 − e^{−t})` |
//!
//! with `d` the distance from `x` to the nearest integer (at an integer the smoothed floor is
//! `n − 1/2` for every `t`: the step's midpoint).
//!
//! **The smoothed floor without a window.** The sum over all integers is periodic up to the
//! integer part: `f(x + 1) = f(x) + 1`, so `f(x) = ⌊x⌋ + g(r)` with `r = x − ⌊x⌋ ∈ [0, 1)`
//! and
//!
//! ```text
//! g(r) = Σ_{m≥1} σ(−t(m − r)) − Σ_{m≥0} σ(−t(r + m))          (terms ≤ e^{−t(m−1)} for m ≥ 1)
//!      = r − 1/2 + Σ_{k≥1} φ(2πk/t)·sin(2πkr)/(πk),  φ(ω) = πω / sinh(πω)
//! ```
//!
//! The second form is the first's Fourier series (Poisson summation: the logistic density's
//! characteristic function is `φ`); its terms fall like `e^{−2π²k/t}` where the first's fall
//! like `e^{−tm}`. So the direct sum is used for `t ≥ π√2` and the series below it, and either
//! needs at most `⌈ln(2/ε)/(π√2)⌉ + 2` terms per side for a remainder below `ε` relative to
//! the result: no window to choose, whatever `x` and `t`. The direct sum takes the distances
//! to the integers above and below from `x` itself ([`distances`]): `r` and `1 − r` rounded
//! would lose a tiny negative `x`, whose nearest integer decides the result at large `t`.

use super::call::ElementSmoothing;
use ndarray::{Array1, Array2, ArrayView2};
use std::f64::consts::PI;

/// `σ(x) = 1 / (1 + e^{−x})`, without overflow for either sign.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^{−z})` for `z ≥ 0`, without cancellation.
fn log1p_exp_neg(z: f64) -> f64 {
    (-z).exp().ln_1p()
}

/// The smooth absolute value `(|x| + ln(1 + e^{−2k|x|})/k, tanh(kx))` of one value: `±inf`
/// gives `(+inf, ±1)`, NaN gives NaN.
pub fn smooth_abs(x: f64, k: f64) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    let a = x.abs();
    (a + log1p_exp_neg(2.0 * k * a) / k, (k * x).tanh())
}

/// The smooth max of two values built from [`smooth_abs`]: `(value, ∂/∂a, ∂/∂b)` with
/// `∂/∂a = (1 + tanh(k(a − b)))/2`. A non-finite `a` or `b` gives NaN.
pub fn smooth_abs_max(a: f64, b: f64, k: f64) -> (f64, f64, f64) {
    if !(a.is_finite() && b.is_finite()) {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let d = a - b;
    // max + ln(1 + e^{−2k|d|})/(2k), and (1 ± tanh(kd))/2 = σ(±2kd): no term cancels.
    let z = 2.0 * k * d;
    (
        a.max(b) + log1p_exp_neg(z.abs()) / (2.0 * k),
        sigmoid(z),
        sigmoid(-z),
    )
}

/// The power-mean max of each row of non-negative `x` at `p ≥ 1`: per row
/// `(Σ x_j^p)^{1/p}` and the gradient `(x_j/f)^{p−1}`, computed relative to the row max so
/// that no power overflows. A zero row has value 0 and gradient 1 for `p = 1` (the sum), 0
/// otherwise (PyTorch's choice for a norm at 0); an empty row has value 0; a row with `+inf`
/// has value `+inf` and gradient NaN. (Inputs are assumed validated: finite or `+inf`,
/// non-negative.)
pub fn power_max(x: ArrayView2<f64>, p: f64) -> (Array1<f64>, Array2<f64>) {
    let mut v = Array1::zeros(x.nrows());
    let mut g = Array2::zeros(x.dim());
    for (i, (row, gi)) in x.outer_iter().zip(g.outer_iter_mut()).enumerate() {
        v[i] = power_max_row(row.iter().copied(), p, gi.into_iter());
    }
    (v, g)
}

/// One row of [`power_max`]: the value, with the gradient written into `grad` (one slot per
/// value of `x`, which is read twice).
pub(crate) fn power_max_row<'g>(
    x: impl Iterator<Item = f64> + Clone,
    p: f64,
    grad: impl Iterator<Item = &'g mut f64>,
) -> f64 {
    if !(p.is_finite() && p >= 1.0) {
        // (Outside its domain: p ≥ 1, finite.)
        grad.for_each(|g| *g = f64::NAN);
        return f64::NAN;
    }
    let m = x.clone().fold(0.0, f64::max);
    if m == f64::INFINITY {
        grad.for_each(|g| *g = f64::NAN);
        return f64::INFINITY;
    }
    if m == 0.0 {
        let g0 = if p == 1.0 { 1.0 } else { 0.0 };
        grad.for_each(|g| *g = g0);
        return 0.0;
    }
    let s: f64 = x.clone().map(|xj| (xj / m).powf(p)).sum();
    // (x_j / f)^{p−1} = (x_j/m)^{p−1} / s^{(p−1)/p}
    let d = s.powf((p - 1.0) / p);
    for (gj, xj) in grad.zip(x) {
        *gj = (xj / m).powf(p - 1.0) / d;
    }
    m * s.powf(1.0 / p)
}

/// An element-wise smoothing of every element of `x`: the values and the gradient, in f64.
pub fn elementwise(x: ArrayView2<f32>, op: ElementSmoothing) -> (Array2<f64>, Array2<f64>) {
    let vg = x.mapv(|v| match op {
        ElementSmoothing::Abs { k } => smooth_abs(v as f64, k as f64),
        ElementSmoothing::Floor { t } => smooth_floor(v as f64, t as f64),
    });
    (vg.mapv(|p| p.0), vg.mapv(|p| p.1))
}

/// The smoothed floor of one value at sharpness `t > 0`: `(value, derivative)` (module
/// docs). `±inf` gives `(±inf, 0)`, NaN gives NaN.
pub fn smooth_floor(x: f64, t: f64) -> (f64, f64) {
    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    if x.is_infinite() {
        return (x, 0.0);
    }
    let (a, dl, du) = distances(x);
    let (g, dg) = if t >= PI * std::f64::consts::SQRT_2 {
        floor_direct(dl, du, t)
    } else {
        floor_series(dl, t)
    };
    (a + g, dg)
}

/// `(⌊x⌋, x − ⌊x⌋, ⌊x⌋ + 1 − x)` with each distance exact where it is the smaller one: `x − a`
/// is exact but for `x ∈ (−1/2, 0)` (then `a = −1` and the distance up is `−x`, exact), and
/// `1 − (x − a)` is exact where `x − a ≥ 1/2`. (`r = 1 + x` would round away a tiny negative
/// `x`: the term that decides the result is the nearest integer's.)
pub fn distances(x: f64) -> (f64, f64, f64) {
    let a = x.floor();
    let dl = x - a;
    let du = if a == -1.0 { -x } else { 1.0 - dl };
    (a, dl, du)
}

/// `g` and `g'` by the direct sums over the integers above (distances `du + m`) and at or
/// below (`dl + m`), for large `t`: terms until both fall below `2^{−60}` of the totals.
fn floor_direct(dl: f64, du: f64, t: f64) -> (f64, f64) {
    let (mut up, mut down, mut d) = (0.0, 0.0, 0.0);
    for m in 0.. {
        let mf = m as f64;
        // σ(−t(du + m)) from the m-th integer above x, σ(−t(dl + m)) from the m-th at or
        // below it.
        let (hi, lo) = (sigmoid(-t * (mf + du)), sigmoid(-t * (dl + mf)));
        up += hi;
        down += lo;
        d += t * (hi * (1.0 - hi) + lo * (1.0 - lo));
        if hi + lo <= 2f64.powi(-60) * (1.0 + up + down) {
            break;
        }
    }
    (up - down, d)
}

/// `g(r)` and `g'(r)` by the Fourier series, for small `t`.
fn floor_series(r: f64, t: f64) -> (f64, f64) {
    let (mut g, mut d) = (r - 0.5, 1.0);
    for k in 1.. {
        let w = 2.0 * PI * k as f64 / t;
        let phi = PI * w / (PI * w).sinh();
        if phi.is_nan() || phi <= 2f64.powi(-60) {
            break; // (sinh overflows to inf for tiny t: φ = 0)
        }
        let a = 2.0 * PI * k as f64 * r;
        g += phi * a.sin() / (PI * k as f64);
        d += 2.0 * phi * a.cos();
    }
    (g, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences of `f` at `x` with step `h`.
    fn diff(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn smooth_abs_is_within_its_bound_and_its_gradient_is_tanh() {
        for k in [0.01, 0.5, 1.0, 7.0, 1e6] {
            for x in [-1e3, -3.0, -0.1, 0.0, 1e-9, 0.25, 2.0, 1e3] {
                let (f, g) = smooth_abs(x, k);
                assert!(
                    f >= x.abs() && f <= x.abs() + std::f64::consts::LN_2 / k,
                    "{x} {k}"
                );
                // Within 20/k of the kink a step small against 1/k; beyond, where f is |x| to
                // within e^{-40}, one large against the ulp of x.
                let h = if k * x.abs() > 20.0 {
                    1e-6 * (1.0 + x.abs())
                } else {
                    1e-6 / k.max(1.0)
                };
                let fd = diff(|v| smooth_abs(v, k).0, x, h);
                assert!(
                    (g - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{x} {k}: {g} vs {fd}"
                );
            }
            // The bound is reached at 0.
            assert!((smooth_abs(0.0, k).0 - std::f64::consts::LN_2 / k).abs() < 1e-12 / k);
        }
        assert_eq!(smooth_abs(f64::NEG_INFINITY, 1.0), (f64::INFINITY, -1.0));
        assert!(smooth_abs(f64::NAN, 1.0).0.is_nan());
        // The literal form, where it does not overflow.
        let (x, k) = (0.3f64, 2.0f64);
        let lit = ((k * x).exp() + (-k * x).exp()).ln() / k;
        assert!((smooth_abs(x, k).0 - lit).abs() < 1e-15);
    }

    #[test]
    fn smooth_abs_max_bounds_and_gradients() {
        for k in [0.1, 1.0, 50.0] {
            for (a, b) in [(0.0, 0.0), (1.0, -2.0), (-3.0, 4.5), (1e8, 1e8 + 1.0)] {
                let (f, da, db) = smooth_abs_max(a, b, k);
                let m = f64::max(a, b);
                assert!(
                    f >= m && f <= m + std::f64::consts::LN_2 / (2.0 * k) + 1e-7,
                    "{a} {b}"
                );
                assert!((da + db - 1.0).abs() < 1e-15);
                if a.abs() > 1e3 {
                    continue; // (only for the bound: differences there lose 1e8·ε to rounding)
                }
                let fd = diff(|v| smooth_abs_max(v, b, k).0, a, 1e-6);
                assert!((da - fd).abs() < 1e-5, "{a} {b} {k}: {da} vs {fd}");
            }
        }
    }

    #[test]
    fn power_max_bounds_limit_and_gradient() {
        let x = ndarray::array![[0.5, 2.0, 1.0, 0.0], [3.0, 3.0, 3.0, 3.0], [0.0; 4]];
        for p in [1.0, 1.5, 2.0, 8.0, 300.0, 1e6] {
            let (v, g) = power_max(x.view(), p);
            for (i, row) in x.outer_iter().enumerate() {
                let m = row.iter().copied().fold(0.0, f64::max);
                let c = row.len() as f64;
                assert!(v[i] >= m * (1.0 - 1e-15) && v[i] <= c.powf(1.0 / p) * m * (1.0 + 1e-15));
                for j in 0..row.len() {
                    // No derivative from the left at 0 for p > 1 (checked below); and past
                    // p = 300 the curvature p/m leaves no step for central differences.
                    if m == 0.0 || (p > 1.0 && row[j] == 0.0) || p > 300.0 {
                        continue;
                    }
                    let h = 1e-4 * m / p;
                    let fd = diff(
                        |s| {
                            let mut y = x.clone();
                            y[[i, j]] = s;
                            power_max(y.view(), p).0[i]
                        },
                        row[j],
                        h,
                    );
                    assert!(
                        (g[[i, j]] - fd).abs() < 1e-5 * (1.0 + fd.abs()),
                        "{p} {i} {j}"
                    );
                }
            }
            // The first row's 0 has gradient 0 for p > 1 (the one-sided derivative), 1 at p = 1.
            assert_eq!(g[[0, 3]], if p == 1.0 { 1.0 } else { 0.0 });
        }
        // p → ∞: the max; p = 1: the sum; p = 2: the Euclidean norm.
        assert!((power_max(x.view(), 1e6).0[0] - 2.0).abs() < 1e-5);
        assert_eq!(power_max(x.view(), 1.0).0[0], 3.5);
        assert!((power_max(x.view(), 2.0).0[0] - 5.25f64.sqrt()).abs() < 1e-15);
        // Huge values and a huge p do not overflow.
        let big = ndarray::array![[1e300, 1e300]];
        assert!((power_max(big.view(), 50.0).0[0] / 1e300 - 2f64.powf(1.0 / 50.0)).abs() < 1e-14);
    }

    #[test]
    fn smoothed_floor_matches_its_definition_and_bound() {
        // The definition summed literally over a wide window, against both evaluations.
        let literal = |x: f64, t: f64| -> f64 {
            (-4000..=4000)
                .map(|n: i32| sigmoid(t * (x - n as f64)) - if n <= 0 { 1.0 } else { 0.0 })
                .sum()
        };
        for t in [0.5, 1.0, 3.0, 4.4, 4.5, 10.0, 60.0] {
            for x in [
                -7.3, -1.0, -0.5, -0.01, 0.0, 0.2, 0.5, 0.999, 1.0, 2.75, 13.1,
            ] {
                let (f, d) = smooth_floor(x, t);
                let want = literal(x, t);
                assert!((f - want).abs() < 1e-12, "x = {x}, t = {t}: {f} vs {want}");
                let fd = diff(|v| smooth_floor(v, t).0, x, 1e-6);
                assert!(
                    (d - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                    "x = {x}, t = {t}: {d} vs {fd}"
                );
                // Both forms agree where both converge.
                let (_, dl, du) = distances(x);
                let (a, b) = (floor_direct(dl, du, t), floor_series(dl, t));
                assert!(
                    (a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-9,
                    "{x} {t}"
                );
            }
        }
        for t in [2.0f64, 8.0, 40.0] {
            for x in [0.1f64, 0.3, 0.5, 2.9, -3.2] {
                let d = (x - x.round()).abs();
                let bound = (-t * d).exp() / (1.0 - (-t).exp());
                assert!((smooth_floor(x, t).0 - x.floor()).abs() <= bound, "{x} {t}");
            }
            // The step's midpoint at an integer, whatever t.
            assert!((smooth_floor(3.0, t).0 - 2.5).abs() < 1e-12);
        }
        // Tiny negative x at a huge t: the nearest integer, 0, decides (σ(−t|x|) − 1, and
        // no other term counts); the antisymmetry f(−x) = −1 − f(x) holds there too.
        for (x, t) in [
            (-1e-20f64, 1e20f64),
            (-3e-39, 3.4e38),
            (-1e-4, 1.5e4),
            (-1e-12, 1e12),
        ] {
            let (f, d) = smooth_floor(x, t);
            let want = sigmoid(t * x) - 1.0;
            assert!((f - want).abs() < 1e-12, "x = {x}, t = {t}: {f} vs {want}");
            let dw = t * sigmoid(t * x) * sigmoid(-t * x);
            assert!(
                (d - dw).abs() <= 1e-12 * dw,
                "x = {x}, t = {t}: {d} vs {dw}"
            );
            assert!((smooth_floor(-x, t).0 + 1.0 + f).abs() < 1e-12);
        }
        // The limits: the floor as t → ∞ (away from integers), x − 1/2 as t → 0.
        assert!((smooth_floor(2.3, 400.0).0 - 2.0).abs() < 1e-15);
        assert!((smooth_floor(2.3, 0.05).0 - 1.8).abs() < 1e-12);
        assert_eq!(smooth_floor(f64::INFINITY, 1.0), (f64::INFINITY, 0.0));
        // Far from 0 the result is the integer part plus the same g(r).
        let (a, b) = (smooth_floor(0.25, 3.0).0, smooth_floor(1e9 + 0.25, 3.0).0);
        assert!((b - 1e9 - a).abs() < 1e-6);
    }
}
