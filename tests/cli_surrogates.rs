//! The `smoothmax` binary's surrogate ops: round trips on every device, and every bad input
//! exits non-zero with a one-line message and writes nothing.

mod common;

use common::cli::{assert_rejected, devices, eval, scratch};
use common::{assert_close_1d, assert_close_2d, logits};
use ndarray::{Array1, Array2, ArrayD};
use ndarray_npy::{read_npy, write_npy};

/// Every surrogate op through the binary on every device: the files it writes equal the
/// library's reference result within the tolerance.
#[test]
fn surrogate_ops_round_trip_on_every_device() {
    use smoothmax::surrogates::reference::surrogate_f64;
    use smoothmax::{
        BinaryLoss, BinaryOptions, ElementSmoothing, MultiMarginOptions, PairwiseForm, Reduction,
        Surrogate,
    };
    let dir = scratch("surrogates");
    let (rows, cols) = (9, 13);
    let x = logits(rows, cols, 2.0, 0.0, false, 3);
    let other = logits(rows, cols, 2.0, 0.5, false, 4);
    let y: Array1<i64> = (0..rows as i64).map(|i| (i * 5) % cols as i64).collect();
    let soft = Array2::from_shape_fn((rows, cols), |(i, j)| ((i + 2 * j) % 5) as f32 / 4.0);
    let pm = Array2::from_shape_fn((rows, cols), |(i, j)| ((i + j) % 2) as f32);
    let w = Array1::from_shape_fn(cols, |j| 0.5 + (j % 3) as f32);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    write_npy(path("x.npy"), &x).unwrap();
    write_npy(path("b.npy"), &other).unwrap();
    write_npy(path("y.npy"), &y).unwrap();
    write_npy(path("soft.npy"), &soft).unwrap();
    write_npy(path("pm.npy"), &pm).unwrap();
    write_npy(path("w.npy"), &w).unwrap();
    let w_row = w.view().insert_axis(ndarray::Axis(0));
    let cases: Vec<(&str, Vec<String>, Surrogate, &str)> = vec![
        (
            "boltzmann-max",
            vec!["--beta".into(), "-0.7".into()],
            Surrogate::BoltzmannMax {
                x: x.view(),
                beta: -0.7,
            },
            "output.npy",
        ),
        (
            "soft-argmax",
            vec!["--temperature".into(), "0.5".into()],
            Surrogate::SoftArgmax {
                x: x.view(),
                temperature: 0.5,
            },
            "output.npy",
        ),
        (
            "smooth-accuracy",
            vec!["--target".into(), path("y.npy")],
            Surrogate::SmoothAccuracy {
                logits: x.view(),
                targets: y.view(),
                temperature: 1.0,
            },
            "output.npy",
        ),
        (
            "smooth-f1-macro",
            vec![
                "--target".into(),
                path("y.npy"),
                "--temperature".into(),
                "2".into(),
            ],
            Surrogate::SmoothF1Macro {
                logits: x.view(),
                targets: y.view(),
                temperature: 2.0,
            },
            "output.npy",
        ),
        (
            "smooth-f1",
            vec!["--target".into(), path("pm.npy")],
            Surrogate::SmoothF1Binary {
                logits: x.view(),
                labels: pm.view(),
            },
            "output.npy",
        ),
        (
            "pairwise-max",
            vec![
                "--other".into(),
                path("b.npy"),
                "--form".into(),
                "sqrt".into(),
                "--mu".into(),
                "0.3".into(),
            ],
            Surrogate::PairwiseMax {
                a: x.view(),
                b: other.view(),
                form: PairwiseForm::Sqrt { mu: 0.3 },
            },
            "output.npy",
        ),
        (
            "pairwise-max",
            vec![
                "--other".into(),
                path("b.npy"),
                "--form".into(),
                "logcosh".into(),
                "--k".into(),
                "2".into(),
            ],
            Surrogate::PairwiseMax {
                a: x.view(),
                b: other.view(),
                form: PairwiseForm::LogCosh { k: 2.0 },
            },
            "output.npy",
        ),
        (
            "binary-cross-entropy",
            vec![
                "--target".into(),
                path("soft.npy"),
                "--weight".into(),
                path("w.npy"),
                "--pos-weight".into(),
                path("w.npy"),
                "--reduction".into(),
                "sum".into(),
            ],
            Surrogate::Binary {
                logits: x.view(),
                labels: soft.view(),
                loss: BinaryLoss::Logistic,
                options: BinaryOptions {
                    weight: Some(w_row),
                    pos_weight: Some(w.view()),
                    reduction: Reduction::Sum,
                },
            },
            "loss.npy",
        ),
        (
            "squared-hinge",
            vec![
                "--target".into(),
                path("pm.npy"),
                "--reduction".into(),
                "none".into(),
            ],
            Surrogate::Binary {
                logits: x.view(),
                labels: pm.view(),
                loss: BinaryLoss::SquaredHinge,
                options: BinaryOptions {
                    reduction: Reduction::None,
                    ..Default::default()
                },
            },
            "loss.npy",
        ),
        (
            "multi-margin",
            vec![
                "--target".into(),
                path("y.npy"),
                "--p".into(),
                "2".into(),
                "--margin".into(),
                "0.5".into(),
                "--weight".into(),
                path("w.npy"),
            ],
            Surrogate::MultiMargin {
                logits: x.view(),
                targets: y.view(),
                options: MultiMarginOptions {
                    p: 2,
                    margin: 0.5,
                    weight: Some(w.view()),
                    reduction: Reduction::Mean,
                },
            },
            "loss.npy",
        ),
        (
            "smooth-abs",
            vec!["--k".into(), "3".into()],
            Surrogate::Smoothing {
                x: x.view(),
                op: ElementSmoothing::Abs { k: 3.0 },
            },
            "output.npy",
        ),
        (
            "smooth-floor",
            vec!["--t".into(), "2.5".into()],
            Surrogate::Smoothing {
                x: x.view(),
                op: ElementSmoothing::Floor { t: 2.5 },
            },
            "output.npy",
        ),
    ];
    for dev in devices() {
        for (op, extra, call, value_file) in &cases {
            let out = dir.join(format!("out-{op}-{dev}"));
            let mut args: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
            args.extend(["--device", dev]);
            let o = eval(op, &dir.join("x.npy"), &args, &out);
            assert!(
                o.status.success(),
                "{op} on {dev}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let want = surrogate_f64(call).unwrap();
            let got: ArrayD<f32> = read_npy(out.join(value_file)).unwrap();
            assert_eq!(got.shape(), want.value.shape().as_slice(), "{op} on {dev}");
            let got = Array1::from_iter(got.iter().copied());
            assert_close_1d(
                got.view(),
                Array1::from(want.value.to_vec()).view(),
                rows * cols,
                op,
            );
            let grad: Array2<f32> = read_npy(out.join("grad.npy")).unwrap();
            assert_close_2d(grad.view(), want.grad.view(), op);
            if let Some(gb) = &want.grad_b {
                let g: Array2<f32> = read_npy(out.join("grad_b.npy")).unwrap();
                assert_close_2d(g.view(), gb.view(), op);
            }
        }
    }
}

#[test]
fn surrogate_bad_inputs_exit_non_zero_and_write_nothing() {
    let dir = scratch("surrogates-bad");
    let out = dir.join("out");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    write_npy(p("x.npy"), &logits(3, 4, 1.0, 0.0, false, 1)).unwrap();
    write_npy(p("y.npy"), &ndarray::array![0i64, 4, 1]).unwrap();
    write_npy(p("lab.npy"), &Array2::<f32>::from_elem((3, 4), 2.0)).unwrap();
    write_npy(p("b.npy"), &Array2::<f32>::zeros((3, 5))).unwrap();
    let x = p("x.npy");
    for (args, needle) in [
        (
            vec!["eval", "smooth-accuracy", "--input", &x],
            "--target <TARGET>",
        ),
        (
            vec![
                "eval",
                "smooth-accuracy",
                "--input",
                &x,
                "--target",
                &p("y.npy"),
            ],
            "target[1] = 4",
        ),
        (
            vec![
                "eval",
                "multi-margin",
                "--input",
                &x,
                "--target",
                &p("lab.npy"),
            ],
            "integer class targets",
        ),
        (
            vec![
                "eval",
                "binary-cross-entropy",
                "--input",
                &x,
                "--target",
                &p("lab.npy"),
            ],
            "label [0, 0] = 2",
        ),
        (
            vec!["eval", "hinge", "--input", &x, "--target", &p("lab.npy")],
            "-1 or +1",
        ),
        (
            vec!["eval", "pairwise-max", "--input", &x],
            "--other <OTHER>",
        ),
        (
            vec![
                "eval",
                "pairwise-max",
                "--input",
                &x,
                "--other",
                &p("b.npy"),
            ],
            "shape [3, 5]",
        ),
        (
            vec![
                "eval",
                "pairwise-max",
                "--input",
                &x,
                "--other",
                &x,
                "--mu",
                "-1",
            ],
            "mu must be",
        ),
        (
            vec!["eval", "boltzmann-max", "--input", &x, "--beta", "inf"],
            "beta must be finite",
        ),
    ] {
        assert_rejected(&args, &[], needle, &out);
    }
}

/// Inputs of any shape: 3-D scores with labels of their shape and targets of their leading
/// shape give, in those shapes, exactly what the same data flattened to `[B, C]` gives.
#[test]
fn surrogates_take_nd_inputs() {
    let dir = scratch("surrogates-nd");
    let (rows, cols) = (6, 7);
    let x = logits(rows, cols, 2.0, 0.0, false, 5);
    let b = logits(rows, cols, 2.0, 0.5, false, 6);
    let y: Array1<i64> = (0..rows as i64).map(|i| (i * 3) % cols as i64).collect();
    let soft = Array2::from_shape_fn((rows, cols), |(i, j)| ((i + 2 * j) % 5) as f32 / 4.0);
    let w = Array1::from_shape_fn(cols, |j| 0.5 + (j % 3) as f32);
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let nd = |a: &Array2<f32>| a.clone().into_shape_with_order(vec![2, 3, cols]).unwrap();
    write_npy(p("x.npy"), &x).unwrap();
    write_npy(p("x3.npy"), &nd(&x)).unwrap();
    write_npy(p("b.npy"), &b).unwrap();
    write_npy(p("b3.npy"), &nd(&b)).unwrap();
    write_npy(p("y.npy"), &y).unwrap();
    write_npy(
        p("y3.npy"),
        &y.clone().into_shape_with_order(vec![2, 3]).unwrap(),
    )
    .unwrap();
    write_npy(p("soft.npy"), &soft).unwrap();
    write_npy(p("soft3.npy"), &nd(&soft)).unwrap();
    write_npy(p("w.npy"), &w).unwrap();
    // (op, options with the 2-D files, options with the 3-D ones, value file, value shape)
    type Case<'a> = (&'a str, Vec<String>, Vec<String>, &'a str, Vec<usize>);
    let cases: Vec<Case> = vec![
        ("soft-argmax", vec![], vec![], "output.npy", vec![2, 3]),
        (
            "smooth-accuracy",
            vec!["--target".into(), p("y.npy")],
            vec!["--target".into(), p("y3.npy")],
            "output.npy",
            vec![],
        ),
        (
            "pairwise-max",
            vec!["--other".into(), p("b.npy")],
            vec!["--other".into(), p("b3.npy")],
            "output.npy",
            vec![2, 3, cols],
        ),
        (
            "binary-cross-entropy",
            vec![
                "--target".into(),
                p("soft.npy"),
                "--weight".into(),
                p("w.npy"),
                "--reduction".into(),
                "none".into(),
            ],
            vec![
                "--target".into(),
                p("soft3.npy"),
                "--weight".into(),
                p("w.npy"),
                "--reduction".into(),
                "none".into(),
            ],
            "loss.npy",
            vec![2, 3, cols],
        ),
        (
            "multi-margin",
            vec![
                "--target".into(),
                p("y.npy"),
                "--reduction".into(),
                "none".into(),
            ],
            vec![
                "--target".into(),
                p("y3.npy"),
                "--reduction".into(),
                "none".into(),
            ],
            "loss.npy",
            vec![2, 3],
        ),
    ];
    for (op, flat_args, nd_args, value, shape) in cases {
        let run = |input: &str, args: &[String], out: &str| {
            let args: Vec<&str> = ["--device", "cpu"]
                .into_iter()
                .chain(args.iter().map(|s| s.as_str()))
                .collect();
            let o = eval(op, std::path::Path::new(&p(input)), &args, &dir.join(out));
            assert!(
                o.status.success(),
                "{op} {input}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        run("x.npy", &flat_args, "flat");
        run("x3.npy", &nd_args, "nd");
        let v2: ArrayD<f32> = read_npy(dir.join("flat").join(value)).unwrap();
        let v3: ArrayD<f32> = read_npy(dir.join("nd").join(value)).unwrap();
        assert_eq!(v3.shape(), shape.as_slice(), "{op} value shape");
        assert_eq!(
            v3.iter().collect::<Vec<_>>(),
            v2.iter().collect::<Vec<_>>(),
            "{op} value"
        );
        let g2: ArrayD<f32> = read_npy(dir.join("flat").join("grad.npy")).unwrap();
        let g3: ArrayD<f32> = read_npy(dir.join("nd").join("grad.npy")).unwrap();
        assert_eq!(g3.shape(), &[2, 3, cols], "{op} grad shape");
        assert_eq!(
            g3.iter().collect::<Vec<_>>(),
            g2.iter().collect::<Vec<_>>(),
            "{op} grad"
        );
    }
}
