//! The smooth surrogates on non-finite, empty and bad input, and on inputs larger than one GPU
//! binding, on every backend.

mod common;

use common::surrogates::*;

use common::fast_backends;
use ndarray::{array, Array1, Array2};
use smoothmax::surrogates::reference::surrogate_f64;
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, Cpu, MultiMarginOptions, PairwiseForm, Reduction,
    Reference, Surrogate,
};

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
        .chain([common::sized(&Reference)])
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
        .chain([common::sized(&Reference)])
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
