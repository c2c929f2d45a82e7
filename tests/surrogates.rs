//! The smooth surrogates and margin losses: the f64 reference's gradients against central
//! finite differences, every fast backend against the reference on generated shapes, the
//! limits and bounds of each smooth form, PyTorch's semantics, edge cases and bad input.

mod common;

use common::{assert_close_1d, fast_backends, tol, Rng};
use ndarray::{array, Array1, Array2, ArrayView2};
use proptest::prelude::*;
use smoothmax::surrogates::reference::{self as r, surrogate_f64};
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, Cpu, MultiMarginOptions, PairwiseForm, Reduction,
    Reference, Surrogate, SurrogateOutput, Value,
};

fn matrix(rows: usize, cols: usize, scale: f64, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    Array2::from_shape_fn((rows, cols), |_| (rng.normal() * scale) as f32)
}

fn classes(rows: usize, cols: usize, seed: u64) -> Array1<i64> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(rows, |_| (rng.next_u64() % cols.max(1) as u64) as i64)
}

fn value_f64(v: &Value<f64>) -> Array1<f64> {
    Array1::from(v.to_vec())
}

/// Compares a fast backend's output with the reference: the value within the tolerance for
/// `terms` summed terms, the gradients within the tolerance for a row of `C`.
fn assert_matches(got: &SurrogateOutput, want: &SurrogateOutput<f64>, terms: usize, what: &str) {
    assert_eq!(got.value.shape(), want.value.shape(), "{what}: value shape");
    assert_close_1d(
        Array1::from(got.value.to_vec()).view(),
        value_f64(&want.value).view(),
        terms,
        &format!("{what}: value"),
    );
    common::assert_close_2d(got.grad.view(), want.grad.view(), &format!("{what}: grad"));
    assert_eq!(
        got.grad_b.is_some(),
        want.grad_b.is_some(),
        "{what}: grad_b"
    );
    if let (Some(g), Some(w)) = (&got.grad_b, &want.grad_b) {
        common::assert_close_2d(g.view(), w.view(), &format!("{what}: grad_b"));
    }
}

/// Every fast backend against the reference on one call.
fn check_all(call: &Surrogate, terms: usize, what: &str) {
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
fn check_weighted(x: &Array2<f32>, kappa: f64, soft_argmax: bool, call: &Surrogate, what: &str) {
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
fn check_fd(x: &Array2<f64>, grad: &Array2<f64>, f: impl Fn(&Array2<f64>) -> f64, what: &str) {
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

fn f64m(rows: usize, cols: usize, scale: f64, seed: u64) -> Array2<f64> {
    matrix(rows, cols, scale, seed).mapv(|v| v as f64)
}

#[test]
fn reference_gradients_match_finite_differences() {
    let x = f64m(3, 7, 2.0, 1);
    let y: Vec<u32> = vec![0, 6, 3];
    for beta in [-2.0, -0.5, 0.0, 0.7, 3.0] {
        let (_, g) = r::boltzmann_max(x.view(), beta);
        check_fd(
            &x,
            &g,
            |x| r::boltzmann_max(x.view(), beta).0.sum(),
            "boltzmann",
        );
    }
    for t in [0.5, 1.0, 3.0] {
        let (_, g) = r::soft_argmax(x.view(), t);
        check_fd(
            &x,
            &g,
            |x| r::soft_argmax(x.view(), t).0.sum(),
            "soft-argmax",
        );
        let (_, g) = r::smooth_accuracy(x.view(), &y, t);
        check_fd(
            &x,
            &g,
            |x| r::smooth_accuracy(x.view(), &y, t).0,
            "accuracy",
        );
        let (_, g) = r::smooth_f1_macro(x.view(), &y, t);
        check_fd(
            &x,
            &g,
            |x| r::smooth_f1_macro(x.view(), &y, t).0,
            "macro f1",
        );
    }
    let labels = Array2::from_shape_fn((3, 7), |(i, j)| ((i + j) % 3 == 0) as u8 as f64);
    let (_, g) = r::smooth_f1_binary(x.view(), labels.view());
    check_fd(
        &x,
        &g,
        |x| r::smooth_f1_binary(x.view(), labels.view()).0,
        "binary f1",
    );

    let b = f64m(3, 7, 2.0, 2);
    for form in [
        PairwiseForm::Erf { mu: 0.8 },
        PairwiseForm::Sqrt { mu: 0.5 },
        PairwiseForm::Acon { beta: 1.5 },
        PairwiseForm::Acon { beta: -0.7 },
    ] {
        let (_, ga, gb) = r::pairwise_max(x.view(), b.view(), form);
        check_fd(
            &x,
            &ga,
            |x| r::pairwise_max(x.view(), b.view(), form).0.sum(),
            form.name(),
        );
        check_fd(
            &b,
            &gb,
            |b| r::pairwise_max(x.view(), b.view(), form).0.sum(),
            form.name(),
        );
    }

    // Binary losses away from their kinks (|1 − y·f| > 0.05).
    let f = x.mapv(|v| {
        if (v.abs() - 1.0).abs() < 0.05 {
            v + 0.2
        } else {
            v
        }
    });
    let pm = Array2::from_shape_fn(
        (3, 7),
        |(i, j)| if (i * 7 + j) % 2 == 0 { 1.0 } else { -1.0 },
    );
    let soft = Array2::from_shape_fn((3, 7), |(i, j)| ((i * 7 + j) % 5) as f64 / 4.0);
    for loss in BinaryLoss::ALL {
        let (lab, pw) = if loss == BinaryLoss::Logistic {
            (&soft, 2.5)
        } else {
            (&pm, 1.0)
        };
        let g = Array2::from_shape_fn((3, 7), |i| r::binary_element(loss, f[i], lab[i], pw).1);
        let total = |f: &Array2<f64>| {
            ndarray::Zip::from(f)
                .and(lab)
                .fold(0.0, |s, &f, &y| s + r::binary_element(loss, f, y, pw).0)
        };
        check_fd(&f, &g, total, loss.name());
    }

    // Multi-margin away from z = 0.
    let xm = Array2::from_shape_fn((3, 7), |(i, j)| (i * 7 + j) as f64 * 0.37 % 2.3);
    let w = [0.5, 1.0, 2.0, 1.5, 0.3, 1.0, 0.9];
    for p in [1, 2] {
        let (_, g) = r::multi_margin(xm.view(), &y, p, 0.9, Some(&w));
        check_fd(
            &xm,
            &g,
            |x| r::multi_margin(x.view(), &y, p, 0.9, Some(&w)).0.sum(),
            "multi-margin",
        );
    }
}

#[test]
fn f64_erfc_matches_known_values() {
    // Abramowitz & Stegun table 7.1 / mpmath: erfc(0.5), erfc(1), erfc(2), erfc(3), erfc(5).
    for (x, want) in [
        (0.5, 0.479_500_122_186_953_5),
        (1.0, 0.157_299_207_050_285_13),
        (2.0, 0.004_677_734_981_047_266),
        (3.0, 2.209_049_699_858_544e-5),
        (5.0, 1.537_459_794_428_034_8e-12),
        (-1.0, 1.842_700_792_949_715),
    ] {
        let got = r::erfc(x);
        assert!(
            ((got - want) / want).abs() < 1e-13,
            "erfc({x}) = {got}, want {want}"
        );
    }
}

// ---- fast backends against the reference ---------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(24),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/surrogates.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn row_ops_match_reference(
        rows in 0usize..6, cols in 1usize..90, scale in 0.1f64..6.0, seed in any::<u64>(),
        beta in -3.0f32..3.0, t in 0.2f32..4.0,
    ) {
        let x = matrix(rows, cols, scale, seed);
        let y = classes(rows, cols, seed ^ 1);
        check_weighted(&x, beta as f64, false, &Surrogate::BoltzmannMax { x: x.view(), beta }, "boltzmann");
        check_weighted(&x, 1.0 / t as f64, true, &Surrogate::SoftArgmax { x: x.view(), temperature: t }, "soft-argmax");
        check_all(
            &Surrogate::SmoothAccuracy { logits: x.view(), targets: y.view(), temperature: t },
            rows * cols,
            "accuracy",
        );
        check_all(
            &Surrogate::SmoothF1Macro { logits: x.view(), targets: y.view(), temperature: t },
            rows * cols,
            "macro f1",
        );
        for p in [1, 2] {
            for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                let w = Array1::from_shape_fn(cols, |j| 0.5 + (j % 3) as f32);
                let options = MultiMarginOptions {
                    p, margin: 0.7, weight: Some(w.view()), reduction,
                };
                check_all(
                    &Surrogate::MultiMargin { logits: x.view(), targets: y.view(), options },
                    rows * cols,
                    "multi-margin",
                );
            }
        }
    }

    #[test]
    fn element_ops_match_reference(
        rows in 0usize..6, cols in 1usize..70, scale in 0.1f64..8.0, seed in any::<u64>(),
        mu in 0.05f32..5.0, beta in -4.0f32..4.0,
    ) {
        let a = matrix(rows, cols, scale, seed);
        let b = matrix(rows, cols, scale, seed ^ 7);
        for form in [PairwiseForm::Erf { mu }, PairwiseForm::Sqrt { mu }, PairwiseForm::Acon { beta }] {
            check_all(&Surrogate::PairwiseMax { a: a.view(), b: b.view(), form }, 1, form.name());
        }
        let mut rng = Rng(seed ^ 3);
        let hard = Array2::from_shape_fn((rows, cols), |_| (rng.unit() < 0.4) as u8 as f32);
        let soft = Array2::from_shape_fn((rows, cols), |_| rng.unit() as f32);
        check_all(
            &Surrogate::SmoothF1Binary { logits: a.view(), labels: hard.view() },
            rows * cols,
            "binary f1",
        );
        let w = Array2::from_shape_fn((1, cols), |(_, j)| 0.25 + (j % 4) as f32);
        let pw = Array1::from_shape_fn(cols, |j| (j % 3) as f32 * 1.5);
        for loss in BinaryLoss::ALL {
            for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                let logistic = loss == BinaryLoss::Logistic;
                let options = BinaryOptions {
                    weight: Some(w.view()),
                    pos_weight: logistic.then(|| pw.view()),
                    reduction,
                };
                let labels = if logistic { &soft } else { &hard };
                check_all(
                    &Surrogate::Binary { logits: a.view(), labels: labels.view(), loss, options },
                    rows * cols,
                    loss.name(),
                );
            }
        }
    }
}

#[test]
fn long_rows_and_many_rows_match_reference() {
    // One workgroup per row with many invocations, and many short rows per workgroup.
    for (rows, cols) in [(3, 20_000), (2_000, 3), (70, 257)] {
        let x = matrix(rows, cols, 3.0, 11);
        let y = classes(rows, cols, 12);
        check_weighted(
            &x,
            1.3,
            false,
            &Surrogate::BoltzmannMax {
                x: x.view(),
                beta: 1.3,
            },
            "boltzmann",
        );
        check_weighted(
            &x,
            1.0 / 0.7,
            true,
            &Surrogate::SoftArgmax {
                x: x.view(),
                temperature: 0.7,
            },
            "soft-argmax",
        );
        check_all(
            &Surrogate::SmoothF1Macro {
                logits: x.view(),
                targets: y.view(),
                temperature: 1.0,
            },
            rows * cols,
            "macro f1",
        );
        let options = MultiMarginOptions {
            p: 2,
            ..Default::default()
        };
        check_all(
            &Surrogate::MultiMargin {
                logits: x.view(),
                targets: y.view(),
                options,
            },
            rows * cols,
            "multi-margin",
        );
    }
}

// ---- limits and bounds ---------------------------------------------------------------------

#[test]
fn boltzmann_limits_and_bound() {
    let x = matrix(4, 50, 2.0, 5);
    let max: Vec<f32> = x
        .rows()
        .into_iter()
        .map(|r| r.fold(f32::MIN, |a, &b| a.max(b)))
        .collect();
    let min: Vec<f32> = x
        .rows()
        .into_iter()
        .map(|r| r.fold(f32::MAX, |a, &b| a.min(b)))
        .collect();
    let mean: Vec<f32> = x.rows().into_iter().map(|r| r.mean().unwrap()).collect();
    let ln_c = (50f32).ln();
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        let at = |beta: f32| b.boltzmann_max(x.view(), beta).unwrap().value.to_vec();
        // β = 0: the mean.
        for (v, m) in at(0.0).iter().zip(&mean) {
            assert!((v - m).abs() < 1e-5, "{}: {v} vs mean {m}", b.name());
        }
        // max − ln C / β ≤ f ≤ max (f = lse − H(p)/β and H ≤ ln C), the gap closing as β grows.
        let mut last_gap = f32::INFINITY;
        for beta in [0.5f32, 2.0, 8.0, 32.0, 1000.0] {
            let v = at(beta);
            let gap = v.iter().zip(&max).map(|(v, m)| m - v).fold(0.0, f32::max);
            for (v, m) in v.iter().zip(&max) {
                assert!(
                    *v <= m + 1e-5 && *v >= m - ln_c / beta - 1e-5,
                    "{}: β {beta}",
                    b.name()
                );
            }
            assert!(gap <= last_gap + 1e-6, "{}: gap grew at β {beta}", b.name());
            last_gap = gap;
        }
        assert!(last_gap < 1e-4, "{}: β = 1000 is not the max", b.name());
        // β → −∞: the min.
        for (v, m) in at(-1000.0).iter().zip(&min) {
            assert!((v - m).abs() < 1e-4, "{}: {v} vs min {m}", b.name());
        }
    }
}

#[test]
fn pairwise_limits_and_bounds() {
    let a = matrix(5, 40, 3.0, 8);
    let bm = matrix(5, 40, 3.0, 9);
    let hi = ndarray::Zip::from(&a)
        .and(&bm)
        .map_collect(|&a, &b| a.max(b));
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        for k in [0.5f32, 4.0, 64.0, 4096.0] {
            let gap = |form| -> Array2<f32> {
                let Value::Matrix(v) = b.pairwise_max(a.view(), bm.view(), form).unwrap().value
                else {
                    panic!("pairwise returns a matrix")
                };
                &v - &hi
            };
            let slack = 1e-5 * (1.0 + 12.0);
            // erf: f − max ∈ [−0.1202/μ, 0]; sqrt: (0, μ/2]; ACON: [−0.2785/β, 0].
            let e = gap(PairwiseForm::Erf { mu: k });
            assert!(
                e.iter().all(|&g| g <= slack && g >= -0.1202 / k - slack),
                "{} erf μ {k}",
                b.name()
            );
            let s = gap(PairwiseForm::Sqrt { mu: 1.0 / k });
            assert!(
                s.iter().all(|&g| g >= -slack && g <= 0.5 / k + slack),
                "{} sqrt μ {}",
                b.name(),
                1.0 / k
            );
            let c = gap(PairwiseForm::Acon { beta: k });
            assert!(
                c.iter().all(|&g| g <= slack && g >= -0.2785 / k - slack),
                "{} acon β {k}",
                b.name()
            );
        }
    }
    // The constants are the maxima they claim to be: z·erfc(z)/2 and t·σ(−t).
    let zmax = (1..5000)
        .map(|i| i as f64 / 1000.0)
        .map(|z| z * r::erfc(z) / 2.0)
        .fold(0.0, f64::max);
    assert!((zmax - 0.1202).abs() < 1e-4, "{zmax}");
    let tmax = (1..10000)
        .map(|i| i as f64 / 1000.0)
        .map(|t| t * r::sigmoid(-t))
        .fold(0.0, f64::max);
    assert!((tmax - 0.2785).abs() < 1e-4, "{tmax}");
}

#[test]
fn soft_argmax_accuracy_and_f1_reach_the_hard_metrics() {
    let x = matrix(40, 6, 2.0, 21);
    let y = classes(40, 6, 22);
    let argmax: Vec<usize> = x
        .rows()
        .into_iter()
        .map(|r| (0..6).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap())
        .collect();
    // Hard metrics, computed here from their definitions.
    let acc = argmax
        .iter()
        .zip(&y)
        .filter(|(a, y)| **a as i64 == **y)
        .count() as f32
        / 40.0;
    let mut f1 = 0.0;
    for c in 0..6 {
        let tp = (0..40)
            .filter(|&i| argmax[i] == c && y[i] == c as i64)
            .count() as f32;
        let pred = argmax.iter().filter(|&&a| a == c).count() as f32;
        let cnt = y.iter().filter(|&&t| t == c as i64).count() as f32;
        if pred + cnt > 0.0 {
            f1 += 2.0 * tp / (pred + cnt);
        }
    }
    let macro_f1 = f1 / 6.0;
    let mut rng = Rng(5);
    let labels = Array2::from_shape_fn((40, 6), |_| (rng.unit() < 0.3) as u8 as f32);
    let pos = x.mapv(|v| (v > 0.0) as u8 as f32);
    let tp: f32 = (&pos * &labels).sum();
    let bin_f1 = 2.0 * tp / (pos.sum() + labels.sum());
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        let sa = b.soft_argmax(x.view(), 1e-3).unwrap().value.to_vec();
        for (s, a) in sa.iter().zip(&argmax) {
            assert!(
                (s - *a as f32).abs() < 1e-3,
                "{}: soft-argmax {s} vs {a}",
                b.name()
            );
        }
        let a = b
            .smooth_accuracy(x.view(), y.view(), 1e-3)
            .unwrap()
            .value
            .scalar()
            .unwrap();
        assert!(
            (a - acc).abs() < 1e-3,
            "{}: accuracy {a} vs {acc}",
            b.name()
        );
        let f = b
            .smooth_f1_macro(x.view(), y.view(), 1e-3)
            .unwrap()
            .value
            .scalar()
            .unwrap();
        assert!(
            (f - macro_f1).abs() < 1e-3,
            "{}: macro F1 {f} vs {macro_f1}",
            b.name()
        );
        let sharp = x.mapv(|v| v * 1e4);
        let f = b
            .smooth_f1(sharp.view(), labels.view())
            .unwrap()
            .value
            .scalar()
            .unwrap();
        assert!(
            (f - bin_f1).abs() < 1e-3,
            "{}: binary F1 {f} vs {bin_f1}",
            b.name()
        );
        // And smooth at T = 1: strictly between 0 and 1, not the hard value.
        let a1 = b
            .smooth_accuracy(x.view(), y.view(), 1.0)
            .unwrap()
            .value
            .scalar()
            .unwrap();
        assert!(
            a1 > 0.0 && a1 < 1.0 && (a1 - acc).abs() > 1e-3,
            "{}: {a1}",
            b.name()
        );
    }
}

// ---- PyTorch semantics ---------------------------------------------------------------------

#[test]
fn multi_margin_matches_pytorch_docs_example() {
    // torch.nn.MultiMarginLoss docs: x = [[0.1, 0.2, 0.4, 0.8]], y = [3] gives
    // 1/4 ((1 − (0.8 − 0.1)) + (1 − (0.8 − 0.2)) + (1 − (0.8 − 0.4))) = 0.325.
    let x = array![[0.1f32, 0.2, 0.4, 0.8]];
    let y = array![3i64];
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        let o = b
            .multi_margin(x.view(), y.view(), MultiMarginOptions::default())
            .unwrap();
        assert!(
            (o.value.scalar().unwrap() - 0.325).abs() < 1e-6,
            "{}",
            b.name()
        );
        // Each violating class has gradient 1/4; the target −3/4.
        let g = o.grad.row(0).to_vec();
        for (got, want) in g.iter().zip([0.25, 0.25, 0.25, -0.75]) {
            assert!((got - want).abs() < 1e-6, "{}: {g:?}", b.name());
        }
    }
}

fn bce<'a>(
    b: &dyn Backend,
    x: ArrayView2<'a, f32>,
    y: ArrayView2<'a, f32>,
    o: BinaryOptions<'a>,
) -> SurrogateOutput {
    b.binary_loss(x, y, BinaryLoss::Logistic, o).unwrap()
}

#[test]
fn logistic_loss_matches_pytorch_semantics() {
    let ln2 = std::f32::consts::LN_2;
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        // x = 0: ln 2 whatever the label; mean over elements; gradient (σ − y)/N.
        let x = Array2::<f32>::zeros((2, 2));
        let y = array![[1.0f32, 0.0], [0.5, 1.0]];
        let o = bce(b, x.view(), y.view(), BinaryOptions::default());
        assert!(
            (o.value.scalar().unwrap() - ln2).abs() < 1e-6,
            "{}",
            b.name()
        );
        assert!((o.grad[[0, 0]] - (0.5 - 1.0) / 4.0).abs() < 1e-7);
        // pos_weight multiplies the positive term: y = 1, pw = 3 → 3 ln 2; sum reduction.
        let pw = array![3.0f32, 1.0];
        let o = bce(
            b,
            x.view(),
            y.view(),
            BinaryOptions {
                pos_weight: Some(pw.view()),
                reduction: Reduction::None,
                ..Default::default()
            },
        );
        let Value::Matrix(l) = &o.value else { panic!() };
        assert!((l[[0, 0]] - 3.0 * ln2).abs() < 1e-6 && (l[[0, 1]] - ln2).abs() < 1e-6);
        // grad = l_w σ − pw·y = 3·0.5 − 3 = −1.5 at [0, 0].
        assert!((o.grad[[0, 0]] + 1.5).abs() < 1e-6, "{}", b.name());
        // weight broadcast per row ([2, 1]); sum.
        let w = array![[2.0f32], [0.0]];
        let o = bce(
            b,
            x.view(),
            y.view(),
            BinaryOptions {
                weight: Some(w.view()),
                reduction: Reduction::Sum,
                ..Default::default()
            },
        );
        assert!(
            (o.value.scalar().unwrap() - 4.0 * ln2).abs() < 1e-5,
            "{}",
            b.name()
        );
        // Finite and exact at ±1e4: the right side costs ~0, the wrong side 1e4.
        let x = array![[1e4f32, -1e4, 1e4, -1e4]];
        let y = array![[1.0f32, 0.0, 0.0, 1.0]];
        let o = bce(
            b,
            x.view(),
            y.view(),
            BinaryOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        );
        assert_eq!(o.value.to_vec(), vec![0.0, 0.0, 1e4, 1e4], "{}", b.name());
        assert_eq!(
            o.grad.row(0).to_vec(),
            vec![0.0, 0.0, 1.0, -1.0],
            "{}",
            b.name()
        );
        // PyTorch's infinities: +inf with y < 1 is +inf, with y = 1 NaN (0·inf); −inf NaN.
        let x = array![[f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]];
        let y = array![[0.0f32, 1.0, 1.0, 0.0]];
        let o = bce(
            b,
            x.view(),
            y.view(),
            BinaryOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        );
        let l = o.value.to_vec();
        assert!(
            l[0] == f32::INFINITY && l[1].is_nan() && l[2].is_nan() && l[3].is_nan(),
            "{}: {l:?}",
            b.name()
        );
        let g = o.grad.row(0).to_vec();
        assert!(
            g[0] == 1.0 && g[1] == 0.0 && g[2] == -1.0 && g[3].is_nan(),
            "{}: {g:?}",
            b.name()
        );
    }
}

#[test]
fn margin_losses_at_known_points() {
    // f = 0.5, y = +1: hinge 0.5, squared hinge 0.25, exponential e^-0.5, squared 0.25;
    // y = 0 is read as −1: hinge 1.5.
    let x = array![[0.5f32, 0.5]];
    let y = array![[1.0f32, 0.0]];
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        for (loss, want, grad) in [
            (BinaryLoss::Hinge, [0.5, 1.5], [-1.0, 1.0]),
            (BinaryLoss::SquaredHinge, [0.25, 2.25], [-1.0, 3.0]),
            (
                BinaryLoss::Exponential,
                [(-0.5f32).exp(), 0.5f32.exp()],
                [-(-0.5f32).exp(), 0.5f32.exp()],
            ),
            (BinaryLoss::Squared, [0.25, 2.25], [-1.0, 3.0]),
        ] {
            let o = b
                .binary_loss(
                    x.view(),
                    y.view(),
                    loss,
                    BinaryOptions {
                        reduction: Reduction::None,
                        ..Default::default()
                    },
                )
                .unwrap();
            for (g, w) in o.value.to_vec().iter().zip(want) {
                assert!(
                    (g - w).abs() < 1e-6,
                    "{} {}: {g} vs {w}",
                    b.name(),
                    loss.name()
                );
            }
            for (g, w) in o.grad.row(0).iter().zip(grad) {
                assert!(
                    (g - w).abs() < 1e-6,
                    "{} {} grad: {g} vs {w}",
                    b.name(),
                    loss.name()
                );
            }
        }
    }
}

// ---- edge cases ----------------------------------------------------------------------------

#[test]
fn non_finite_inputs_follow_the_documented_rules() {
    let inf = f32::INFINITY;
    let x = array![
        [1.0f32, f32::NEG_INFINITY, 2.0],
        [f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY],
        [1.0, inf, 0.0],
        [f32::NAN, 0.0, 1.0],
        [0.5, -0.5, 1e30],
    ];
    let y = array![0i64, 1, 2, 0, 2];
    let calls = [
        Surrogate::BoltzmannMax {
            x: x.view(),
            beta: 1.5,
        },
        Surrogate::BoltzmannMax {
            x: x.view(),
            beta: -1.5,
        },
        Surrogate::BoltzmannMax {
            x: x.view(),
            beta: 0.0,
        },
        Surrogate::SoftArgmax {
            x: x.view(),
            temperature: 0.5,
        },
        Surrogate::SmoothAccuracy {
            logits: x.view(),
            targets: y.view(),
            temperature: 1.0,
        },
        Surrogate::SmoothF1Macro {
            logits: x.view(),
            targets: y.view(),
            temperature: 1.0,
        },
        Surrogate::MultiMargin {
            logits: x.view(),
            targets: y.view(),
            options: MultiMarginOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        },
        Surrogate::PairwiseMax {
            a: x.view(),
            b: x.t(),
            form: PairwiseForm::Erf { mu: 1.0 },
        },
    ];
    // The reference spells the rules out; every backend must put NaN and inf where it does.
    let want = surrogate_f64(&calls[0]).unwrap();
    // Boltzmann β > 0: −inf entries weigh 0, +inf / NaN / all −inf rows are NaN.
    assert!(want.value.to_vec()[0].is_finite() && want.value.to_vec()[1].is_nan());
    assert!(want.value.to_vec()[2].is_nan() && want.value.to_vec()[3].is_nan());
    assert!((want.value.to_vec()[4] / 1e30 - 1.0).abs() < 1e-7);
    for (k, call) in calls.iter().enumerate() {
        if k == 7 {
            continue; // needs a square matrix; below
        }
        check_all(call, 3, &format!("non-finite call {k} ({})", call.name()));
    }
    let sq = array![[1.0f32, inf], [f32::NAN, -2.0]];
    check_all(
        &Surrogate::PairwiseMax {
            a: sq.view(),
            b: sq.t(),
            form: PairwiseForm::Sqrt { mu: 0.1 },
        },
        1,
        "pairwise non-finite",
    );
    let labels = array![
        [1.0f32, 0.0, 1.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0]
    ];
    // σ(±inf) is a hard prediction; the NaN row makes F1 NaN.
    check_all(
        &Surrogate::SmoothF1Binary {
            logits: x.view(),
            labels: labels.view(),
        },
        15,
        "binary f1 non-finite",
    );
    let finite_rows = x.slice(ndarray::s![0..3, ..]);
    let f = Cpu::new()
        .smooth_f1(finite_rows, labels.slice(ndarray::s![0..3, ..]))
        .unwrap();
    assert!(f.value.scalar().unwrap().is_finite());
}

#[test]
fn empty_inputs() {
    let e = Array2::<f32>::zeros((0, 5));
    let none = Array1::<i64>::zeros(0);
    let c0 = Array2::<f32>::zeros((3, 0));
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        assert_eq!(
            b.boltzmann_max(e.view(), 1.0).unwrap().value.to_vec().len(),
            0
        );
        // A row with no entries has no finite value: NaN, like the mean of nothing.
        assert!(b
            .soft_argmax(c0.view(), 1.0)
            .unwrap()
            .value
            .to_vec()
            .iter()
            .all(|v| v.is_nan()));
        assert!(b
            .smooth_accuracy(e.view(), none.view(), 1.0)
            .unwrap()
            .value
            .scalar()
            .unwrap()
            .is_nan());
        // No elements: F1's denominator is 0, so 0 (zero_division = 0).
        assert_eq!(
            b.smooth_f1(e.view(), e.view()).unwrap().value.scalar(),
            Some(0.0)
        );
        let o = b
            .binary_loss(
                e.view(),
                e.view(),
                BinaryLoss::Logistic,
                BinaryOptions::default(),
            )
            .unwrap();
        assert!(
            o.value.scalar().unwrap().is_nan(),
            "{}: mean of nothing",
            b.name()
        );
        let o = b
            .binary_loss(
                e.view(),
                e.view(),
                BinaryLoss::Hinge,
                BinaryOptions {
                    reduction: Reduction::Sum,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(o.value.scalar(), Some(0.0));
        let o = b
            .multi_margin(e.view(), none.view(), MultiMarginOptions::default())
            .unwrap();
        assert!(o.value.scalar().unwrap().is_nan());
        assert_eq!(o.grad.dim(), (0, 5));
    }
}

#[test]
fn bad_input_is_a_clear_error_on_every_backend() {
    let x = Array2::<f32>::zeros((2, 3));
    let y_bad = array![0i64, 3];
    let neg = array![-1i64, 0];
    let lab_bad = array![[0.0f32, 1.0, 2.0], [0.0, 0.0, 0.0]];
    let pm_bad = array![[1.0f32, -1.0, 0.5], [0.0, 0.0, 0.0]];
    let short = Array2::<f32>::zeros((2, 2));
    let w_bad = Array2::<f32>::zeros((3, 1));
    let pw_neg = array![1.0f32, -1.0, 1.0];
    let cases: Vec<(Surrogate, &str)> = vec![
        (
            Surrogate::SmoothAccuracy {
                logits: x.view(),
                targets: y_bad.view(),
                temperature: 1.0,
            },
            "target[1] = 3",
        ),
        (
            Surrogate::SmoothF1Macro {
                logits: x.view(),
                targets: neg.view(),
                temperature: 1.0,
            },
            "target[0] = -1",
        ),
        (
            Surrogate::SoftArgmax {
                x: x.view(),
                temperature: 0.0,
            },
            "temperature",
        ),
        (
            Surrogate::BoltzmannMax {
                x: x.view(),
                beta: f32::NAN,
            },
            "beta",
        ),
        (
            Surrogate::PairwiseMax {
                a: x.view(),
                b: short.view(),
                form: PairwiseForm::Erf { mu: 1.0 },
            },
            "b has shape [2, 2]",
        ),
        (
            Surrogate::PairwiseMax {
                a: x.view(),
                b: x.view(),
                form: PairwiseForm::Sqrt { mu: 0.0 },
            },
            "mu",
        ),
        (
            Surrogate::SmoothF1Binary {
                logits: x.view(),
                labels: lab_bad.view(),
            },
            "label [0, 2] = 2",
        ),
        (
            Surrogate::Binary {
                logits: x.view(),
                labels: lab_bad.view(),
                loss: BinaryLoss::Logistic,
                options: BinaryOptions::default(),
            },
            "label [0, 2] = 2",
        ),
        (
            Surrogate::Binary {
                logits: x.view(),
                labels: pm_bad.view(),
                loss: BinaryLoss::Hinge,
                options: BinaryOptions::default(),
            },
            "label [0, 2] = 0.5",
        ),
        (
            Surrogate::Binary {
                logits: x.view(),
                labels: x.view(),
                loss: BinaryLoss::Logistic,
                options: BinaryOptions {
                    weight: Some(w_bad.view()),
                    ..Default::default()
                },
            },
            "does not broadcast",
        ),
        (
            Surrogate::Binary {
                logits: x.view(),
                labels: x.view(),
                loss: BinaryLoss::Logistic,
                options: BinaryOptions {
                    pos_weight: Some(pw_neg.view()),
                    ..Default::default()
                },
            },
            "pos_weight[1] = -1",
        ),
        (
            Surrogate::Binary {
                logits: x.view(),
                labels: x.view(),
                loss: BinaryLoss::Hinge,
                options: BinaryOptions {
                    pos_weight: Some(pw_neg.view()),
                    ..Default::default()
                },
            },
            "logistic loss only",
        ),
        (
            Surrogate::MultiMargin {
                logits: x.view(),
                targets: neg.view(),
                options: MultiMarginOptions {
                    p: 3,
                    ..Default::default()
                },
            },
            "p must be 1 or 2",
        ),
        (
            Surrogate::MultiMargin {
                logits: x.view(),
                targets: y_bad.view(),
                options: MultiMarginOptions::default(),
            },
            "target[1] = 3",
        ),
    ];
    for b in fast_backends()
        .into_iter()
        .chain([&Reference as &dyn Backend])
    {
        for (call, want) in &cases {
            let e = b.surrogate(call).expect_err(want).to_string();
            assert!(
                e.contains(want),
                "{} {}: {e:?} lacks {want:?}",
                b.name(),
                call.name()
            );
        }
    }
}

#[test]
fn inputs_larger_than_one_binding_are_chunked() {
    // 1100 × 32000 floats = 141 MB: more than lavapipe's 128 MiB storage binding, so the GPU
    // runs it in chunks of rows (the pairwise max, whose gradient buffer holds two blocks,
    // in chunks half as long); every chunk must land in its place.
    let (rows, cols) = (1100, 32_000);
    let x = matrix(rows, cols, 2.0, 31);
    let b = matrix(rows, cols, 2.0, 32);
    let y = classes(rows, cols, 33);
    check_weighted(
        &x,
        0.8,
        false,
        &Surrogate::BoltzmannMax {
            x: x.view(),
            beta: 0.8,
        },
        "boltzmann",
    );
    check_all(
        &Surrogate::SmoothF1Macro {
            logits: x.view(),
            targets: y.view(),
            temperature: 1.0,
        },
        rows * cols,
        "macro f1",
    );
    check_all(
        &Surrogate::PairwiseMax {
            a: x.view(),
            b: b.view(),
            form: PairwiseForm::Acon { beta: 2.0 },
        },
        1,
        "pairwise",
    );
}
