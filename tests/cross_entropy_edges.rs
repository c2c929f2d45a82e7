//! Cross-entropy's edge cases on every backend: infinite target logits, empty and all-ignored
//! batches, long sparse rows, LLM vocabularies, large shifts, every bad input, token-id dtypes.

mod common;

use common::ce::*;

use common::{fast_backends, logits};
use ndarray::{s, Array1, Array2};
use smoothmax::{
    Backend, CrossEntropyOptions, Error, Loss, Reduction, Reference, Targets, Upstream,
};

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
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
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
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
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
                .cross_entropy(x.view(), Targets::classes(y.view()), &o)
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
                .cross_entropy(x.view(), Targets::classes(yi.view()), &o)
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

/// Zero classes: every row is an empty sum, lse −inf, on every backend as in the reference
/// (class targets, all ignored, and probability targets of shape `[B, 0]`; with z-loss, whose
/// part is then infinite in the reference too).
#[test]
fn zero_classes_give_empty_rows() {
    let x = Array2::<f32>::zeros((3, 0));
    let y = ndarray::array![-100i64, -100, -100];
    let q = Array2::<f32>::zeros((3, 0));
    for z_loss in [0.0, 1e-3] {
        let o = CrossEntropyOptions {
            reduction: Reduction::None,
            z_loss,
            gradient: true,
            ..Default::default()
        };
        for t in [Targets::classes(y.view()), Targets::probabilities(q.view())] {
            let want = Reference
                .cross_entropy_f64(x.view(), t.clone(), &o)
                .unwrap();
            for b in all_backends() {
                let got = b.cross_entropy(x.view(), t.clone(), &o).unwrap();
                let what = format!("{} z {z_loss} {t:?}", b.name());
                assert!(want.lse.iter().all(|&v| v == f64::NEG_INFINITY), "{what}");
                assert!(
                    got.lse.iter().all(|&v| v == f32::NEG_INFINITY),
                    "{what}: {:?}",
                    got.lse
                );
                let Loss::PerRow(gl) = &got.loss else {
                    panic!("{what}: reduction none gives per-row losses");
                };
                for (g, w) in gl.iter().zip(&want.per_row) {
                    let w = *w as f32;
                    assert!(*g == w || (g.is_nan() && w.is_nan()), "{what}: {g} vs {w}");
                }
            }
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
    check(&x, Targets::classes(y.view()), &o, "ignore_index = 2");
    let out = Reference
        .cross_entropy(x.view(), Targets::classes(y.view()), &o)
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
                Targets::classes(y.view()),
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
            Targets::classes(y.view()),
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
            Targets::classes(y.view()),
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
    check(&x, Targets::classes(y.view()), &o, "[70000, 3]");
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
    check(&shifted, Targets::classes(y.view()), &o, "+1e4 shift");
    // And equals the unshifted loss to f32 accuracy of the shifted inputs (ε·1e4 per logit).
    for b in fast_backends() {
        let a = b
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
            .unwrap();
        let c = b
            .cross_entropy(shifted.view(), Targets::classes(y.view()), &o)
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
        (Targets::classes(y_bad.view()), d(), "target[1] = 4"),
        (Targets::classes(y_neg.view()), d(), "target[1] = -3"),
        (
            Targets::classes(y_short.view()),
            d(),
            "targets have shape [2], expected [3]",
        ),
        (Targets::probabilities(q_bad.view()), d(), "shape [3, 5]"),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                weight: Some(w3.view()),
                ..d()
            },
            "weight has length 3",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                weight: Some(wneg.view()),
                ..d()
            },
            "weight[1] = -1",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                weight: Some(wnan.view()),
                ..d()
            },
            "weight[2] = NaN",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                label_smoothing: 1.5,
                ..d()
            },
            "label_smoothing",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                label_smoothing: -0.1,
                ..d()
            },
            "label_smoothing",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                z_loss: f32::INFINITY,
                ..d()
            },
            "z_loss",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                softcap: Some(0.0),
                ..d()
            },
            "softcap",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                softcap: Some(f32::NAN),
                ..d()
            },
            "softcap",
        ),
        (
            Targets::probabilities(q.view()),
            CrossEntropyOptions {
                ignore_index: Some(-100),
                ..d()
            },
            "ignore_index",
        ),
        (
            Targets::classes(y.view()),
            CrossEntropyOptions {
                upstream: Upstream::PerRow(Array1::ones(3)),
                ..d()
            },
            "reduction none",
        ),
        (
            Targets::classes(y.view()),
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
            .cross_entropy(x.view(), Targets::classes(y.view()), &ok)
            .is_ok());
        for (t, o, needle) in &cases {
            match b.cross_entropy(x.view(), t.clone(), o) {
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
        .cross_entropy(x.view(), Targets::classes_i32(y32.view()), &d())
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
    let mut all = common::fast_backends();
    all.push(common::sized(&Reference));
    for b in all {
        let want = b
            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
            .unwrap();
        let got = b
            .cross_entropy(x.view(), Targets::classes_u32(yu.view()), &o)
            .unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{}", b.name());
        let bad = ndarray::array![0u32, 7, 1, 1, 1];
        let e = b
            .cross_entropy(x.view(), Targets::classes_u32(bad.view()), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target[1] = 7"), "{}: {e}", b.name());
    }
}
