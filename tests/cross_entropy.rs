//! Cross-entropy: every backend against the f64 reference over shapes and option
//! combinations, the reference's gradient against finite differences, PyTorch's invariants,
//! edge cases, and every bad input.

mod common;

use common::{assert_ce_close, assert_close_2d, fast_backends, logits, Rng};
use ndarray::{s, Array1, Array2, Axis};
use proptest::prelude::*;
use smoothmax::{
    Backend, CrossEntropyOptions, Error, Loss, Reduction, Reference, Targets, Upstream,
};

fn classes(rows: usize, cols: usize, ignore_frac: f64, ignore: i64, seed: u64) -> Array1<i64> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(rows, |_| {
        if rng.unit() < ignore_frac {
            ignore
        } else {
            (rng.next_u64() % cols as u64) as i64
        }
    })
}

fn probs(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    let mut q = Array2::from_shape_fn((rows, cols), |_| rng.unit().powi(3) as f32);
    for mut r in q.rows_mut() {
        let s: f32 = r.sum();
        r.mapv_inplace(|v| v / s);
    }
    q
}

fn weights(cols: usize, seed: u64) -> Array1<f32> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(cols, |_| (rng.unit() * 2.0) as f32)
}

/// The mean's 1/D for class targets (Σ w[y] over non-ignored rows), or 1/B for probabilities:
/// gradients are compared at unit scale.
fn grad_unit(t: &Targets, w: Option<&Array1<f32>>, o: &CrossEntropyOptions, rows: usize) -> f64 {
    if o.reduction != Reduction::Mean {
        return 1.0;
    }
    let d = match t {
        Targets::Classes(y) => y
            .iter()
            .filter(|&&v| v != o.effective_ignore_index())
            .map(|&v| w.map_or(1.0, |w| w[v as usize] as f64))
            .sum(),
        _ => rows as f64,
    };
    if d > 0.0 {
        1.0 / d
    } else {
        1.0
    }
}

fn check(x: &Array2<f32>, t: Targets, o: &CrossEntropyOptions, what: &str) {
    let want = Reference.cross_entropy_f64(x.view(), t, o).unwrap();
    let unit = grad_unit(&t, None, o, x.nrows());
    for b in fast_backends() {
        let got = b.cross_entropy(x.view(), t, o).unwrap();
        assert_ce_close(
            &got,
            &want,
            x.ncols(),
            unit,
            &format!("{} {what}", b.name()),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(40),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/cross_entropy.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_backend_agrees_with_reference(
        rows in 0usize..24,
        cols in prop_oneof![1usize..70, 70usize..2100, 2100usize..40000],
        prob_targets: bool,
        weighted: bool,
        ls in prop_oneof![Just(0.0f32), Just(0.1), Just(1.0), 0.0f32..1.0],
        reduction in prop_oneof![Just(Reduction::None), Just(Reduction::Mean), Just(Reduction::Sum)],
        z in prop_oneof![Just(0.0f32), Just(1e-4), Just(0.3)],
        softcap in prop_oneof![Just(None), Just(Some(5.0f32)), Just(Some(30.0))],
        gradient: bool,
        upstream in prop_oneof![Just(0u8), Just(1), Just(2)],
        scale in prop_oneof![Just(1.0f64), Just(8.0)],
        spiky: bool,
        seed: u64,
    ) {
        let x = logits(rows, cols, scale, 0.0, spiky, seed);
        let y = classes(rows, cols, 0.2, -100, seed ^ 1);
        let q = probs(rows, cols, seed ^ 2);
        let w = weights(cols, seed ^ 3);
        let up = match (upstream, reduction) {
            (1, _) => Upstream::Scalar(0.75),
            (2, Reduction::None) => Upstream::PerRow(Array1::from_shape_fn(rows, |i| 1.0 - i as f32 * 0.1)),
            _ => Upstream::One,
        };
        let o = CrossEntropyOptions {
            weight: weighted.then(|| w.view()),
            label_smoothing: ls,
            reduction,
            z_loss: z,
            softcap,
            gradient,
            upstream: up.clone(),
            ..Default::default()
        };
        let t = if prob_targets { Targets::Probabilities(q.view()) } else { Targets::Classes(y.view()) };
        let want = Reference.cross_entropy_f64(x.view(), t, &o).unwrap();
        let unit = match up { Upstream::Scalar(u) => u as f64, _ => 1.0 } * grad_unit(&t, weighted.then_some(&w), &o, rows);
        for b in fast_backends() {
            let got = b.cross_entropy(x.view(), t, &o).unwrap();
            assert_ce_close(&got, &want, cols, unit, &format!("{} [{rows}, {cols}] {o:?}", b.name()));
        }
    }
}

#[test]
fn reference_gradient_matches_central_finite_differences() {
    let mut rng = Rng(7);
    for case in 0..24 {
        let (rows, cols) = (3, 5 + case % 4);
        let x = Array2::from_shape_fn((rows, cols), |_| rng.normal() * 2.0);
        let y = Array1::from_vec(vec![0i64, (cols - 1) as i64, -100]);
        let q = probs(rows, cols, case as u64);
        let w = weights(cols, case as u64);
        let o = CrossEntropyOptions {
            weight: (case % 2 == 0).then(|| w.view()),
            label_smoothing: [0.0, 0.2, 1.0][case % 3],
            reduction: [Reduction::Mean, Reduction::Sum][case / 12],
            z_loss: if case % 4 < 2 { 0.0 } else { 0.05 },
            softcap: (case % 5 == 0).then_some(3.0),
            gradient: true,
            ..Default::default()
        };
        let t = if case % 6 == 1 {
            Targets::Probabilities(q.view())
        } else {
            Targets::Classes(y.view())
        };
        let g = Reference
            .cross_entropy_f64_logits(x.view(), t, &o)
            .unwrap()
            .grad
            .unwrap();
        let h = 1e-6;
        for i in 0..rows {
            for j in 0..cols {
                let mut xp = x.clone();
                xp[[i, j]] += h;
                let mut xm = x.clone();
                xm[[i, j]] -= h;
                let lp = Reference
                    .cross_entropy_f64_logits(xp.view(), t, &o)
                    .unwrap()
                    .reduced;
                let lm = Reference
                    .cross_entropy_f64_logits(xm.view(), t, &o)
                    .unwrap()
                    .reduced;
                let fd = (lp - lm) / (2.0 * h);
                // Central differences: O(h²) truncation plus O(ε/h) rounding, about 1e-9 here.
                assert!(
                    (fd - g[[i, j]]).abs() < 1e-7,
                    "case {case} [{i},{j}]: fd {fd} vs analytic {}",
                    g[[i, j]]
                );
            }
        }
    }
}

#[test]
fn invariants_pytorch_relies_on() {
    let (rows, cols) = (40, 37);
    let x = logits(rows, cols, 3.0, 0.0, false, 5);
    let y = classes(rows, cols, 0.25, -100, 6);
    let ones = Array1::<f32>::ones(cols);
    for b in fast_backends() {
        let name = b.name();
        let run = |t: Targets, o: &CrossEntropyOptions| b.cross_entropy(x.view(), t, o).unwrap();
        let base = CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.15,
            ..Default::default()
        };
        let plain = run(Targets::Classes(y.view()), &base);
        // Unit weights are no weights.
        let unit = run(
            Targets::Classes(y.view()),
            &CrossEntropyOptions {
                weight: Some(ones.view()),
                ..base.clone()
            },
        );
        assert_eq!(plain.loss, unit.loss, "{name}: unit weights");
        // Within rounding, not bit for bit: on the GPU the weighted and unweighted forms are
        // separate compiled specializations, and the compiler may contract a multiply-add in
        // one and not the other (the target class's gradient differed by 1 ulp on lavapipe).
        assert_close_2d(
            unit.grad.as_ref().unwrap().view(),
            plain.grad.as_ref().unwrap().mapv(f64::from).view(),
            &format!("{name}: unit weights grad"),
        );

        // A one-hot probability target is the index target (rows not ignored).
        let keep: Vec<usize> = (0..rows).filter(|&i| y[i] >= 0).collect();
        let xk = x.select(Axis(0), &keep);
        let yk = y.select(Axis(0), &keep);
        let onehot = Array2::from_shape_fn((keep.len(), cols), |(i, j)| {
            if yk[i] == j as i64 {
                1.0f32
            } else {
                0.0
            }
        });
        let o0 = CrossEntropyOptions {
            gradient: true,
            ..Default::default()
        };
        let a = b
            .cross_entropy(xk.view(), Targets::Classes(yk.view()), &o0)
            .unwrap();
        let c = b
            .cross_entropy(xk.view(), Targets::Probabilities(onehot.view()), &o0)
            .unwrap();
        let (la, lc) = (a.loss.scalar().unwrap(), c.loss.scalar().unwrap());
        assert!(
            (la - lc).abs() <= 1e-5 * la.abs().max(1.0),
            "{name}: one-hot {la} vs {lc}"
        );

        // Smoothing = training on the mixed target y(1 − ls) + ls/C.
        let ls = 0.3f32;
        let mixed = onehot.mapv(|v| v * (1.0 - ls) + ls / cols as f32);
        let sm = b
            .cross_entropy(
                xk.view(),
                Targets::Classes(yk.view()),
                &CrossEntropyOptions {
                    label_smoothing: ls,
                    ..o0.clone()
                },
            )
            .unwrap();
        let mx = b
            .cross_entropy(xk.view(), Targets::Probabilities(mixed.view()), &o0)
            .unwrap();
        let (ls_, lm) = (sm.loss.scalar().unwrap(), mx.loss.scalar().unwrap());
        assert!(
            (ls_ - lm).abs() <= 1e-5 * lm.abs().max(1.0),
            "{name}: smoothing {ls_} vs mixed {lm}"
        );
        let (gs, gm) = (sm.grad.unwrap(), mx.grad.unwrap());
        assert!(
            gs.iter().zip(gm.iter()).all(|(p, q)| (p - q).abs() <= 1e-6),
            "{name}: smoothing grad"
        );

        // Changing logits in ignored rows changes nothing.
        let mut x2 = x.clone();
        for i in (0..rows).filter(|&i| y[i] < 0) {
            x2.row_mut(i).fill(1e3);
            x2[[i, 0]] = f32::NAN;
        }
        let other = b
            .cross_entropy(x2.view(), Targets::Classes(y.view()), &base)
            .unwrap();
        assert_eq!(
            plain.loss, other.loss,
            "{name}: ignored rows changed the loss"
        );
        let (g1, g2) = (plain.grad.as_ref().unwrap(), other.grad.unwrap());
        for i in 0..rows {
            if y[i] < 0 {
                assert!(
                    g2.row(i).iter().all(|&v| v == 0.0),
                    "{name}: ignored row {i} has a gradient"
                );
            } else {
                assert_eq!(g1.row(i), g2.row(i), "{name}: row {i}");
            }
        }

        // mean = sum / Σ w[y] over non-ignored rows.
        let w = weights(cols, 9);
        let ow = |r| CrossEntropyOptions {
            weight: Some(w.view()),
            reduction: r,
            ..Default::default()
        };
        let mean = run(Targets::Classes(y.view()), &ow(Reduction::Mean))
            .loss
            .scalar()
            .unwrap() as f64;
        let sum = run(Targets::Classes(y.view()), &ow(Reduction::Sum))
            .loss
            .scalar()
            .unwrap() as f64;
        let d: f64 = y
            .iter()
            .filter(|&&v| v >= 0)
            .map(|&v| w[v as usize] as f64)
            .sum();
        assert!(
            (mean - sum / d).abs() <= 1e-5 * mean.abs(),
            "{name}: mean {mean} vs sum/d {}",
            sum / d
        );
    }
}

fn all_backends() -> Vec<&'static dyn Backend> {
    let mut v = fast_backends();
    v.push(&Reference);
    v
}

#[test]
fn target_logit_minus_infinity_gives_infinite_loss_and_finite_gradient() {
    let x = ndarray::array![[f32::NEG_INFINITY, 0.0]];
    let y = ndarray::array![0i64];
    for b in all_backends() {
        let o = CrossEntropyOptions {
            gradient: true,
            ..Default::default()
        };
        let out = b
            .cross_entropy(x.view(), Targets::Classes(y.view()), &o)
            .unwrap();
        assert_eq!(out.loss, Loss::Scalar(f32::INFINITY), "{}", b.name());
        assert_eq!(
            out.grad.unwrap().row(0).to_vec(),
            vec![-1.0, 1.0],
            "{}",
            b.name()
        );
        // All −inf: NaN loss and NaN gradient.
        let x = ndarray::array![[f32::NEG_INFINITY, f32::NEG_INFINITY]];
        let out = b
            .cross_entropy(x.view(), Targets::Classes(y.view()), &o)
            .unwrap();
        assert!(out.loss.scalar().unwrap().is_nan(), "{}", b.name());
        assert!(out.grad.unwrap().iter().all(|v| v.is_nan()), "{}", b.name());
    }
}

#[test]
fn empty_and_all_ignored_batches() {
    for b in all_backends() {
        let x = Array2::<f32>::zeros((0, 5));
        let y = Array1::<i64>::zeros(0);
        for (r, nan) in [(Reduction::Mean, true), (Reduction::Sum, false)] {
            let o = CrossEntropyOptions {
                reduction: r,
                gradient: true,
                ..Default::default()
            };
            let l = b
                .cross_entropy(x.view(), Targets::Classes(y.view()), &o)
                .unwrap()
                .loss
                .scalar()
                .unwrap();
            assert!(
                if nan { l.is_nan() } else { l == 0.0 },
                "{} empty {r:?}: {l}",
                b.name()
            );
            let x = logits(3, 5, 1.0, 0.0, false, 1);
            let yi = ndarray::array![-100i64, -100, -100];
            let out = b
                .cross_entropy(x.view(), Targets::Classes(yi.view()), &o)
                .unwrap();
            let l = out.loss.scalar().unwrap();
            assert!(
                if nan { l.is_nan() } else { l == 0.0 },
                "{} all ignored {r:?}: {l}",
                b.name()
            );
            assert!(out.grad.unwrap().iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn ignore_index_may_be_a_valid_class() {
    let x = logits(6, 4, 1.0, 0.0, false, 2);
    let y = ndarray::array![0i64, 1, 2, 3, 2, 1];
    let o = CrossEntropyOptions {
        ignore_index: Some(2),
        reduction: Reduction::None,
        gradient: true,
        ..Default::default()
    };
    check(&x, Targets::Classes(y.view()), &o, "ignore_index = 2");
    let out = Reference
        .cross_entropy(x.view(), Targets::Classes(y.view()), &o)
        .unwrap();
    match out.loss {
        Loss::PerRow(v) => assert!(v[2] == 0.0 && v[4] == 0.0 && v[0] > 0.0),
        _ => unreachable!(),
    }
}

#[test]
fn long_sparse_rows_with_the_target_first_middle_and_last() {
    let cols = 100_000;
    for (k, &target) in [0usize, cols / 2, cols - 1].iter().enumerate() {
        let mut x = Array2::from_elem((2, cols), f32::NEG_INFINITY);
        let other = (target + 7919) % cols;
        for r in 0..2 {
            x[[r, target]] = 1.5 + r as f32;
            x[[r, other]] = 0.25;
        }
        let y = Array1::from_elem(2, target as i64);
        for ls in [0.0f32, 0.1] {
            let o = CrossEntropyOptions {
                gradient: true,
                label_smoothing: ls,
                reduction: Reduction::None,
                ..Default::default()
            };
            check(
                &x,
                Targets::Classes(y.view()),
                &o,
                &format!("sparse row, target {k} ls {ls}"),
            );
        }
    }
}

#[test]
fn llm_vocabularies() {
    for (rows, cols) in [(4usize, 128_256usize), (8, 256_000)] {
        let x = logits(rows, cols, 2.0, 0.0, true, cols as u64);
        let y = classes(rows, cols, 0.2, -100, 3);
        let o = CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.1,
            z_loss: 1e-4,
            ..Default::default()
        };
        check(
            &x,
            Targets::Classes(y.view()),
            &o,
            &format!("[{rows}, {cols}]"),
        );
        let o = CrossEntropyOptions {
            gradient: false,
            softcap: Some(30.0),
            ..Default::default()
        };
        check(
            &x,
            Targets::Classes(y.view()),
            &o,
            &format!("[{rows}, {cols}] softcap fwd"),
        );
    }
}

#[test]
fn many_rows_of_three_classes() {
    let x = logits(70_000, 3, 2.0, 0.0, true, 4);
    let y = classes(70_000, 3, 0.1, -100, 5);
    let w = ndarray::array![0.5f32, 1.0, 2.0];
    let o = CrossEntropyOptions {
        weight: Some(w.view()),
        gradient: true,
        label_smoothing: 0.05,
        ..Default::default()
    };
    check(&x, Targets::Classes(y.view()), &o, "[70000, 3]");
}

#[test]
fn a_large_common_shift_loses_nothing() {
    let x = logits(16, 1000, 1.0, 0.0, false, 8);
    let shifted = x.mapv(|v| v + 1e4);
    let y = classes(16, 1000, 0.0, -100, 9);
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.2,
        reduction: Reduction::None,
        ..Default::default()
    };
    check(&shifted, Targets::Classes(y.view()), &o, "+1e4 shift");
    // And equals the unshifted loss to f32 accuracy of the shifted inputs (ε·1e4 per logit).
    for b in fast_backends() {
        let a = b
            .cross_entropy(x.view(), Targets::Classes(y.view()), &o)
            .unwrap();
        let c = b
            .cross_entropy(shifted.view(), Targets::Classes(y.view()), &o)
            .unwrap();
        let (Loss::PerRow(la), Loss::PerRow(lc)) = (a.loss, c.loss) else {
            unreachable!()
        };
        for i in 0..16 {
            assert!(
                (la[i] - lc[i]).abs() < 4e-3,
                "{} row {i}: {} vs {}",
                b.name(),
                la[i],
                lc[i]
            );
        }
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() {
    let x = logits(3, 4, 1.0, 0.0, false, 1);
    let y = ndarray::array![0i64, 3, 1];
    let q = probs(3, 4, 1);
    let w4 = Array1::<f32>::ones(4);
    let w3 = Array1::<f32>::ones(3);
    let wneg = ndarray::array![1.0f32, -1.0, 1.0, 1.0];
    let wnan = ndarray::array![1.0f32, 1.0, f32::NAN, 1.0];
    let y_bad = ndarray::array![0i64, 4, 1];
    let y_neg = ndarray::array![0i64, -3, 1];
    let y_short = ndarray::array![0i64, 1];
    let q_bad = probs(3, 5, 1);
    let d = CrossEntropyOptions::default;
    let cases: Vec<(Targets, CrossEntropyOptions, &str)> = vec![
        (Targets::Classes(y_bad.view()), d(), "target[1] = 4"),
        (Targets::Classes(y_neg.view()), d(), "target[1] = -3"),
        (Targets::Classes(y_short.view()), d(), "length 2"),
        (Targets::Probabilities(q_bad.view()), d(), "shape [3, 5]"),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                weight: Some(w3.view()),
                ..d()
            },
            "weight has length 3",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                weight: Some(wneg.view()),
                ..d()
            },
            "weight[1] = -1",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                weight: Some(wnan.view()),
                ..d()
            },
            "weight[2] = NaN",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                label_smoothing: 1.5,
                ..d()
            },
            "label_smoothing",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                label_smoothing: -0.1,
                ..d()
            },
            "label_smoothing",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                z_loss: f32::INFINITY,
                ..d()
            },
            "z_loss",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                softcap: Some(0.0),
                ..d()
            },
            "softcap",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                softcap: Some(f32::NAN),
                ..d()
            },
            "softcap",
        ),
        (
            Targets::Probabilities(q.view()),
            CrossEntropyOptions {
                ignore_index: Some(-100),
                ..d()
            },
            "ignore_index",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                upstream: Upstream::PerRow(Array1::ones(3)),
                ..d()
            },
            "reduction none",
        ),
        (
            Targets::Classes(y.view()),
            CrossEntropyOptions {
                reduction: Reduction::None,
                upstream: Upstream::PerRow(Array1::ones(2)),
                ..d()
            },
            "upstream gradient has length 2",
        ),
    ];
    for b in all_backends() {
        let ok = CrossEntropyOptions {
            weight: Some(w4.view()),
            ..d()
        };
        assert!(b
            .cross_entropy(x.view(), Targets::Classes(y.view()), &ok)
            .is_ok());
        for (t, o, needle) in &cases {
            match b.cross_entropy(x.view(), *t, o) {
                Err(Error::InvalidInput(m)) => {
                    assert!(m.contains(needle), "{}: {m:?} lacks {needle:?}", b.name())
                }
                other => panic!(
                    "{}: expected an error containing {needle:?}, got {other:?}",
                    b.name()
                ),
            }
        }
    }
    // i32 targets are checked the same way.
    let y32 = ndarray::array![0i32, 9, 1];
    assert!(Reference
        .cross_entropy(x.view(), Targets::ClassesI32(y32.view()), &d())
        .is_err());
    let _ = s![..];
}

/// u32 class targets (token ids as tokenizers hand them out) give exactly the i64 result on
/// every backend, and an id past C is an error naming its row.
#[test]
fn u32_targets_equal_i64_targets() {
    let x = common::logits(5, 7, 2.0, 0.0, true, 31);
    let y = ndarray::array![6i64, 0, 3, 3, 1];
    let yu: ndarray::Array1<u32> = y.mapv(|v| v as u32);
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.2,
        ..Default::default()
    };
    let mut all: Vec<&dyn Backend> = common::fast_backends();
    all.push(&Reference);
    for b in all {
        let want = b
            .cross_entropy(x.view(), Targets::Classes(y.view()), &o)
            .unwrap();
        let got = b
            .cross_entropy(x.view(), Targets::ClassesU32(yu.view()), &o)
            .unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{}", b.name());
        let bad = ndarray::array![0u32, 7, 1, 1, 1];
        let e = b
            .cross_entropy(x.view(), Targets::ClassesU32(bad.view()), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target[1] = 7"), "{}: {e}", b.name());
    }
}
