//! Every numeric parameter of the surrogates (β, T, μ, margin, weights, pos_weight) swept over
//! its whole accepted range on every fast backend, on the inputs of `common::sweep`, against
//! the f64 reference. Each comparison's error scale is derived from the formula it checks
//! (see `assert_scaled`): an f32 probability `p = e^z / s` is exact to `ε·|z|` relative
//! (the exponent's one rounding) and to `2⁻¹²⁶` absolute (`exp` flushes below it), and a
//! quantity made from `p` inherits those errors times the factors it is multiplied by.

mod common;

use common::fast_backends;
use common::sweep::{assert_scaled, inputs, positives, signed, P_FLOOR};
use ndarray::{Array1, Array2};
use smoothmax::surrogates::reference::{softmax_shifted, surrogate_f64};
use smoothmax::{
    BinaryLoss, BinaryOptions, MultiMarginOptions, PairwiseForm, Reduction, Surrogate,
    SurrogateOutput,
};

/// Runs `call` on every fast backend and compares value, gradient (and the pairwise max's
/// second gradient) with the reference under the given scales.
fn check(call: &Surrogate, scales: &Scales, terms: usize, what: &str) {
    let want = surrogate_f64(call).unwrap();
    for b in fast_backends() {
        let what = format!("{what} on {}", b.name());
        let got: SurrogateOutput = b.surrogate(call).unwrap_or_else(|e| panic!("{what}: {e}"));
        let wv = want.value.to_vec();
        let gv = got.value.to_vec();
        assert_scaled(
            &gv,
            &wv,
            &scales.value,
            &scales.value_floor,
            terms,
            &format!("{what}: value"),
        );
        let g = got.grad.as_standard_layout();
        let w = want.grad.as_standard_layout();
        let (gs, ws) = (g.as_slice().unwrap(), w.as_slice().unwrap());
        assert_scaled(
            gs,
            ws,
            &scales.grad,
            &scales.grad_floor,
            terms,
            &format!("{what}: grad"),
        );
        if let (Some(g), Some(w)) = (&got.grad_b, &want.grad_b) {
            let (g, w) = (g.as_standard_layout(), w.as_standard_layout());
            let (gs, ws) = (g.as_slice().unwrap(), w.as_slice().unwrap());
            assert_scaled(
                gs,
                ws,
                &scales.grad,
                &scales.grad_floor,
                terms,
                &format!("{what}: grad_b"),
            );
        }
    }
}

/// Error scales and absolute floors for one call's value and gradient, element by element.
struct Scales {
    value: Vec<f64>,
    value_floor: Vec<f64>,
    grad: Vec<f64>,
    grad_floor: Vec<f64>,
}

impl Scales {
    fn uniform(values: usize, value: f64, grads: usize, grad: f64) -> Self {
        Scales {
            value: vec![value; values],
            value_floor: vec![0.0; values],
            grad: vec![grad; grads],
            grad_floor: vec![0.0; grads],
        }
    }
}

/// A row's softmax of `κ·x` in f64 and, per element, its error scale `p(1 + |z|)` and the
/// flush floor (probabilities are `P_FLOOR`-exact in absolute terms); `None` for rows the
/// table makes NaN.
fn row_p(row: &[f64], kappa: &dyn Fn(f64) -> f64) -> Option<(Vec<f64>, Vec<f64>, f64)> {
    let (p, m) = softmax_shifted(row, kappa)?;
    let err = row
        .iter()
        .zip(&p)
        .map(|(&x, &p)| {
            let z = if x == f64::NEG_INFINITY {
                0.0
            } else {
                kappa(x - m).abs()
            };
            p * (1.0 + z) + P_FLOOR
        })
        .collect();
    Some((p, err, m))
}

/// Boltzmann: `f = m + Σ p_k (x_k − m)`, `g_j = p_j (1 + β((x_j − m) − (f − m)))`.
fn boltzmann_scales(x: &Array2<f32>, beta: f32) -> Scales {
    let (rows, cols) = x.dim();
    let mut s = Scales::uniform(rows, 0.0, rows * cols, 0.0);
    let sign = if beta < 0.0 { -1.0 } else { 1.0 };
    let k = beta.abs() as f64;
    for i in 0..rows {
        let xs: Vec<f64> = x.row(i).iter().map(|&v| sign * v as f64).collect();
        let Some((p, err, m)) = row_p(&xs, &|d| k * d) else {
            continue;
        };
        let fin = |j: usize| xs[j].is_finite();
        let dist = |j: usize| if fin(j) { (xs[j] - m).abs() } else { 0.0 };
        let shift: f64 = (0..cols).map(|j| p[j] * dist(j)).sum();
        // The shift's errors: relative (times tol), and the flush floor of each p.
        let (shift_err, shift_floor): (f64, f64) = (0..cols)
            .map(|j| (err[j] * dist(j), P_FLOOR * dist(j)))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        s.value[i] = shift + shift_err;
        s.value_floor[i] = shift_floor;
        for j in 0..cols {
            let factor = 1.0 + k * (dist(j) + shift + shift_err + shift_floor);
            s.grad[i * cols + j] = err[j] * factor + p[j] * k * shift_err;
            if fin(j) {
                s.grad_floor[i * cols + j] = P_FLOOR * factor + p[j] * k * shift_floor;
            }
        }
    }
    s
}

#[test]
fn boltzmann_at_every_beta() {
    let x = inputs();
    for beta in signed() {
        let call = Surrogate::BoltzmannMax { x: x.view(), beta };
        check(
            &call,
            &boltzmann_scales(&x, beta),
            x.ncols(),
            &format!("boltzmann β={beta:e}"),
        );
    }
}

/// The T-scaled family: `p = softmax(x/T)` per row, weights `g_ij`, `f_i = Σ_j g_ij p_ij`,
/// gradient `u·p_ij (g_ij − f_i)/T`: scale `(err_ij·(|g_ij| + |f_i| + F_i) + p_ij F_i)·u/T`
/// with `F_i = Σ_j |g_ij| err_ij` the error scale of `f_i`.
fn t_scales(x: &Array2<f32>, t: f32, g: &dyn Fn(usize, usize) -> f64, u: f64) -> Scales {
    let (rows, cols) = x.dim();
    let mut s = Scales::uniform(rows, 0.0, rows * cols, 0.0);
    let t = t as f64;
    for i in 0..rows {
        let xs: Vec<f64> = x.row(i).iter().map(|&v| v as f64).collect();
        let Some((p, err, _)) = row_p(&xs, &|d| d / t) else {
            continue;
        };
        let f: f64 = (0..cols).map(|j| g(i, j) * p[j]).sum();
        let fe: f64 = (0..cols).map(|j| g(i, j).abs() * err[j]).sum();
        s.value[i] = fe;
        for j in 0..cols {
            s.grad[i * cols + j] = (err[j] * (g(i, j).abs() + f.abs() + fe) + p[j] * fe) * u / t;
        }
    }
    s
}

#[test]
fn soft_argmax_accuracy_and_macro_f1_at_every_temperature() {
    let x = inputs();
    let (rows, cols) = x.dim();
    let y = Array1::from_iter((0..rows).map(|i| (i * 7 % cols) as i64));
    for t in positives() {
        let call = Surrogate::SoftArgmax {
            x: x.view(),
            temperature: t,
        };
        let sc = t_scales(&x, t, &|_, j| j as f64, 1.0);
        check(&call, &sc, cols, &format!("soft-argmax T={t:e}"));

        let call = Surrogate::SmoothAccuracy {
            logits: x.view(),
            targets: y.view(),
            temperature: t,
        };
        let hit = |i: usize, j: usize| (j as i64 == y[i]) as u8 as f64;
        let mut sc = t_scales(&x, t, &hit, 1.0 / rows as f64);
        let mean = sc.value.iter().sum::<f64>() / rows as f64;
        let mean_floor = sc.value_floor.iter().sum::<f64>() / rows as f64;
        sc.value = vec![mean];
        sc.value_floor = vec![mean_floor];
        check(&call, &sc, cols, &format!("accuracy T={t:e}"));

        // Macro F1: g_ik = ∂F/∂p_ik is bounded by 2/(C·min(P_k + N_k)) ≤ 2/C per count; the
        // value is a mean of ratios in [0, 1].
        let call = Surrogate::SmoothF1Macro {
            logits: x.view(),
            targets: y.view(),
            temperature: t,
        };
        let g = |_: usize, _: usize| 4.0 / cols as f64;
        let mut sc = t_scales(&x, t, &g, 1.0);
        sc.value = vec![1.0];
        sc.value_floor = vec![0.0];
        check(&call, &sc, rows * cols, &format!("macro f1 T={t:e}"));
    }
}

#[test]
fn pairwise_max_at_every_mu_and_beta() {
    let a = inputs();
    let (rows, cols) = a.dim();
    let mut b = Array2::from_shape_fn((rows, cols), |(i, j)| a[[(i + 1) % rows, (j * 5) % cols]]);
    // Equal pairs too (a − b = 0: the sqrt form's hypot with a flushed μ/2 was 0/0).
    for j in 0..cols {
        b[[1, j]] = a[[1, j]];
    }
    let n = rows * cols;
    // Value: |a| + |b| (a sum of both); gradients are bounded by 1.2 (the erf form's overshoot).
    let value: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(&a, &b)| (a.abs() + b.abs()) as f64)
        .collect();
    let sc = Scales {
        value,
        value_floor: vec![0.0; n],
        grad: vec![1.2; n],
        grad_floor: vec![0.0; n],
    };
    for mu in positives() {
        let logcosh = (mu >= f32::MIN_POSITIVE).then_some(PairwiseForm::LogCosh { k: mu });
        for form in [PairwiseForm::Erf { mu }, PairwiseForm::Sqrt { mu }]
            .into_iter()
            .chain(logcosh)
        {
            let call = Surrogate::PairwiseMax {
                a: a.view(),
                b: b.view(),
                form,
            };
            check(&call, &sc, 1, &format!("{} μ={mu:e}", form.name()));
        }
    }
    for beta in signed() {
        let form = PairwiseForm::Acon { beta };
        let call = Surrogate::PairwiseMax {
            a: a.view(),
            b: b.view(),
            form,
        };
        check(&call, &sc, 1, &format!("acon β={beta:e}"));
    }
}

#[test]
fn binary_losses_at_every_weight_and_pos_weight() {
    let mut x = inputs();
    // Scores where e^{±f} leaves f32's normal range, weighted up to f32::MAX: w·e^{−100} is
    // 3.7e-6 at w = 1e38 though e^{−100} underflows.
    for (j, f) in [
        (4, 100.0),
        (5, -100.0),
        (6, 95.0),
        (7, -95.0),
        (8, 150.0),
        (9, -150.0),
    ] {
        x[[0, j]] = f;
    }
    let (rows, cols) = x.dim();
    let n = rows * cols;
    let hard = Array2::from_shape_fn((rows, cols), |(i, j)| ((i + j) % 3 == 0) as u8 as f32);
    let soft = Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 3 + j) % 7) as f32 / 6.0);
    let mut pws = positives();
    pws.push(0.0);
    for w in signed() {
        let wr = Array2::from_shape_fn((1, cols), |(_, j)| if j % 2 == 0 { w } else { 1.0 });
        for loss in BinaryLoss::ALL {
            let logistic = loss == BinaryLoss::Logistic;
            let labels = if logistic { &soft } else { &hard };
            for (pw, reduction) in [
                (1.0, Reduction::None),
                (1.0, Reduction::Mean),
                (1.0, Reduction::Sum),
            ]
            .into_iter()
            .chain(
                pws.iter()
                    .filter(|_| logistic)
                    .map(|&p| (p, Reduction::None)),
            ) {
                let pwv = Array1::from_shape_fn(cols, |j| if j % 3 == 0 { pw } else { 1.0 });
                let options = BinaryOptions {
                    weight: Some(wr.view()),
                    pos_weight: logistic.then(|| pwv.view()),
                    reduction,
                };
                let call = Surrogate::Binary {
                    logits: x.view(),
                    labels: labels.view(),
                    loss,
                    options,
                };
                let sc = binary_scales(&x, labels, &wr, &pwv, loss, reduction);
                let what = format!("{} w={w:e} pw={pw:e} {reduction:?}", loss.name());
                check(
                    &call,
                    &sc,
                    if reduction == Reduction::None { 1 } else { n },
                    &what,
                );
            }
        }
    }
}

/// Per element `|w|·(|ℓ terms|)` for the value and `|w|·(|ℓ' terms|)·scale` for the gradient.
fn binary_scales(
    x: &Array2<f32>,
    y: &Array2<f32>,
    w: &Array2<f32>,
    pw: &Array1<f32>,
    loss: BinaryLoss,
    reduction: Reduction,
) -> Scales {
    let (rows, cols) = x.dim();
    let n = rows * cols;
    let g_scale = if reduction == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    let mut value = vec![0.0; n];
    let mut grad = vec![0.0; n];
    for ((i, j), &f) in x.indexed_iter() {
        let (f, y, wj) = (f as f64, y[[i, j]] as f64, w[[0, j]].abs() as f64);
        let (l, d) = match loss {
            BinaryLoss::Logistic => {
                let lw = 1.0 + (pw[j] as f64 - 1.0) * y;
                (
                    (1.0 - y) * f.abs() + lw.abs() * (f.abs() + 1.0),
                    lw.abs() + pw[j] as f64 * y,
                )
            }
            BinaryLoss::Exponential => {
                let s = if y > 0.0 { 1.0 } else { -1.0 };
                let e = (-s * f).exp();
                (e * (1.0 + f.abs()), e * (1.0 + f.abs()))
            }
            _ => ((1.0 + f.abs()).powi(2), 2.0 * (1.0 + f.abs())),
        };
        value[i * cols + j] = wj * l;
        grad[i * cols + j] = wj * d * g_scale;
    }
    if reduction != Reduction::None {
        let total: f64 = value.iter().sum::<f64>()
            / if reduction == Reduction::Mean {
                n as f64
            } else {
                1.0
            };
        value = vec![total];
    }
    let nv = value.len();
    Scales {
        value,
        value_floor: vec![0.0; nv],
        grad,
        grad_floor: vec![0.0; n],
    }
}

#[test]
fn multi_margin_at_every_margin_and_weight() {
    let x = inputs();
    let (rows, cols) = x.dim();
    let y = Array1::from_iter((0..rows).map(|i| (i * 7 % cols) as i64));
    for v in signed() {
        let wc = Array1::from_shape_fn(cols, |j| if j % 2 == 0 { v } else { 1.0 });
        for p in [1, 2] {
            for reduction in [Reduction::None, Reduction::Mean] {
                for (margin, weight, what) in [(1.0, Some(wc.view()), "w"), (v, None, "margin")] {
                    let options = MultiMarginOptions {
                        p,
                        margin,
                        weight,
                        reduction,
                    };
                    let call = Surrogate::MultiMargin {
                        logits: x.view(),
                        targets: y.view(),
                        options,
                    };
                    let wv = |c: usize| weight.map_or(1.0, |w| w[c].abs() as f64);
                    let sc = margin_scales(&x, &y, p, margin, &wv, reduction);
                    check(
                        &call,
                        &sc,
                        cols,
                        &format!("multi-margin {what}={v:e} p={p} {reduction:?}"),
                    );
                }
            }
        }
    }
}

/// Row loss `(w_y/C) Σ_j max(0, margin − x_y + x_j)^p` with `z_j` formed from `x_j − x_y`
/// (exact for nearby values) plus the margin: scale `(w_y/C)·Σ_j p·(|x_j − x_y| + |margin|)^p`;
/// gradient `(w_y/C)·p·(|x_j − x_y| + |margin|)^{p−1}` per element (the row's sum for `j = y`).
fn margin_scales(
    x: &Array2<f32>,
    y: &Array1<i64>,
    p: u32,
    margin: f32,
    w: &dyn Fn(usize) -> f64,
    reduction: Reduction,
) -> Scales {
    let (rows, cols) = x.dim();
    let g_scale = if reduction == Reduction::Mean {
        1.0 / rows as f64
    } else {
        1.0
    };
    let mut value = vec![0.0; rows];
    let mut grad = vec![0.0; rows * cols];
    for i in 0..rows {
        let yi = y[i] as usize;
        let c = w(yi) / cols as f64;
        let xy = x[[i, yi]] as f64;
        let mut sum_g = 0.0;
        for j in 0..cols {
            let z = (x[[i, j]] as f64 - xy).abs() + (margin as f64).abs();
            value[i] += c * p as f64 * z.powi(p as i32);
            let g = c * p as f64 * z.powi(p as i32 - 1) * g_scale;
            grad[i * cols + j] = g;
            sum_g += g;
        }
        grad[i * cols + yi] = sum_g;
    }
    if reduction != Reduction::None {
        let total: f64 = value.iter().sum::<f64>() * g_scale;
        value = vec![total];
    }
    let nv = value.len();
    Scales {
        value,
        value_floor: vec![0.0; nv],
        grad,
        grad_floor: vec![0.0; rows * cols],
    }
}
