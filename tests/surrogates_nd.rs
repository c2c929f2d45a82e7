//! The surrogates on scores of any shape (`Backend::surrogate_tensor`): every op, on every
//! backend, in f32 and bf16, on 3-D and 1-D scores in three layouts (contiguous, a strided
//! last axis, swapped leading axes), with targets of the leading shape, labels of the full
//! shape and weights broadcast to it. Each result must equal, bit for bit and in the caller's
//! shape, the matrix call on inputs this test flattens itself (row-major over the leading
//! axes; the matrix calls are checked against the f64 reference by surrogates.rs,
//! surrogates_edges.rs and dtypes.rs); one op is also checked against the reference directly.
//! Shape errors are clear.

mod common;

use common::ce::all_backends as backends;
use common::surrogates::assert_matches;
use common::typed::{backing, view, Layout};
use common::Rng;
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Dimension, IxDyn};
use smoothmax::half::bf16;
use smoothmax::surrogates::reference::surrogate_f64;
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, DType, Element, MatrixView, MultiMarginOptions,
    PairwiseForm, Reduction, Surrogate, SurrogateOutput, Tensor, TensorView, Value,
};

/// Scores: normal times 2, no −inf.
fn scores<E: Element>(shape: &[usize], layout: Layout, seed: u64) -> ArrayD<E> {
    backing(shape, layout, 2.0, false, seed)
}

/// `v` as `[rows, cols]` in row-major order over its logical indices (the test's own
/// flattening, independent of the library's).
fn flat<T: Clone>(v: &ArrayViewD<T>) -> Array2<T> {
    let cols = *v.shape().last().unwrap();
    let rows = v.len().checked_div(cols).unwrap_or(0);
    Array2::from_shape_vec((rows, cols), v.iter().cloned().collect()).unwrap()
}

/// The N-D result must be the matrix result in the caller's shape, exactly.
fn assert_same(
    got: &SurrogateOutput<f32, Tensor, IxDyn>,
    want: &SurrogateOutput<f32, Tensor>,
    shape: &[usize],
    what: &str,
) {
    let lead = &shape[..shape.len() - 1];
    let value_shape: &[usize] = match &got.value {
        Value::Scalar(_) => &[],
        Value::PerRow(_) => lead,
        Value::Matrix(_) => shape,
    };
    assert_eq!(got.value.shape(), value_shape, "{what}: Value::shape");
    match (&got.value, &want.value) {
        (Value::Scalar(g), Value::Scalar(w)) => assert_eq!(g.to_bits(), w.to_bits(), "{what}"),
        (Value::PerRow(g), Value::PerRow(w)) => {
            assert_eq!(g.shape(), lead, "{what}: per-row value shape");
            assert_eq!(
                g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{what}"
            );
        }
        (Value::Matrix(g), Value::Matrix(w)) => {
            assert_eq!(g.shape(), shape, "{what}: per-element value shape");
            assert_eq!(
                g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{what}"
            );
        }
        _ => panic!("{what}: value kinds differ"),
    }
    for (g, w) in [
        (Some(&got.grad), Some(&want.grad)),
        (got.grad_b.as_ref(), want.grad_b.as_ref()),
    ] {
        assert_eq!(g.is_some(), w.is_some(), "{what}: grad_b");
        if let (Some(g), Some(w)) = (g, w) {
            assert_eq!(g.shape(), shape, "{what}: gradient shape");
            assert_eq!(g.dtype(), w.dtype(), "{what}: gradient type");
            let bits = |t: &Tensor| t.to_f32().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(g), bits(w), "{what}: gradient");
        }
    }
}

fn every_op<E: Element>(shape: &[usize], layout: Layout, seed: u64) {
    let (xa, ba) = (
        scores::<E>(shape, layout, seed),
        scores::<E>(shape, layout, seed ^ 9),
    );
    let (x, b) = (view(&xa, layout), view(&ba, layout));
    let shape = x.shape().to_vec();
    let (lead, cols) = (&shape[..shape.len() - 1], shape[shape.len() - 1]);
    let mut rng = Rng(seed ^ 5);
    let y = ArrayD::from_shape_fn(IxDyn(lead), |_| (rng.next_u64() % cols as u64) as i64);
    let hard = ArrayD::from_shape_fn(IxDyn(&shape), |_| (rng.unit() < 0.4) as u8 as f32);
    let soft = ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.unit() as f32);
    let cw = Array1::from_shape_fn(cols, |j| 0.5 + (j % 3) as f32);
    let pw = Array1::from_shape_fn(cols, |j| (j % 3) as f32 * 1.5);
    // Element weights: per column ([C]), per index of the last-but-one axis ([d, 1]), per row
    // ([d0, ..., 1]), and full.
    let mut weights = vec![ArrayD::from_shape_fn(IxDyn(&[cols]), |j| {
        0.25 + (j[0] % 4) as f32
    })];
    if shape.len() >= 2 {
        let d = shape[shape.len() - 2];
        weights.push(ArrayD::from_shape_fn(IxDyn(&[d, 1]), |i| 1.0 + i[0] as f32));
    }
    let per_row: Vec<usize> = lead.iter().copied().chain([1]).collect();
    weights.push(ArrayD::from_shape_fn(IxDyn(&per_row), |i| {
        0.5 + i.as_array_view().sum() as f32
    }));
    weights.push(ArrayD::from_shape_fn(IxDyn(&shape), |_| {
        rng.unit() as f32 * 2.0
    }));

    let (xf, bf) = (flat(&x), flat(&b));
    let yf: Array1<i64> = y.iter().copied().collect();
    let (hardf, softf) = (flat(&hard.view()), flat(&soft.view()));
    let (xt, bt): (TensorView, TensorView) = (x.clone().into(), b.clone().into());
    let (xm, bm): (MatrixView, MatrixView) = (xf.view().into(), bf.view().into());
    let options_mm = |reduction| MultiMarginOptions {
        p: 2,
        margin: 0.7,
        weight: Some(cw.view()),
        reduction,
    };

    let mut calls: Vec<(Surrogate<TensorView, IxDyn>, Surrogate<MatrixView>)> = vec![
        (
            Surrogate::BoltzmannMax {
                x: xt.clone(),
                beta: 1.3,
            },
            Surrogate::BoltzmannMax {
                x: xm.clone(),
                beta: 1.3,
            },
        ),
        (
            Surrogate::SoftArgmax {
                x: xt.clone(),
                temperature: 0.7,
            },
            Surrogate::SoftArgmax {
                x: xm.clone(),
                temperature: 0.7,
            },
        ),
        (
            Surrogate::SmoothAccuracy {
                logits: xt.clone(),
                targets: y.view(),
                temperature: 0.8,
            },
            Surrogate::SmoothAccuracy {
                logits: xm.clone(),
                targets: yf.view(),
                temperature: 0.8,
            },
        ),
        (
            Surrogate::SmoothF1Macro {
                logits: xt.clone(),
                targets: y.view(),
                temperature: 0.8,
            },
            Surrogate::SmoothF1Macro {
                logits: xm.clone(),
                targets: yf.view(),
                temperature: 0.8,
            },
        ),
        (
            Surrogate::SmoothF1Binary {
                logits: xt.clone(),
                labels: hard.view(),
            },
            Surrogate::SmoothF1Binary {
                logits: xm.clone(),
                labels: hardf.view(),
            },
        ),
        (
            Surrogate::PairwiseMax {
                a: xt.clone(),
                b: bt.clone(),
                form: PairwiseForm::Erf { mu: 1.5 },
            },
            Surrogate::PairwiseMax {
                a: xm.clone(),
                b: bm.clone(),
                form: PairwiseForm::Erf { mu: 1.5 },
            },
        ),
    ];
    for reduction in [Reduction::None, Reduction::Mean] {
        calls.push((
            Surrogate::MultiMargin {
                logits: xt.clone(),
                targets: y.view(),
                options: options_mm(reduction),
            },
            Surrogate::MultiMargin {
                logits: xm.clone(),
                targets: yf.view(),
                options: options_mm(reduction),
            },
        ));
    }
    let wide: Vec<Array2<f32>> = weights
        .iter()
        .map(|w| flat(&w.broadcast(IxDyn(&shape)).unwrap()))
        .collect();
    for (w, wf) in weights.iter().zip(&wide) {
        for loss in [BinaryLoss::Logistic, BinaryLoss::SquaredHinge] {
            let logistic = loss == BinaryLoss::Logistic;
            let (labels, labelsf) = if logistic {
                (&soft, &softf)
            } else {
                (&hard, &hardf)
            };
            for reduction in [Reduction::None, Reduction::Sum] {
                calls.push((
                    Surrogate::Binary {
                        logits: xt.clone(),
                        labels: labels.view(),
                        loss,
                        options: BinaryOptions {
                            weight: Some(w.view()),
                            pos_weight: logistic.then(|| pw.view()),
                            reduction,
                        },
                    },
                    Surrogate::Binary {
                        logits: xm.clone(),
                        labels: labelsf.view(),
                        loss,
                        options: BinaryOptions {
                            weight: Some(wf.view()),
                            pos_weight: logistic.then(|| pw.view()),
                            reduction,
                        },
                    },
                ));
            }
        }
    }
    for be in backends() {
        for (nd, m) in &calls {
            for out in [None, Some(DType::F32)] {
                let what = format!(
                    "{} {} {:?} {shape:?} {layout:?} out={out:?}",
                    be.name(),
                    nd.name(),
                    E::DTYPE
                );
                let got = be
                    .surrogate_tensor(nd, out)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let want = be
                    .surrogate_matrix(m, out)
                    .unwrap_or_else(|e| panic!("{what} (matrix): {e}"));
                assert_eq!(got.grad.dtype(), out.unwrap_or(E::DTYPE), "{what}");
                assert_same(&got, &want, &shape, &what);
            }
        }
    }
}

#[test]
fn every_surrogate_takes_any_shape_layout_and_type() {
    for (k, shape) in [vec![2, 3, 5], vec![3, 1, 4, 7], vec![9]]
        .into_iter()
        .enumerate()
    {
        for layout in [Layout::Standard, Layout::StepLast, Layout::SwapLeading] {
            every_op::<f32>(&shape, layout, 10 + k as u64);
            every_op::<bf16>(&shape, layout, 20 + k as u64);
        }
    }
}

/// One op against the f64 reference directly: per-row values in the leading shape.
#[test]
fn soft_argmax_of_3d_scores_matches_the_reference() {
    let xa = scores::<f32>(&[2, 3, 6], Layout::SwapLeading, 4);
    let x = view(&xa, Layout::SwapLeading);
    let xf = flat(&x);
    let want = surrogate_f64(&Surrogate::SoftArgmax {
        x: xf.view(),
        temperature: 0.9,
    })
    .unwrap();
    for be in backends() {
        let got = be
            .surrogate_tensor(
                &Surrogate::SoftArgmax {
                    x: x.clone().into(),
                    temperature: 0.9,
                },
                None,
            )
            .unwrap();
        let Value::PerRow(v) = &got.value else {
            panic!("per-row value")
        };
        assert_eq!(v.shape(), &[2, 3]);
        let Tensor::F32(g) = &got.grad else {
            panic!("f32 gradient")
        };
        let as2 = SurrogateOutput {
            value: Value::PerRow(v.iter().copied().collect()),
            grad: g.to_shape((6, 6)).unwrap().to_owned(),
            grad_b: None,
            sums: got.sums,
        };
        assert_matches(&as2, &want, 6, &format!("{} soft-argmax 3-D", be.name()));
    }
}

#[test]
fn shape_errors_name_both_shapes() {
    let x = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 4]));
    let xt: TensorView = x.view().into();
    let cpu = smoothmax::Cpu::new();
    let err = |call: Surrogate<TensorView, IxDyn>| {
        cpu.surrogate_tensor(&call, None).unwrap_err().to_string()
    };
    let y = ArrayD::<i64>::zeros(IxDyn(&[3, 2]));
    let e = err(Surrogate::SmoothAccuracy {
        logits: xt.clone(),
        targets: y.view(),
        temperature: 1.0,
    });
    assert!(e.contains("[3, 2]") && e.contains("[2, 3]"), "{e}");
    let l = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 5]));
    let e = err(Surrogate::SmoothF1Binary {
        logits: xt.clone(),
        labels: l.view(),
    });
    assert!(e.contains("[2, 3, 5]") && e.contains("[2, 3, 4]"), "{e}");
    let b = ArrayD::<f32>::zeros(IxDyn(&[2, 4, 3]));
    let e = err(Surrogate::PairwiseMax {
        a: xt.clone(),
        b: b.view().into(),
        form: PairwiseForm::Sqrt { mu: 1.0 },
    });
    assert!(e.contains("[2, 4, 3]") && e.contains("[2, 3, 4]"), "{e}");
    let w = ArrayD::<f32>::zeros(IxDyn(&[3, 2]));
    let lab = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 4]));
    let e = err(Surrogate::Binary {
        logits: xt.clone(),
        labels: lab.view(),
        loss: BinaryLoss::Hinge,
        options: BinaryOptions {
            weight: Some(w.view()),
            ..Default::default()
        },
    });
    assert!(
        e.contains("[3, 2]") && e.contains("does not broadcast"),
        "{e}"
    );
    let s = ArrayD::<f32>::zeros(IxDyn(&[]));
    let e = err(Surrogate::SoftArgmax {
        x: s.view().into(),
        temperature: 1.0,
    });
    assert!(e.contains("0-dimensional"), "{e}");
}
