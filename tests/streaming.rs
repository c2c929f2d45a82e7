//! Streaming accumulation: a loss evaluated batch by batch, each batch's `LossSums` added up,
//! equals one call over the concatenated batch, for every cross-entropy option and the
//! surrogate losses, on every backend and with batches spread over different backends.
//!
//! Each row's loss does not depend on the rows beside it, so the batches' sums hold the same
//! f64 terms as one call's, added in another order: they agree to `2n·ε₆₄·Σ|l_i|` (the bound
//! on reassociating a sum of `n` terms), far below f32 resolution. The denominators are exact.

mod common;

use common::ce::{all_backends, classes, ignoring_3, option_sets, probs, weights};
use common::{assert_sums_close, logits};
use ndarray::{s, Array1, Array2};
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, CrossEntropyOptions, LossSums, MultiMarginOptions,
    Reduction, Reference, Targets, Upstream,
};

/// The batch boundaries the suites split `rows` rows at: one batch, halves, uneven thirds,
/// single rows, and a split with empty batches at both ends and in the middle.
fn splits(rows: usize) -> Vec<Vec<usize>> {
    vec![
        vec![0, rows],
        vec![0, rows / 2, rows],
        vec![0, 1, rows / 3, rows],
        (0..=rows).collect(),
        vec![0, 0, rows / 2, rows / 2, rows, rows],
    ]
}

/// `got` equals `want` up to the order of f64 additions over `n` terms, plus `slack`.
fn assert_reassociated(
    got: &LossSums,
    want: &LossSums,
    abs_sum: f64,
    n: usize,
    slack: f64,
    what: &str,
) {
    assert_eq!(got.weight, want.weight, "{what}: weight");
    assert_eq!(got.z_rows, want.z_rows, "{what}: z rows");
    let bound = 2.0 * n as f64 * f64::EPSILON * abs_sum + slack;
    for (g, w, part) in [
        (got.loss, want.loss, "loss"),
        (got.z_loss, want.z_loss, "z"),
    ] {
        let same = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= bound;
        assert!(same, "{what}: {part} sum {g}, want {w} (bound {bound:e})");
    }
}

#[test]
fn cross_entropy_batches_add_up_to_one_call() {
    let (rows, cols) = (23, 37);
    // Finite logits, so that every option set's sums are finite numbers to compare.
    let x = logits(rows, cols, 3.0, 0.0, false, 11);
    // A quarter of the rows ignored (default −100, and class 3 for the "ignore 3" set).
    let mut y = classes(rows, cols, 0.25, -100, 12);
    y[5] = 3;
    let q = probs(rows, cols, 13);
    let w = weights(cols, 14);
    // The same rows ignored through a valid class as the ignore index.
    let y3 = ignoring_3(&y);
    let up = Array1::from_shape_fn(rows, |i| 1.0 + i as f32);
    for (name, prob, o) in option_sets(&w, &up) {
        let y = if o.ignore_index == Some(3) { &y3 } else { &y };
        let t = |a: usize, b: usize| {
            if prob {
                Targets::probabilities(q.slice(s![a..b, ..]))
            } else {
                Targets::classes(y.slice(s![a..b]))
            }
        };
        let want = Reference
            .cross_entropy_f64(x.view(), t(0, rows), &o)
            .unwrap();
        for b in all_backends() {
            let whole = b.cross_entropy(x.view(), t(0, rows), &o).unwrap();
            let abs_sum: f64 = want.per_row.iter().map(|l| l.abs()).sum();
            for cuts in splits(rows) {
                let what = format!("{name} on {}, batches {cuts:?}", b.name());
                let acc: LossSums = cuts
                    .windows(2)
                    .map(|c| {
                        let xb = x.slice(s![c[0]..c[1], ..]);
                        let ob = batch_options(&o, c[0], c[1]);
                        b.cross_entropy(xb, t(c[0], c[1]), &ob).unwrap().sums
                    })
                    .sum();
                assert_reassociated(&acc, &whole.sums, abs_sum, rows, 0.0, &what);
                // The accumulated loss is the one call's loss (its f32 rounding).
                if let (Some(v), Some(l)) = (acc.reduce(o.reduction), whole.loss.scalar()) {
                    assert_eq!(v as f32, l, "{what}: reduced");
                }
                assert_sums_close(&acc, &want.sums, want.per_row.view(), cols, &what);
            }
        }
    }
}

/// `o` for the batch of rows `a..b`: a per-row upstream gradient sliced to it.
fn batch_options<'a>(o: &CrossEntropyOptions<'a>, a: usize, b: usize) -> CrossEntropyOptions<'a> {
    let upstream = match &o.upstream {
        Upstream::PerRow(u) => Upstream::PerRow(u.slice(s![a..b]).to_owned()),
        other => other.clone(),
    };
    CrossEntropyOptions {
        upstream,
        ..o.clone()
    }
}

#[test]
fn batches_from_different_backends_add_up() {
    let (rows, cols) = (17, 300);
    let x = logits(rows, cols, 2.0, 1.0, false, 21);
    let y = classes(rows, cols, 0.2, -100, 22);
    let w = weights(cols, 23);
    let o = CrossEntropyOptions {
        weight: Some(w.view()),
        label_smoothing: 0.05,
        z_loss: 1e-3,
        ..Default::default()
    };
    let backends = all_backends();
    let cuts = [0, 4, 9, 10, 17];
    let acc: LossSums = cuts
        .windows(2)
        .enumerate()
        .map(|(k, c)| {
            let b = backends[k % backends.len()];
            let t = Targets::classes(y.slice(s![c[0]..c[1]]));
            b.cross_entropy(x.slice(s![c[0]..c[1], ..]), t, &o)
                .unwrap()
                .sums
        })
        .sum();
    let want = Reference
        .cross_entropy_f64(x.view(), Targets::classes(y.view()), &o)
        .unwrap();
    assert_sums_close(
        &acc,
        &want.sums,
        want.per_row.view(),
        cols,
        "mixed backends",
    );
    let tolerance = common::tol(cols) * (1.0 + want.reduced.abs());
    assert!(
        (acc.mean() - want.reduced).abs() <= 10.0 * tolerance,
        "mixed backends: mean {} vs {}",
        acc.mean(),
        want.reduced
    );
    // An all-ignored and an empty batch: the mean of nothing is NaN, and adding them changes
    // nothing.
    let ignored = Array1::from_elem(3, -100i64);
    let none = Reference
        .cross_entropy(x.slice(s![0..3, ..]), Targets::classes(ignored.view()), &o)
        .unwrap()
        .sums;
    assert!(none.mean().is_nan());
    assert_eq!((acc + none).mean(), acc.mean());
}

/// One surrogate call on rows `a..b`, its sums.
type Batch<'a> = Box<dyn Fn(usize, usize) -> LossSums + 'a>;

#[test]
fn surrogate_losses_batches_add_up() {
    let (rows, cols) = (19, 9);
    let x = logits(rows, cols, 2.0, 0.0, false, 31);
    let lab = Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 7 + j * 3) % 5 == 0) as u8 as f32
    });
    let y = classes(rows, cols, 0.0, -100, 32);
    let cuts = [0, 5, 6, 19];
    for b in all_backends() {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let mo = MultiMarginOptions {
                reduction,
                ..Default::default()
            };
            let (xr, lr) = (&x, &lab);
            let binary = |loss: BinaryLoss| -> Batch {
                Box::new(move |a, c| {
                    let (xs, ls) = (xr.slice(s![a..c, ..]), lr.slice(s![a..c, ..]));
                    let bo = BinaryOptions {
                        reduction,
                        ..Default::default()
                    };
                    b.binary_loss(xs, ls, loss, bo).unwrap().sums.unwrap()
                })
            };
            let calls: Vec<(&str, Batch)> = vec![
                ("hinge", binary(BinaryLoss::Hinge)),
                ("logistic", binary(BinaryLoss::Logistic)),
                (
                    "multi-margin",
                    Box::new(|a, c| {
                        b.multi_margin(x.slice(s![a..c, ..]), y.slice(s![a..c]), mo.clone())
                            .unwrap()
                            .sums
                            .unwrap()
                    }),
                ),
                (
                    "smooth accuracy",
                    Box::new(|a, c| {
                        b.smooth_accuracy(x.slice(s![a..c, ..]), y.slice(s![a..c]), 0.5)
                            .unwrap()
                            .sums
                            .unwrap()
                    }),
                ),
            ];
            for (name, f) in calls {
                let whole = f(0, rows);
                let acc: LossSums = cuts.windows(2).map(|c| f(c[0], c[1])).sum();
                let what = format!("{name} {reduction:?} on {}", b.name());
                // The GPU sums a mean or sum on the device, each batch's and the whole call's
                // within the device sum's bound (every value here is >= 0: Σ|v| = |Σv|).
                let n = rows * cols;
                let device = b.name() == "gpu" && reduction != Reduction::None;
                let slack = if device {
                    2.0 * smoothmax::gpu::device_sum_bound(n, whole.loss.abs())
                } else {
                    0.0
                };
                assert_reassociated(&acc, &whole, whole.loss.abs(), n, slack, &what);
            }
        }
    }
}
