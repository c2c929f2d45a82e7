//! Every numeric parameter of the cross-entropy (label smoothing, z-loss, softcap, class
//! weights, the upstream gradient) swept over its whole accepted range on every fast backend,
//! against the f64 reference, on the inputs of `common::sweep`. Where the exact answer
//! overflows f32 the answer is the infinity of its sign.

mod common;

use common::fast_backends;
use common::sweep::{assert_scaled, inputs, positives, signed};
use ndarray::{Array1, Array2};
use smoothmax::Backend;
use smoothmax::{CrossEntropyOptions, Loss, Reduction, Reference, Targets, Upstream};

/// The targets of the sweep: a class per row (row 2's is ignored), or a distribution.
struct Case {
    x: Array2<f32>,
    y: Array1<i64>,
    q: Array2<f32>,
}

fn case() -> Case {
    let x = inputs();
    let (rows, cols) = x.dim();
    // Row 4's target sits on a −inf logit half the time (loss +inf there, as in PyTorch).
    let y = Array1::from_iter((0..rows).map(|i| if i == 2 { -100 } else { (i * 7 % cols) as i64 }));
    let mut q = Array2::from_shape_fn((rows, cols), |(i, j)| ((i + 3 * j) % 5) as f32);
    for mut r in q.rows_mut() {
        let s: f32 = r.sum();
        r.mapv_inplace(|v| v / s);
    }
    Case { x, y, q }
}

/// One call on every fast backend against the reference, with the error scales derived in the
/// crate docs: a row's loss and gradient errors are relative to the sum of the absolute values
/// of the terms they are made of (`|p_j| ≤ 1`):
/// loss_i: `k_i = (1−ls)·w_y + (ls/C)·Σw` (class) or `Σ_c w_c q'_c` (probabilities), plus `|z|`;
/// grad_i: `|s_ce|·(k_i + max_j k_j) + |s_z·2z·lse_i|`, `s_ce`, `s_z` the upstream over the
/// mean's denominators. Under softcap the logits become `x' = c·tanh(x/c)` in f32, each exact
/// to a few ulp of `|x'|`: the loss moves by up to `(k_i + 2|z·lse_i|)·δ`, lse by `δ` and the
/// gradient by its coefficients times `2δ`, `δ = 3ε·max_j |x'_j|` (`tol` ≥ 32ε covers the
/// `3ε`), since `lse` and each `p_j` move by at most the largest change of a logit. (With
/// smoothing or probability targets a linear-sum weight below f32's range relative to the
/// row's largest counts as its smallest value, an absolute error the crate docs bound; no row
/// here has one, so no absolute floor applies: `cross_entropy_rows_at_the_edges_of_normalization`
/// has one.)
fn check_ce(c: &Case, probs: bool, o: &CrossEntropyOptions, what: &str) {
    let (rows, cols) = c.x.dim();
    let t = if probs {
        Targets::probabilities(c.q.view())
    } else {
        Targets::classes(c.y.view())
    };
    let want = Reference
        .cross_entropy_f64(c.x.view(), t.clone(), o)
        .unwrap();
    let w = |j: usize| o.weight.as_ref().map_or(1.0, |w| w[j] as f64);
    let ls = o.label_smoothing as f64;
    let wsum: f64 = (0..cols).map(w).sum();
    let wmax = (0..cols).map(w).fold(0.0, f64::max);
    let counted = |i: usize| probs || c.y[i] != o.effective_ignore_index();
    let (d_ce, d_z) = if o.reduction == Reduction::Mean {
        if probs {
            (rows as f64, rows as f64)
        } else {
            let d: f64 = (0..rows)
                .filter(|&i| counted(i))
                .map(|i| w(c.y[i] as usize))
                .sum();
            (d, (0..rows).filter(|&i| counted(i)).count() as f64)
        }
    } else {
        (1.0, 1.0)
    };
    let z = o.z_loss as f64;
    let mut loss_scale = vec![0.0; rows];
    let mut lse_scale = vec![1.0; rows];
    let mut grad_scale = vec![0.0; rows * cols];
    // max_j |x'_j| under softcap (every x' is a rounded f32, −c for −inf logits), else 0.
    let capped_max = |i: usize| {
        o.softcap.map_or(0.0, |cap| {
            let cap = cap as f64;
            c.x.row(i)
                .iter()
                .map(|&v| (cap * (v as f64 / cap).tanh()).abs())
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
        })
    };
    for i in (0..rows).filter(|&i| counted(i)) {
        let qs = |j: usize| c.q[[i, j]] as f64 * (1.0 - ls) + ls / cols as f64;
        let (k, kmax) = if probs {
            let ks: Vec<f64> = (0..cols).map(|j| w(j) * qs(j)).collect();
            (
                ks.iter().sum::<f64>(),
                ks.iter().copied().fold(0.0, f64::max),
            )
        } else {
            (
                (1.0 - ls) * w(c.y[i] as usize) + ls / cols as f64 * wsum,
                wmax,
            )
        };
        let u = match &o.upstream {
            Upstream::One => 1.0,
            Upstream::Scalar(u) => *u as f64,
            Upstream::PerRow(v) => v[i] as f64,
        };
        let lse = want.lse[i];
        let cond = 2.0 * capped_max(i);
        loss_scale[i] = k + z.abs() + (k + (2.0 * z * lse).abs()) * cond;
        lse_scale[i] += cond;
        let s = ((u / d_ce).abs() * (k + kmax) + (u / d_z * 2.0 * z * lse).abs()) * (1.0 + cond);
        grad_scale[i * cols..(i + 1) * cols].fill(if s.is_finite() { s } else { 0.0 });
    }
    let no_floor = vec![0.0; rows * cols];
    for b in fast_backends() {
        let what = format!("{what} on {}", b.name());
        let got = b
            .cross_entropy(c.x.view(), t.clone(), o)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match &got.loss {
            Loss::PerRow(l) => assert_scaled(
                l.as_slice().unwrap(),
                want.per_row.as_slice().unwrap(),
                &loss_scale,
                &no_floor,
                cols,
                &format!("{what}: loss"),
            ),
            Loss::Scalar(l) => {
                let s: f64 = loss_scale.iter().sum::<f64>() / d_ce.max(f64::MIN_POSITIVE);
                assert_scaled(
                    &[*l],
                    &[want.reduced],
                    &[s],
                    &[0.0],
                    cols * rows,
                    &format!("{what}: loss"),
                )
            }
        }
        assert_scaled(
            got.lse.as_slice().unwrap(),
            want.lse.as_slice().unwrap(),
            &lse_scale,
            &no_floor,
            cols,
            &format!("{what}: lse"),
        );
        let g = got.grad.unwrap();
        let wg = want.grad.as_ref().unwrap();
        assert_scaled(
            g.as_slice().unwrap(),
            wg.as_slice().unwrap(),
            &grad_scale,
            &no_floor,
            cols,
            &format!("{what}: grad"),
        );
    }
}

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

fn opts<'a>() -> CrossEntropyOptions<'a> {
    CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    }
}

#[test]
fn cross_entropy_label_smoothing_over_0_to_1() {
    let c = case();
    let below_one = 1.0 - f32::EPSILON / 2.0;
    for ls in [
        0.0,
        f32::from_bits(1),
        1e-40,
        1e-30,
        1e-7,
        0.3,
        below_one,
        1.0,
    ] {
        for probs in [false, true] {
            for reduction in REDUCTIONS {
                let o = CrossEntropyOptions {
                    label_smoothing: ls,
                    reduction,
                    ..opts()
                };
                check_ce(
                    &c,
                    probs,
                    &o,
                    &format!("ls={ls:e} probs={probs} {reduction:?}"),
                );
            }
        }
    }
}

#[test]
fn cross_entropy_z_loss_of_every_size_and_sign() {
    let c = case();
    for z in signed() {
        for reduction in REDUCTIONS {
            let o = CrossEntropyOptions {
                z_loss: z,
                reduction,
                ..opts()
            };
            check_ce(&c, false, &o, &format!("z={z:e} {reduction:?}"));
        }
        let o = CrossEntropyOptions {
            z_loss: z,
            label_smoothing: 0.2,
            ..opts()
        };
        check_ce(&c, true, &o, &format!("z={z:e} probs"));
    }
}

#[test]
fn cross_entropy_softcap_from_subnormal_to_max() {
    let c = case();
    for cap in positives() {
        for probs in [false, true] {
            let o = CrossEntropyOptions {
                softcap: Some(cap),
                label_smoothing: 0.1,
                z_loss: 1e-3,
                reduction: Reduction::None,
                ..opts()
            };
            check_ce(&c, probs, &o, &format!("softcap={cap:e} probs={probs}"));
        }
    }
}

#[test]
fn cross_entropy_weights_from_zero_to_max() {
    let c = case();
    let cols = c.x.ncols();
    let mut values = vec![0.0];
    values.extend(positives());
    for v in values {
        // One class in three weighted v, the rest 1; then every class v.
        let some = Array1::from_shape_fn(cols, |j| if j % 3 == 0 { v } else { 1.0 });
        let all = Array1::from_elem(cols, v);
        for (w, kind) in [(&some, "some"), (&all, "all")] {
            for reduction in REDUCTIONS {
                for ls in [0.0, 0.3] {
                    for probs in [false, true] {
                        let o = CrossEntropyOptions {
                            weight: Some(w.view()),
                            label_smoothing: ls,
                            reduction,
                            ..opts()
                        };
                        let what = format!("w {kind}={v:e} ls={ls} probs={probs} {reduction:?}");
                        check_ce(&c, probs, &o, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn cross_entropy_upstream_gradient_of_every_size_and_sign() {
    let c = case();
    let rows = c.x.nrows();
    for u in signed() {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let o = CrossEntropyOptions {
                upstream: Upstream::Scalar(u),
                reduction,
                ..opts()
            };
            check_ce(&c, false, &o, &format!("upstream={u:e} {reduction:?}"));
        }
        let per_row = Array1::from_shape_fn(rows, |i| if i % 2 == 0 { u } else { 1.0 });
        let o = CrossEntropyOptions {
            upstream: Upstream::PerRow(per_row),
            reduction: Reduction::None,
            label_smoothing: 0.1,
            ..opts()
        };
        check_ce(&c, true, &o, &format!("upstream per row={u:e}"));
    }
}

/// Inputs the sweep's rows do not reach: a row whose first block (and lanes) hold only
/// −f32::MAX before its max, with smoothing (the GPU's running linear sum once skipped the
/// shift from a max of exactly −f32::MAX); and normalized target weights that would underflow
/// as products of separately normalized factors (w = [3e38, 3e8], q = [1, 1e-38]: loss 1.8e9).
#[test]
fn cross_entropy_rows_at_the_edges_of_normalization() {
    let cols = 64;
    let mut x = Array2::<f32>::from_elem((3, cols), -f32::MAX);
    x[[0, cols - 1]] = 0.0;
    x[[1, cols / 2]] = 5.0;
    x[[2, 0]] = f32::MAX;
    x[[2, 1]] = 1.0;
    let y = Array1::from(vec![3i64, 7, 1]);
    let q = Array2::from_shape_fn((3, cols), |(i, j)| (j + i) as f32 / 100.0);
    let c = Case { x: x.clone(), y, q };
    for ls in [0.0, 0.3] {
        for probs in [false, true] {
            let o = CrossEntropyOptions {
                label_smoothing: ls,
                reduction: Reduction::None,
                ..opts()
            };
            check_ce(&c, probs, &o, &format!("-MAX rows ls={ls} probs={probs}"));
        }
    }
    let x2 = ndarray::array![[3e38f32, -3e38]];
    let w = ndarray::array![3e38f32, 3e8];
    let q2 = ndarray::array![[1.0f32, 1e-38]];
    let c2 = Case {
        x: x2,
        y: ndarray::array![0i64],
        q: q2,
    };
    let o = CrossEntropyOptions {
        weight: Some(w.view()),
        reduction: Reduction::None,
        ..opts()
    };
    check_ce(&c2, true, &o, "weights times targets below f32's range");
    // Within that floor, but finite: the term is the smallest subnormal's, not infinite.
    for b in fast_backends() {
        let t = Targets::probabilities(c2.q.view());
        let out = b.cross_entropy(c2.x.view(), t.clone(), &o).unwrap();
        let finite = match &out.loss {
            Loss::PerRow(l) => l.iter().all(|v| v.is_finite()),
            Loss::Scalar(v) => v.is_finite(),
        };
        assert!(finite, "{}: {:?}", b.name(), out.loss);
    }
}
