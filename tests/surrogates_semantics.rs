//! The smooth surrogates' limits and bounds, their hard-metric limits, and PyTorch's semantics
//! of the multi-class hinge and the logistic loss, on every backend.

mod common;

use common::surrogates::*;

use common::{fast_backends, Rng};
use ndarray::{array, Array2, ArrayView2};
use smoothmax::surrogates::reference::{self as r};
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, MultiMarginOptions, PairwiseForm, Reduction, Reference,
    SurrogateOutput, Value,
};

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
        .chain([common::sized(&Reference)])
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
        .chain([common::sized(&Reference)])
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
            // logcosh: [0, ln 2/(2k)], reached where a = b.
            let l = gap(PairwiseForm::LogCosh { k });
            let top = std::f32::consts::LN_2 / (2.0 * k);
            assert!(
                l.iter().all(|&g| g >= -slack && g <= top + slack),
                "{} logcosh k {k}",
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
        .chain([common::sized(&Reference)])
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
        .chain([common::sized(&Reference)])
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
        .chain([common::sized(&Reference)])
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
        .chain([common::sized(&Reference)])
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
