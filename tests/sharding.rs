//! Vocabulary sharding: a cross-entropy (and the row ops) over rows split into k shards
//! (k = 1, 2, 3, 7; uneven widths, a shard of width 1, an empty shard, shards of only −inf),
//! merged, equals the unsharded call against the f64 reference (the crate's tolerance,
//! stated once in tests/common), on every backend, across backends in one call, in any merge
//! order, with the non-finite table intact.

mod common;

use common::ce::{classes, grad_unit, ignoring_3, option_sets, probs, weights};
use common::{assert_ce_close, assert_close_2d, assert_lse_close, logits, tol};
use ndarray::{concatenate, s, Array1, Array2, ArrayView2, Axis};
use smoothmax::shard::{
    self, local::LocalShard, merge_rows, RowPartial, ShardedCrossEntropy, VocabShard,
};
use smoothmax::{
    Backend, CrossEntropyOptions, CrossEntropyOutput, DType, Reduction, Reference, RowOp, Targets,
};

/// Every backend, as shards can hold them.
fn backends() -> Vec<&'static (dyn Backend + Sync)> {
    let mut v: Vec<&'static (dyn Backend + Sync)> = vec![common::cpu(), &Reference];
    if let Some(g) = common::gpu() {
        v.insert(0, g);
    }
    v
}

/// Shard boundaries of `total` columns: k = 1, 2, 3 (uneven), 7 (uneven, one of width 1 and
/// one empty).
fn splits(total: usize) -> Vec<Vec<usize>> {
    let t = total;
    vec![
        vec![0, t],
        vec![0, t / 2, t],
        vec![0, t / 5, t / 2 + 1, t],
        vec![0, 1, 1, t / 7, t / 3, t / 2, t / 2 + 1, t],
    ]
}

/// Logits whose first rows hold only −inf in the left half (so some shards of them hold no
/// finite value), and rows of the non-finite table: a NaN, a +inf, all −inf, a huge value.
fn hard_logits(rows: usize, total: usize, seed: u64) -> Array2<f32> {
    let mut x = logits(rows, total, 3.0, 0.5, true, seed);
    for i in 0..3 {
        x.slice_mut(s![i, ..total / 2]).fill(f32::NEG_INFINITY);
    }
    x[[3, total - 1]] = f32::NAN;
    x[[4, 1]] = f32::INFINITY;
    x.row_mut(5).fill(f32::NEG_INFINITY);
    x[[6, total / 3]] = 1e30;
    x
}

/// The sharded call on `cuts`, shard k on `bs[k % len]`, with the gradient slices joined.
fn sharded(
    bs: &[&'static (dyn Backend + Sync)],
    x: &Array2<f32>,
    cuts: &[usize],
    t: &Targets,
    o: &CrossEntropyOptions,
) -> CrossEntropyOutput {
    let shards: Vec<LocalShard> = cuts
        .windows(2)
        .enumerate()
        .map(|(k, c)| LocalShard {
            backend: bs[k % bs.len()],
            logits: x.slice(s![.., c[0]..c[1]]).into(),
            offset: c[0],
        })
        .collect();
    let r = shard::local::cross_entropy(&shards, x.ncols(), t, o).unwrap();
    let grad = r.grad.map(|parts| {
        let wide: Vec<Array2<f32>> = parts
            .iter()
            .map(|g| g.to_f32().into_dimensionality().unwrap())
            .collect();
        let views: Vec<ArrayView2<f32>> = wide.iter().map(|g| g.view()).collect();
        concatenate(Axis(1), &views).unwrap()
    });
    CrossEntropyOutput {
        loss: r.loss,
        grad,
        lse: r.lse,
        sums: r.sums,
    }
}

/// Every option set, reduced as it says and per row, on `bs` over every split, against the
/// reference; on logits with the non-finite table's rows and on finite ones (where every
/// reduced loss is finite, so the merged linear sums are checked through it).
fn check_sharded(bs: &[&'static (dyn Backend + Sync)], what: &str) {
    let (rows, total) = (9, 61);
    let inputs = [
        ("non-finite", hard_logits(rows, total, 41)),
        ("finite", logits(rows, total, 3.0, 0.5, false, 45)),
    ];
    let mut y = classes(rows, total, 0.2, -100, 42);
    y[0] = 2; // a target at −inf in a row whose left half is −inf
    y[1] = (total - 1) as i64;
    y[5] = 7;
    let q = probs(rows, total, 43);
    let w = weights(total, 44);
    let up = Array1::from_shape_fn(rows, |i| 0.5 + i as f32);
    let y3 = ignoring_3(&y);
    for (name, prob, o) in option_sets(&w, &up) {
        let y = if o.ignore_index == Some(3) { &y3 } else { &y };
        let t = if prob {
            Targets::probabilities(q.view())
        } else {
            Targets::classes(y.view())
        };
        let per_row = CrossEntropyOptions {
            reduction: Reduction::None,
            ..o.clone()
        };
        for o in [o, per_row] {
            for (kind, x) in &inputs {
                let want = Reference
                    .cross_entropy_f64(x.view(), t.clone(), &o)
                    .unwrap();
                if *kind == "finite" && o.reduction != Reduction::None {
                    assert!(want.reduced.is_finite(), "{name}: a finite case");
                }
                let unit = grad_unit(&t, o.weight.map(|v| v.to_owned()).as_ref(), &o, rows);
                for cuts in splits(total) {
                    let got = sharded(bs, x, &cuts, &t, &o);
                    let what = format!("{what} {name} {:?} {kind} shards {cuts:?}", o.reduction);
                    assert_ce_close(&got, &want, total, unit, &what);
                }
            }
        }
    }
}

#[test]
fn sharded_cross_entropy_matches_the_reference_on_every_backend() {
    for b in backends() {
        check_sharded(&[b], b.name());
    }
}

#[test]
fn shards_on_different_backends_at_once() {
    check_sharded(&backends(), "mixed backends");
    // Two GPU engines (each its own device, as on a machine with two adapters) and the CPU.
    if let Some(g) = common::gpu() {
        let second: &'static smoothmax::Gpu = Box::leak(Box::new(smoothmax::Gpu::new().unwrap()));
        check_sharded(&[g, common::cpu(), second], "two GPU engines and the CPU");
    }
}

#[test]
fn half_precision_shards() {
    let (rows, total) = (6, 300);
    let x = logits(rows, total, 2.0, 0.0, false, 51).mapv(half::bf16::from_f32);
    let wide = x.mapv(|v| v.to_f32());
    let y = classes(rows, total, 0.0, -100, 52);
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.1,
        ..Default::default()
    };
    let t = Targets::classes(y.view());
    let want = Reference
        .cross_entropy_f64(wide.view(), t.clone(), &o)
        .unwrap();
    for b in backends() {
        let shards: Vec<LocalShard> = [0, 100, 101, 300]
            .windows(2)
            .map(|c| LocalShard {
                backend: b,
                logits: x.slice(s![.., c[0]..c[1]]).into(),
                offset: c[0],
            })
            .collect();
        let r = shard::local::cross_entropy(&shards, total, &t, &o).unwrap();
        let grads: Vec<_> = r.grad.unwrap();
        assert!(
            grads.iter().all(|g| g.dtype() == DType::BF16),
            "{}: bf16 gradient",
            b.name()
        );
        let g: Vec<Array2<f32>> = grads
            .iter()
            .map(|g| g.to_f32().into_dimensionality().unwrap())
            .collect();
        let g = concatenate(Axis(1), &g.iter().map(|g| g.view()).collect::<Vec<_>>()).unwrap();
        // The f32 result's error plus bf16's rounding (2^-9 relative) of each element.
        let wg = want.grad.as_ref().unwrap();
        for (a, e) in g.iter().zip(wg.iter()) {
            let bound = 2f64.powi(-8) * e.abs() + tol(total) * (1.0 / rows as f64);
            assert!(
                (*a as f64 - e).abs() <= bound,
                "{}: bf16 grad {a} vs {e}",
                b.name()
            );
        }
        let l = r.loss.scalar().unwrap() as f64;
        assert!(
            (l - want.reduced).abs() <= tol(total) * (1.0 + want.reduced.abs()),
            "{}: loss",
            b.name()
        );
    }
}

#[test]
fn merge_order_does_not_matter() {
    let (rows, total) = (9, 61);
    let mut x = logits(rows, total, 3.0, 0.5, false, 61);
    x.slice_mut(s![0, ..total / 2]).fill(f32::NEG_INFINITY);
    let mut y = classes(rows, total, 0.1, -100, 62);
    y[0] = (total - 1) as i64;
    let w = weights(total, 63);
    let o = CrossEntropyOptions {
        weight: Some(w.view()),
        label_smoothing: 0.3,
        z_loss: 1e-3,
        ..Default::default()
    };
    let t = Targets::classes(y.view());
    let cuts = [0, 1, 9, 20, 21, 40, 61];
    let parts: Vec<Vec<RowPartial>> = cuts
        .windows(2)
        .map(|c| {
            let sh = ShardedCrossEntropy::new(
                VocabShard {
                    offset: c[0],
                    total,
                },
                t.clone(),
                &o,
            );
            sh.statistics(common::cpu(), x.slice(s![.., c[0]..c[1]]).into())
                .unwrap()
        })
        .collect();
    let merge = |order: &[usize]| {
        let mut acc = vec![RowPartial::EMPTY; rows];
        for &k in order {
            merge_rows(&mut acc, &parts[k]).unwrap();
        }
        acc
    };
    // Forward, backward, interleaved, and as a tree ((0 1)(2 3))((4 5)).
    let mut tree = merge(&[0, 1]);
    merge_rows(&mut tree, &merge(&[2, 3])).unwrap();
    merge_rows(&mut tree, &merge(&[5, 4])).unwrap();
    let orders = [
        merge(&[0, 1, 2, 3, 4, 5]),
        merge(&[5, 4, 3, 2, 1, 0]),
        merge(&[3, 0, 5, 1, 4, 2]),
        tree,
    ];
    let sh = ShardedCrossEntropy::new(VocabShard { offset: 0, total }, t.clone(), &o);
    let want = Reference
        .cross_entropy_f64(x.view(), t.clone(), &o)
        .unwrap();
    let first = sh.finish(&orders[0]).unwrap();
    for (k, m) in orders.iter().enumerate() {
        let r = sh.finish(m).unwrap();
        let got = CrossEntropyOutput {
            loss: r.loss,
            grad: None,
            lse: r.lse,
            sums: r.sums,
        };
        let want = smoothmax::ReferenceCrossEntropy {
            grad: None,
            ..want.clone()
        };
        assert_ce_close(&got, &want, total, 1.0, &format!("merge order {k}"));
        // And the orders agree with each other to a few roundings of each value.
        for (a, b) in got.lse.iter().zip(first.lse.iter()) {
            assert!(
                a == b
                    || (a.is_nan() && b.is_nan())
                    || (a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(1.0),
                "order {k}: lse {a} vs {b}"
            );
        }
    }
}

#[test]
fn sharded_row_ops_match_the_reference() {
    let (rows, total) = (9, 61);
    let x = hard_logits(rows, total, 71);
    let bs = backends();
    // 1e38: T·lse(x/T) passes f32::MAX where lse(x/T) does not (the statistics then come
    // from the host).
    for t in [1.0f32, 0.5, 3.0, 1e38] {
        for cuts in splits(total) {
            let what = format!("T = {t}, shards {cuts:?}");
            let parts: Vec<(usize, usize, Vec<RowPartial>)> = cuts
                .windows(2)
                .enumerate()
                .map(|(k, c)| {
                    let xs = x.slice(s![.., c[0]..c[1]]);
                    (
                        c[0],
                        c[1],
                        shard::row_statistics(bs[k % bs.len()], xs.into(), t).unwrap(),
                    )
                })
                .collect();
            let mut merged = vec![RowPartial::EMPTY; rows];
            for (_, _, p) in &parts {
                merge_rows(&mut merged, p).unwrap();
            }
            let lse = Array1::from(shard::logsumexp(&merged, t).unwrap());
            assert_lse_close(
                lse.view(),
                Reference.logsumexp_f64(x.view(), t).unwrap().view(),
                total,
                t,
                &what,
            );
            for (op, log) in [(RowOp::Softmax, false), (RowOp::LogSoftmax, true)] {
                let slices: Vec<Array2<f32>> = parts
                    .iter()
                    .enumerate()
                    .map(|(k, (a, b, p))| {
                        let xs = x.slice(s![.., *a..*b]);
                        let y = shard::row_op(
                            bs[k % bs.len()],
                            op,
                            xs.into(),
                            t,
                            p,
                            &merged,
                            DType::F32,
                        )
                        .unwrap();
                        y.to_f32().into_dimensionality().unwrap()
                    })
                    .collect();
                let got = concatenate(
                    Axis(1),
                    &slices.iter().map(|v| v.view()).collect::<Vec<_>>(),
                )
                .unwrap();
                let want = Reference.softmax_f64(x.view(), t, log).unwrap();
                assert_close_2d(got.view(), want.view(), &format!("{what} {op:?}"));
            }
        }
    }
}

#[test]
fn bad_shards_are_errors() {
    let (rows, total) = (3, 10);
    let x = logits(rows, total, 1.0, 0.0, false, 81);
    let y = ndarray::array![1i64, 9, 4];
    let o = CrossEntropyOptions::default();
    let t = Targets::classes(y.view());
    let cpu = common::cpu();
    let stats = |offset: usize, a: usize, b: usize| {
        ShardedCrossEntropy::new(VocabShard { offset, total }, t.clone(), &o)
            .statistics(cpu, x.slice(s![.., a..b]).into())
    };
    let err = |r: smoothmax::Result<_>| r.map(|_: Vec<RowPartial>| ()).unwrap_err().to_string();
    assert!(err(stats(6, 0, 5)).contains("does not fit rows of 10 classes"));
    let (a, b) = (stats(0, 0, 5).unwrap(), stats(5, 5, 10).unwrap());
    let sh = ShardedCrossEntropy::new(VocabShard { offset: 0, total }, t.clone(), &o);
    // A shard missing, a shard merged twice, a target no shard holds.
    let e = sh.finish(&a).unwrap_err().to_string();
    assert!(
        e.contains("row 0: the merged statistics cover 5 of 10 classes"),
        "{e}"
    );
    let mut twice = a.clone();
    merge_rows(&mut twice, &a).unwrap();
    merge_rows(&mut twice, &b).unwrap();
    assert!(sh
        .finish(&twice)
        .unwrap_err()
        .to_string()
        .contains("cover 15 of 10"));
    let mut no_target = a.clone();
    let mut b2 = b.clone();
    b2[1].flags &= !RowPartial::HAS_TARGET;
    merge_rows(&mut no_target, &b2).unwrap();
    assert!(sh
        .finish(&no_target)
        .unwrap_err()
        .to_string()
        .contains("row 1: no shard holds its target class 9"));
    // Weights of the shard's length instead of the vocabulary's, statistics of other rows.
    let w = Array1::<f32>::ones(5);
    let ow = CrossEntropyOptions {
        weight: Some(w.view()),
        ..Default::default()
    };
    let e = ShardedCrossEntropy::new(VocabShard { offset: 0, total }, t.clone(), &ow)
        .statistics(cpu, x.slice(s![.., 0..5]).into())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weight has length 5, expected the whole vocabulary's 10 classes"),
        "{e}"
    );
    let mut m = a.clone();
    merge_rows(&mut m, &b).unwrap();
    assert!(merge_rows(&mut m, &a[..2])
        .unwrap_err()
        .to_string()
        .contains("3 rows with 2 rows"));
    // The first shard's gradient pass from given statistics: its error.
    let grad_err = |local: &[RowPartial], merged: &[RowPartial]| {
        let xs = x.slice(s![.., 0..5]).into();
        sh.gradient(cpu, xs, local, merged, None)
            .unwrap_err()
            .to_string()
    };
    let e = grad_err(&a[..2], &m);
    assert!(
        e.contains("this shard's statistics have 2 rows, the logits 3"),
        "{e}"
    );
    // The shard's own statistics passed as the merged ones; another shard's as its own.
    let e = grad_err(&a, &a);
    assert!(
        e.contains("row 0: the merged statistics cover 5 of 10 classes"),
        "{e}"
    );
    let narrow = stats(0, 0, 4).unwrap();
    let e = grad_err(&narrow, &m);
    assert!(
        e.contains("row 0: this shard's statistics cover 4 classes, its logits 5"),
        "{e}"
    );
    // In one process the shards must tile the row: a doubled shard with a missing one of the
    // same width has the right total width, and is still refused.
    let piece = |offset: usize, a: usize, b: usize| LocalShard {
        backend: cpu,
        logits: x.slice(s![.., a..b]).into(),
        offset,
    };
    let doubled = [piece(0, 0, 5), piece(0, 0, 5)];
    let e = shard::local::cross_entropy(&doubled, total, &t, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not tile the 10 classes"), "{e}");
    let short = [piece(0, 0, 5), piece(5, 5, 9)];
    let e = shard::local::cross_entropy(&short, total, &t, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cover columns [0, 9) of 10"), "{e}");
    let past = [piece(0, 0, 5), piece(usize::MAX, 5, 10)];
    assert!(shard::local::cross_entropy(&past, total, &t, &o).is_err());
    assert!(shard::logsumexp(&m, 0.0)
        .unwrap_err()
        .to_string()
        .contains("temperature"));
}
