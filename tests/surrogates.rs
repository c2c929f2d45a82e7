//! The smooth surrogates and margin losses: the f64 reference's gradients against central
//! finite differences, every fast backend against the reference on generated shapes, the
//! limits and bounds of each smooth form, PyTorch's semantics, edge cases and bad input.

mod common;

use common::surrogates::*;

use common::Rng;
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use smoothmax::surrogates::reference::{self as r};
use smoothmax::{
    BinaryLoss, BinaryOptions, MultiMarginOptions, PairwiseForm, Reduction, Surrogate,
};

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
        PairwiseForm::LogCosh { k: 0.8 },
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
        for form in [
            PairwiseForm::Erf { mu }, PairwiseForm::Sqrt { mu }, PairwiseForm::Acon { beta },
            PairwiseForm::LogCosh { k: mu },
        ] {
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
