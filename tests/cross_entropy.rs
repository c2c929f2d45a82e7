//! Cross-entropy: every backend against the f64 reference over shapes and option
//! combinations, the reference's gradient against finite differences, PyTorch's invariants,
//! edge cases, and every bad input.

mod common;

use common::ce::*;

use common::{assert_ce_close, assert_close_2d, fast_backends, logits, Rng};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;
use smoothmax::Backend;
use smoothmax::{CrossEntropyOptions, Reduction, Reference, Targets, Upstream};

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
        let t = if prob_targets { Targets::probabilities(q.view()) } else { Targets::classes(y.view()) };
        let want = Reference.cross_entropy_f64(x.view(), t.clone(), &o).unwrap();
        let unit = match up { Upstream::Scalar(u) => u as f64, _ => 1.0 } * grad_unit(&t, weighted.then_some(&w), &o, rows);
        for b in fast_backends() {
            let got = b.cross_entropy(x.view(), t.clone(), &o).unwrap();
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
            Targets::probabilities(q.view())
        } else {
            Targets::classes(y.view())
        };
        let g = Reference
            .cross_entropy_f64_logits(x.view(), t.clone(), &o)
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
                    .cross_entropy_f64_logits(xp.view(), t.clone(), &o)
                    .unwrap()
                    .reduced;
                let lm = Reference
                    .cross_entropy_f64_logits(xm.view(), t.clone(), &o)
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
        let run =
            |t: Targets, o: &CrossEntropyOptions| b.cross_entropy(x.view(), t.clone(), o).unwrap();
        let base = CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.15,
            ..Default::default()
        };
        let plain = run(Targets::classes(y.view()), &base);
        // Unit weights are no weights.
        let unit = run(
            Targets::classes(y.view()),
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
            .cross_entropy(xk.view(), Targets::classes(yk.view()), &o0)
            .unwrap();
        let c = b
            .cross_entropy(xk.view(), Targets::probabilities(onehot.view()), &o0)
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
                Targets::classes(yk.view()),
                &CrossEntropyOptions {
                    label_smoothing: ls,
                    ..o0.clone()
                },
            )
            .unwrap();
        let mx = b
            .cross_entropy(xk.view(), Targets::probabilities(mixed.view()), &o0)
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
            .cross_entropy(x2.view(), Targets::classes(y.view()), &base)
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
        let mean = run(Targets::classes(y.view()), &ow(Reduction::Mean))
            .loss
            .scalar()
            .unwrap() as f64;
        let sum = run(Targets::classes(y.view()), &ow(Reduction::Sum))
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
