//! Shared support of the surrogate suites: generated inputs, the comparison of a fast backend
//! with the f64 reference, and central finite differences.

use super::{assert_close_1d, assert_close_2d, fast_backends, tol, Rng, FLUSH_FLOOR};
use ndarray::{Array1, Array2};
use smoothmax::surrogates::reference::{self as r, surrogate_f64};
use smoothmax::{Surrogate, SurrogateOutput, Value};

pub fn matrix(rows: usize, cols: usize, scale: f64, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    Array2::from_shape_fn((rows, cols), |_| (rng.normal() * scale) as f32)
}

pub fn classes(rows: usize, cols: usize, seed: u64) -> Array1<i64> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(rows, |_| (rng.next_u64() % cols.max(1) as u64) as i64)
}

pub fn value_f64(v: &Value<f64>) -> Array1<f64> {
    Array1::from(v.to_vec())
}

/// Compares a fast backend's output with the reference: the value within the tolerance for
/// `terms` summed terms, the gradients within the tolerance for a row of `C`.
pub fn assert_matches(
    got: &SurrogateOutput,
    want: &SurrogateOutput<f64>,
    terms: usize,
    what: &str,
) {
    assert_eq!(got.value.shape(), want.value.shape(), "{what}: value shape");
    assert_close_1d(
        Array1::from(got.value.to_vec()).view(),
        value_f64(&want.value).view(),
        terms,
        &format!("{what}: value"),
    );
    assert_close_2d(got.grad.view(), want.grad.view(), &format!("{what}: grad"));
    assert_eq!(
        got.grad_b.is_some(),
        want.grad_b.is_some(),
        "{what}: grad_b"
    );
    if let (Some(g), Some(w)) = (&got.grad_b, &want.grad_b) {
        assert_close_2d(g.view(), w.view(), &format!("{what}: grad_b"));
    }
    assert_eq!(got.sums.is_some(), want.sums.is_some(), "{what}: sums");
    if let (Some(g), Some(w)) = (&got.sums, &want.sums) {
        assert_eq!(g.weight, w.weight, "{what}: sums' count");
        // Every op with sums has values >= 0 (accuracy, losses), so Σ|v| = |Σ v|: the sum is
        // within the elements' own tolerances added up, tol·(n + |Σ v|).
        let bound = tol(terms) * (w.weight + w.loss.abs());
        let ok = (g.loss.is_nan() && w.loss.is_nan()) || (g.loss - w.loss).abs() <= bound;
        assert!(ok, "{what}: sums' loss {}, want {}", g.loss, w.loss);
    }
}

/// Non-negative scores: `|normal|·scale`, every fifth exactly 0, and each row's max repeated
/// once (ties), so rows hold zeros, ties and a spread of magnitudes.
pub fn nonneg(rows: usize, cols: usize, scale: f64, seed: u64) -> Array2<f32> {
    let mut x = matrix(rows, cols, scale, seed).mapv(f32::abs);
    for (k, v) in x.iter_mut().enumerate() {
        if k % 5 == 3 {
            *v = 0.0;
        }
    }
    for mut row in x.rows_mut() {
        if row.len() >= 2 {
            let m = row.iter().copied().fold(0.0, f32::max);
            let mid = row.len() / 2;
            row[mid] = m;
        }
    }
    x
}

/// Compares a fast backend's power-mean max with the f64 definition.
///
/// Value: `f = m·s^{1/p}` with `s = Σ (x_j/m)^p ∈ [1, C]`: a relative error `δ` of `s` moves
/// `f` by `δ/p`, so the crate's tolerance for a sum of `C` terms applies.
///
/// Gradient: `g_j = (x_j/f)^{p−1} = 2^{(p−1)·log2(x_j/f)}`. An absolute error `δ` of the log
/// ratio (a few ulp, the f32 log of a ratio in (1/2, 2)) moves `g_j` by `(p−1)·δ·ln 2`
/// relative: the function's own conditioning in `x_j/f`. The rounding of the log's integer part
/// moves it by `u·2^{−u}·ε·ln 2 ≤ ε` absolute (`u = −(p−1)·log2(x_j/f)`). So
/// `|g − r| ≤ tol(C)·(1 + p·|r|)`, less the flush floor (a gradient below 2⁻¹²⁶ may be 0).
pub fn assert_power_close(got: &SurrogateOutput, want: &SurrogateOutput<f64>, p: f32, what: &str) {
    let cols = want.grad.ncols();
    assert_eq!(got.value.shape(), want.value.shape(), "{what}: value shape");
    assert_close_1d(
        Array1::from(got.value.to_vec()).view(),
        Array1::from(want.value.to_vec()).view(),
        cols,
        &format!("{what}: value"),
    );
    let t = tol(cols);
    for ((idx, &g), &r) in got.grad.indexed_iter().zip(want.grad.iter()) {
        if r.is_nan() || g.is_nan() {
            assert!(
                r.is_nan() && g.is_nan(),
                "{what}: grad {idx:?}: got {g}, want {r}"
            );
            continue;
        }
        let err = ((g as f64 - r).abs() - FLUSH_FLOOR).max(0.0);
        let bound = t * (1.0 + p as f64 * r.abs());
        assert!(
            err <= bound,
            "{what}: grad {idx:?}: got {g}, want {r} (p = {p}): error {err:e} > {bound:e}"
        );
    }
}

/// Every fast backend against the reference on one call.
pub fn check_all(call: &Surrogate, terms: usize, what: &str) {
    let want = surrogate_f64(call).unwrap();
    for b in fast_backends() {
        let got = b
            .surrogate(call)
            .unwrap_or_else(|e| panic!("{what} on {}: {e}", b.name()));
        assert_matches(&got, &want, terms, &format!("{what} on {}", b.name()));
    }
}

/// For a weighted row op `f = Σ g_j p_j` with `grad_j = p_j (a + κ(g_j − f))`, the f32 error
/// of `g_j − f` is relative to `|g_j| + |f|`, not to the difference: the gradient's error scale
/// is `p_j·κ·(|g_j| + |f|)` (soft-argmax: `g_j = j`; Boltzmann: `g_j = x_j − max`). Compares
/// with `|a − r| ≤ tol(C)·(1 + |r| + scale)`.
pub fn check_weighted(
    x: &Array2<f32>,
    kappa: f64,
    soft_argmax: bool,
    call: &Surrogate,
    what: &str,
) {
    let want = surrogate_f64(call).unwrap();
    let (rows, cols) = x.dim();
    let mut scale = Array2::<f64>::zeros((rows, cols));
    let vals = want.value.to_vec();
    for i in 0..rows {
        let row: Vec<f64> = x.row(i).iter().map(|&v| v as f64).collect();
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mn = row.iter().copied().fold(f64::INFINITY, f64::min);
        // Boltzmann with β < 0 runs on −x: its "max" is −min.
        let (sign, top) = if !soft_argmax && kappa < 0.0 {
            (-1.0, -mn)
        } else {
            (1.0, m)
        };
        let k = kappa.abs();
        let Some(p) = r::softmax_row(&row.iter().map(|v| sign * v * k).collect::<Vec<_>>()) else {
            continue;
        };
        let f = if soft_argmax {
            vals[i]
        } else {
            sign * vals[i] - top
        };
        for j in 0..cols {
            let g = if soft_argmax {
                j as f64
            } else {
                sign * row[j] - top
            };
            scale[[i, j]] = p[j] * k * (g.abs() + f.abs());
        }
    }
    let t = tol(cols);
    for b in fast_backends() {
        let got = b.surrogate(call).unwrap();
        assert_close_1d(
            Array1::from(got.value.to_vec()).view(),
            value_f64(&want.value).view(),
            cols,
            &format!("{what} on {}: value", b.name()),
        );
        for ((idx, &g), &w) in got.grad.indexed_iter().zip(want.grad.iter()) {
            if w.is_nan() {
                assert!(
                    g.is_nan(),
                    "{what} on {}: grad {idx:?}: got {g}, want NaN",
                    b.name()
                );
                continue;
            }
            let err = (g as f64 - w).abs();
            assert!(
                err <= t * (1.0 + w.abs() + scale[idx]),
                "{what} on {}: grad {idx:?}: got {g}, want {w} (scale {})",
                b.name(),
                scale[idx]
            );
        }
    }
}

// ---- finite differences ------------------------------------------------------------------

/// Central differences of `f` (a scalar function of the matrix) against `grad`, in f64.
/// `h = 1e-5`: truncation `h²·f'''/6 ~ 1e-10` and rounding `ε·|f|/h ~ 1e-11`, so `1e-7` is
/// generous for the smooth ops; inputs keep away from kinks.
pub fn check_fd(x: &Array2<f64>, grad: &Array2<f64>, f: impl Fn(&Array2<f64>) -> f64, what: &str) {
    let h = 1e-5;
    for idx in ndarray::indices(x.dim()) {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[idx] += h;
        xm[idx] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        let g = grad[idx];
        assert!(
            (fd - g).abs() <= 1e-7 * (1.0 + g.abs()),
            "{what}: d/dx{idx:?}: analytic {g}, finite difference {fd}"
        );
    }
}

pub fn f64m(rows: usize, cols: usize, scale: f64, seed: u64) -> Array2<f64> {
    matrix(rows, cols, scale, seed).mapv(|v| v as f64)
}
