//! Every op in every element type (f32, f16, bf16), on inputs of any leading shape and layout,
//! on every backend, against the f64 reference computed from the exactly widened inputs; the
//! typed methods' shapes and types, shape errors, half scores for the surrogates (the
//! non-finite table per type and overflow to ±inf: dtypes_edges.rs).

mod common;

use common::typed::{assert_typed_close, backing, random, values, view, Layout};
use common::{ce::grad_unit, fast_backends, sized, Rng};
use ndarray::{s, Array1, Array2, ArrayD, ArrayViewD, IxDyn};
use proptest::prelude::*;
use smoothmax::half::{bf16, f16};
use smoothmax::{
    Backend, CrossEntropyOptions, DType, Element, Loss, MatrixView, Reduction, Reference, RowOp,
    Surrogate, Targets, Tensor, Upstream,
};

fn backends() -> Vec<&'static &'static dyn Backend> {
    let mut v = fast_backends();
    v.push(sized(&Reference));
    v
}

/// The input's values as `[rows, C]` f32, read in logical order (independent of the crate's
/// merging of leading axes).
fn widened<E: Element>(x: &ArrayViewD<E>) -> Array2<f32> {
    let cols = *x.shape().last().unwrap();
    let rows = x
        .len()
        .checked_div(cols)
        .unwrap_or(x.shape()[..x.ndim() - 1].iter().product());
    Array2::from_shape_vec((rows, cols), x.iter().map(|v| v.to_f32()).collect()).unwrap()
}

fn row_ops_case<E: Element>(shape: &[usize], layout: Layout, t: f32, seed: u64) {
    let a = backing::<E>(shape, layout, 3.0, true, seed);
    let x = view(&a, layout);
    let shape = x.shape().to_vec();
    let (lead, cols) = (&shape[..shape.len() - 1], shape[shape.len() - 1]);
    let w = widened(&x);
    let want_lse = Reference.logsumexp_f64(w.view(), t).unwrap();
    let want = |log| Reference.softmax_f64(w.view(), t, log).unwrap();
    let (want_sm, want_lsm) = (want(false), want(true));
    for b in backends() {
        for out in [None, Some(DType::F32), Some(DType::BF16)] {
            let what = format!(
                "{} {:?} {shape:?} {layout:?} T={t} out={out:?}",
                b.name(),
                E::DTYPE
            );
            let lse = b
                .row_op_tensor(RowOp::LogSumExp, x.clone().into(), t, out)
                .unwrap();
            assert_eq!((lse.dtype(), lse.shape()), (DType::F32, lead), "{what} lse");
            let (d, v) = values(&lse);
            assert_typed_close(
                d,
                &v,
                want_lse.as_slice().unwrap(),
                cols,
                t as f64,
                &format!("{what} lse"),
            );
            for (op, want) in [(RowOp::Softmax, &want_sm), (RowOp::LogSoftmax, &want_lsm)] {
                let r = b.row_op_tensor(op, x.clone().into(), t, out).unwrap();
                assert_eq!(r.dtype(), out.unwrap_or(E::DTYPE), "{what} {op:?} type");
                assert_eq!(r.shape(), shape.as_slice(), "{what} {op:?} shape");
                let (d, v) = values(&r);
                let w = want.as_standard_layout();
                assert_typed_close(
                    d,
                    &v,
                    w.as_slice().unwrap(),
                    cols,
                    1.0,
                    &format!("{what} {op:?}"),
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(24),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/dtypes.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn row_ops_in_every_type_shape_and_layout(
        lead in prop::collection::vec(0usize..5, 0..4),
        cols in prop_oneof![1usize..40, 40usize..700],
        half in any::<bool>(),
        layout in prop_oneof![Just(Layout::Standard), Just(Layout::StepLast), Just(Layout::StepFirst), Just(Layout::SwapLeading)],
        t in prop_oneof![Just(1.0f32), 0.1f32..8.0],
        seed: u64,
    ) {
        let shape: Vec<usize> = lead.iter().copied().chain([cols]).collect();
        if matches!(layout, Layout::StepFirst) && lead.is_empty() {
            return Ok(()); // a 1-D input has no leading axis to step over
        }
        if half {
            row_ops_case::<f16>(&shape, layout, t, seed);
        } else {
            row_ops_case::<bf16>(&shape, layout, t, seed);
        }
    }
}

/// One cross-entropy case in type `E`, leading shape `lead`: every backend and output type
/// against the reference on the widened, flattened logits.
fn ce_case<E: Element>(
    lead: &[usize],
    cols: usize,
    probs: bool,
    o: &CrossEntropyOptions,
    seed: u64,
) {
    let shape: Vec<usize> = lead.iter().copied().chain([cols]).collect();
    let rows: usize = lead.iter().product();
    let n = rows * cols;
    let x = ArrayD::from_shape_vec(IxDyn(&shape), random::<E>(n, 2.0, true, seed)).unwrap();
    let mut rng = Rng(seed ^ 7);
    let y = ArrayD::from_shape_fn(IxDyn(lead), |_| {
        if rng.unit() < 0.2 {
            o.effective_ignore_index()
        } else {
            (rng.next_u64() % cols as u64) as i64
        }
    });
    let q = common::ce::probs(rows, cols, seed)
        .into_shape_with_order(IxDyn(&shape))
        .unwrap();
    let t = if probs {
        Targets::probabilities(q.view())
    } else {
        Targets::classes(y.view())
    };
    let w = widened(&x.view());
    let (yf, qf) = (
        y.iter().copied().collect::<Array1<i64>>(),
        q.to_shape((rows, cols)).unwrap(),
    );
    let tf = if probs {
        Targets::probabilities(qf.view())
    } else {
        Targets::classes(yf.view())
    };
    let want = Reference
        .cross_entropy_f64(w.view(), tf.clone(), o)
        .unwrap();
    let unit = grad_unit(&tf, None, o, rows)
        * match o.upstream {
            Upstream::Scalar(u) => u as f64,
            _ => 1.0,
        };
    for b in backends() {
        for out in [None, Some(DType::F32)] {
            let what = format!(
                "{} {:?} {shape:?} probs={probs} out={out:?} {o:?}",
                b.name(),
                E::DTYPE
            );
            let r = b
                .cross_entropy_tensor(x.view().into(), t.clone(), o, out)
                .unwrap();
            match r.loss {
                Loss::Scalar(v) => {
                    assert_typed_close(DType::F32, &[v as f64], &[want.reduced], cols, 1.0, &what)
                }
                Loss::PerRow(v) => {
                    assert_eq!(v.shape(), lead, "{what}");
                    let v: Vec<f64> = v.iter().map(|&v| v as f64).collect();
                    assert_typed_close(
                        DType::F32,
                        &v,
                        want.per_row.as_slice().unwrap(),
                        cols,
                        1.0,
                        &what,
                    );
                }
            }
            assert_eq!(r.lse.shape(), lead, "{what}");
            let lse: Vec<f64> = r.lse.iter().map(|&v| v as f64).collect();
            assert_typed_close(
                DType::F32,
                &lse,
                want.lse.as_slice().unwrap(),
                cols,
                1.0,
                &format!("{what} lse"),
            );
            let g = r.grad.unwrap();
            assert_eq!(
                (g.dtype(), g.shape()),
                (out.unwrap_or(E::DTYPE), shape.as_slice()),
                "{what}"
            );
            let (d, v) = values(&g);
            let wg: Vec<f64> = want.grad.as_ref().unwrap().iter().copied().collect();
            // |g − r| ≤ tol·(unit + |r|) + ulp(r): the f32 bound at the gradient's scale (the
            // mean's 1/D times the upstream), plus the rounding to the output type.
            assert_typed_close(d, &v, &wg, cols, unit, &format!("{what} grad"));
        }
    }
}

#[test]
fn cross_entropy_in_every_type_and_leading_shape() {
    let variants = [
        CrossEntropyOptions {
            gradient: true,
            ..Default::default()
        },
        CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.1,
            z_loss: 1e-3,
            reduction: Reduction::Sum,
            ..Default::default()
        },
        CrossEntropyOptions {
            gradient: true,
            softcap: Some(5.0),
            reduction: Reduction::None,
            upstream: Upstream::Scalar(0.5),
            ..Default::default()
        },
    ];
    let mut seed = 1;
    for lead in [vec![3usize], vec![2, 3], vec![2, 1, 3], vec![]] {
        for cols in [1usize, 7, 64, 333] {
            for o in &variants {
                for probs in [false, true] {
                    seed += 1;
                    ce_case::<bf16>(&lead, cols, probs, o, seed);
                    ce_case::<f16>(&lead, cols, probs, o, seed);
                }
            }
        }
    }
}

/// The typed methods give the input's shape and type back; a 3-D bf16 input with 2-D targets.
#[test]
fn typed_methods_keep_shape_and_type() {
    let x = ndarray::Array3::from_shape_fn((2, 3, 5), |(i, j, k)| {
        bf16::from_f32((i + 2 * j) as f32 - k as f32)
    });
    let y = ndarray::Array2::from_shape_fn((2, 3), |(i, j)| ((i + j) % 5) as i64);
    for b in backends() {
        let p: ndarray::Array3<bf16> = b.softmax(x.view(), 1.0).unwrap();
        let lse: ndarray::Array2<f32> = b.logsumexp(x.view(), 1.0).unwrap();
        assert_eq!((p.dim(), lse.dim()), ((2, 3, 5), (2, 3)));
        let o = CrossEntropyOptions {
            gradient: true,
            reduction: Reduction::None,
            ..Default::default()
        };
        let r = b
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
            .unwrap();
        let g: ndarray::Array3<bf16> = r.grad.unwrap();
        let Loss::PerRow(l) = r.loss else {
            panic!("reduction none")
        };
        assert_eq!((g.dim(), l.dim(), r.lse.dim()), ((2, 3, 5), (2, 3), (2, 3)));
        // Row [1, 2] of the 3-D call is row 5 of the flattened one.
        let flat = x.to_shape((6, 5)).unwrap().to_owned();
        let r2 = b
            .cross_entropy(
                flat.view(),
                Targets::classes(y.to_shape(6).unwrap().view()),
                &o,
            )
            .unwrap();
        assert_eq!(r2.grad.unwrap().row(5), g.slice(s![1, 2, ..]));
    }
}

/// Shape errors name the shapes; a 0-dimensional input is refused.
#[test]
fn shape_errors_are_clear() {
    let x = ndarray::Array3::<f16>::default((2, 3, 4));
    let y = ndarray::Array1::<i64>::zeros(6);
    let o = CrossEntropyOptions::default();
    for b in backends() {
        let e = b
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
            .unwrap_err();
        assert!(
            e.to_string().contains("[6]") && e.to_string().contains("[2, 3]"),
            "{e}"
        );
        let s = ndarray::arr0(f16::ONE);
        let e = b
            .row_op_tensor(RowOp::Softmax, s.view().into(), 1.0, None)
            .unwrap_err();
        assert!(e.to_string().contains("0-dimensional"), "{e}");
    }
}

/// Surrogates on half scores: the f32 op on the exactly widened scores, gradients rounded
/// to the input's type (by the `half` crate here, independently of the crate's narrowing).
#[test]
fn surrogates_take_half_scores() {
    let x = Array2::from_shape_vec((4, 9), random::<bf16>(36, 2.0, false, 5)).unwrap();
    let xw = x.mapv(|v| v.to_f32());
    let xh = x.mapv(|v| f16::from_f32(v.to_f32()));
    for b in backends() {
        let call = Surrogate::SoftArgmax {
            x: MatrixView::from(x.view()),
            temperature: 0.7,
        };
        let got = b.surrogate_matrix(&call, None).unwrap();
        let want = b
            .surrogate(&Surrogate::SoftArgmax {
                x: xw.view(),
                temperature: 0.7,
            })
            .unwrap();
        assert_eq!(got.value, want.value, "{}", b.name());
        assert_eq!(
            got.grad,
            Tensor::BF16(want.grad.mapv(bf16::from_f32).into_dyn())
        );
        let call = Surrogate::BoltzmannMax {
            x: MatrixView::from(xh.view()),
            beta: 2.0,
        };
        let got = b.surrogate_matrix(&call, Some(DType::F32)).unwrap();
        let xhw = xh.mapv(|v| v.to_f32());
        let want = b
            .surrogate(&Surrogate::BoltzmannMax {
                x: xhw.view(),
                beta: 2.0,
            })
            .unwrap();
        assert_eq!(got.grad, Tensor::F32(want.grad.into_dyn()), "{}", b.name());
    }
}
