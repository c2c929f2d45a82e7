//! The f64 oracle for the surrogates: each op written for obviousness from its formula (module
//! docs of [`crate::surrogates`]), on f64 inputs so that finite differences can check the
//! gradients to ~1e-8. [`surrogate_f64`] runs a [`Surrogate`] call through them.

use super::prepare::loss_sums;
use super::{prepare, BinaryLoss, PairwiseForm, Surrogate, SurrogateOutput, Value};
use crate::cross_entropy::{LossSums, Reduction};
use crate::error::Result;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use std::f64::consts::PI;

/// `softmax(z)` of one row by the table of the crate docs: `None` when the row has a NaN, a
/// `+inf` or no finite value (every output NaN); `−inf` entries get exactly 0.
pub fn softmax_row(z: &[f64]) -> Option<Vec<f64>> {
    if z.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return None;
    }
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return None;
    }
    let e: Vec<f64> = z.iter().map(|&v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    Some(e.into_iter().map(|v| v / s).collect())
}

/// `softmax(κ·x)` of one row with `κ > 0` applied by `kappa` to the differences `x − m` (formed
/// first, so values `ε·|x|` apart keep their spread however large `κ·x` is), by the same
/// table as [`softmax_row`]; returns `p` and the row max `m`.
pub fn softmax_shifted(x: &[f64], kappa: impl Fn(f64) -> f64) -> Option<(Vec<f64>, f64)> {
    if x.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return None;
    }
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return None;
    }
    let e: Vec<f64> = x.iter().map(|&v| kappa(v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    Some((e.into_iter().map(|v| v / s).collect(), m))
}

fn nan_row(n: usize) -> Vec<f64> {
    vec![f64::NAN; n]
}

/// Boltzmann operator per row: `(value [B], gradient [B, C])`.
pub fn boltzmann_max(x: ArrayView2<f64>, beta: f64) -> (Array1<f64>, Array2<f64>) {
    if beta < 0.0 {
        // f(x, β) = −f(−x, −β); the gradient is unchanged (two sign flips).
        let (v, g) = boltzmann_max((-&x).view(), -beta);
        return (-v, g);
    }
    let (rows, cols) = x.dim();
    let mut value = Array1::zeros(rows);
    let mut grad = Array2::zeros((rows, cols));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let xs: Vec<f64> = row.to_vec();
        let pm = if beta == 0.0 {
            // The mean; any infinity makes it NaN (0·inf in the exponent).
            (xs.iter().all(|v| v.is_finite()) && cols > 0).then(|| {
                let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (vec![1.0 / cols as f64; cols], m)
            })
        } else {
            softmax_shifted(&xs, |d| beta * d)
        };
        let Some((p, m)) = pm else {
            value[i] = f64::NAN;
            grad.row_mut(i).assign(&Array1::from(nan_row(cols)));
            continue;
        };
        // f = m + Σ p_k (x_k − m): relative to the max, so x_j − f = (x_j − m) − Σ p_k (x_k − m)
        // is exactly 0 for ties however large β is. Terms with p = 0 (−inf entries)
        // contribute nothing, not 0·inf.
        let shift: f64 = p
            .iter()
            .zip(&xs)
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, x)| p * (x - m))
            .sum();
        value[i] = m + shift;
        for j in 0..cols {
            grad[[i, j]] = if p[j] > 0.0 {
                p[j] * (1.0 + beta * ((xs[j] - m) - shift))
            } else {
                0.0
            };
        }
    }
    (value, grad)
}

/// Soft-argmax per row: `(value [B], gradient [B, C])`.
pub fn soft_argmax(x: ArrayView2<f64>, t: f64) -> (Array1<f64>, Array2<f64>) {
    let (rows, cols) = x.dim();
    let mut value = Array1::zeros(rows);
    let mut grad = Array2::zeros((rows, cols));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        match softmax_shifted(&row.to_vec(), |d| d / t) {
            None => {
                value[i] = f64::NAN;
                grad.row_mut(i).fill(f64::NAN);
            }
            Some((p, _)) => {
                let f: f64 = p.iter().enumerate().map(|(j, p)| j as f64 * p).sum();
                value[i] = f;
                for j in 0..cols {
                    grad[[i, j]] = p[j] * (j as f64 - f) / t;
                }
            }
        }
    }
    (value, grad)
}

/// Smooth accuracy: `(value, gradient [B, C])`.
pub fn smooth_accuracy(x: ArrayView2<f64>, targets: &[u32], t: f64) -> (f64, Array2<f64>) {
    let (rows, cols) = x.dim();
    let mut sum = 0.0;
    let mut grad = Array2::zeros((rows, cols));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let y = targets[i] as usize;
        match softmax_shifted(&row.to_vec(), |d| d / t) {
            None => {
                sum = f64::NAN;
                grad.row_mut(i).fill(f64::NAN);
            }
            Some((p, _)) => {
                sum += p[y];
                for j in 0..cols {
                    let delta = if j == y { 1.0 } else { 0.0 };
                    grad[[i, j]] = p[j] * (delta - p[y]) / (t * rows as f64);
                }
            }
        }
    }
    (sum / rows as f64, grad)
}

/// Binary smooth F1 over all elements: `(value, gradient)`.
pub fn smooth_f1_binary(x: ArrayView2<f64>, y: ArrayView2<f64>) -> (f64, Array2<f64>) {
    let p = x.mapv(sigmoid);
    let tp: f64 = (&p * &y).sum();
    let d: f64 = p.sum() + y.sum();
    if d.is_nan() {
        return (f64::NAN, Array2::from_elem(x.dim(), f64::NAN));
    }
    if d == 0.0 {
        return (0.0, Array2::zeros(x.dim()));
    }
    let f = 2.0 * tp / d;
    let mut grad = Array2::zeros(x.dim());
    ndarray::Zip::from(&mut grad)
        .and(&p)
        .and(&y)
        .for_each(|g, &p, &y| *g = p * (1.0 - p) * (2.0 * y - f) / d);
    (f, grad)
}

/// Macro smooth F1 over `C` classes: `(value, gradient [B, C])`.
pub fn smooth_f1_macro(x: ArrayView2<f64>, targets: &[u32], t: f64) -> (f64, Array2<f64>) {
    let (rows, cols) = x.dim();
    let mut p = Array2::zeros((rows, cols));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        match softmax_shifted(&row.to_vec(), |d| d / t) {
            // A NaN row reaches every class's F1: everything is NaN.
            None => return (f64::NAN, Array2::from_elem((rows, cols), f64::NAN)),
            Some((pr, _)) => p.row_mut(i).assign(&Array1::from(pr)),
        }
    }
    let (mut tp, mut pred, mut count) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for i in 0..rows {
        let y = targets[i] as usize;
        for k in 0..cols {
            pred[k] += p[[i, k]];
        }
        tp[y] += p[[i, y]];
        count[y] += 1.0;
    }
    let (f, coef) = super::macro_f1_from_columns(&tp, &pred, &count);
    let mut grad = Array2::zeros((rows, cols));
    for i in 0..rows {
        let y = targets[i] as usize;
        let g = |k: usize| coef[k].1 + if k == y { 2.0 * coef[k].0 } else { 0.0 };
        let r: f64 = (0..cols).map(|k| p[[i, k]] * g(k)).sum();
        for j in 0..cols {
            grad[[i, j]] = p[[i, j]] * (g(j) - r) / t;
        }
    }
    (f, grad)
}

pub use super::smoothings::sigmoid;

/// `erfc(x)` in f64 to about 1e-14 relative: the Maclaurin series of erf below 2.5 (terms
/// peak near 300, so ~13 digits survive), Laplace's continued fraction above (A&S 7.1.14).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf x = 2/√π Σ (−1)^n x^{2n+1} / (n! (2n+1))
        let (mut term, mut sum, x2) = (x, x, x * x);
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        return 1.0 - 2.0 / PI.sqrt() * sum;
    }
    // erfc x = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), bottom up.
    let mut k = x;
    for n in (1..120).rev() {
        k = x + (n as f64 / 2.0) / k;
    }
    (-x * x).exp() / (PI.sqrt() * k)
}

/// Pairwise smooth max: `(value, ∂f/∂a, ∂f/∂b)`, element-wise.
pub fn pairwise_max(
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
    form: PairwiseForm,
) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let mut v = Array2::zeros(a.dim());
    let mut ga = Array2::zeros(a.dim());
    let mut gb = Array2::zeros(a.dim());
    let k = form.parameter() as f64;
    ndarray::Zip::from(&mut v)
        .and(&mut ga)
        .and(&mut gb)
        .and(&a)
        .and(&b)
        .for_each(|v, ga, gb, &a, &b| {
            if !(a.is_finite() && b.is_finite()) {
                (*v, *ga, *gb) = (f64::NAN, f64::NAN, f64::NAN);
                return;
            }
            let d = a - b;
            match form {
                PairwiseForm::Erf { .. } => {
                    // f = (a + b + d·erf(μd))/2; ∂f/∂a = (1 + erf(μd) + μd·erf'(μd))/2.
                    let z = k * d;
                    let erf = 1.0 - erfc(z);
                    *v = (a + b + d * erf) / 2.0;
                    let bump = z * 2.0 / PI.sqrt() * (-z * z).exp();
                    *ga = (1.0 + erf + bump) / 2.0;
                    *gb = (1.0 - erf - bump) / 2.0;
                }
                PairwiseForm::Sqrt { .. } => {
                    let r = (d * d + k * k).sqrt();
                    *v = (a + b + r) / 2.0;
                    *ga = (1.0 + d / r) / 2.0;
                    *gb = (1.0 - d / r) / 2.0;
                }
                PairwiseForm::LogCosh { .. } => {
                    (*v, *ga, *gb) = super::smoothings::smooth_abs_max(a, b, k);
                }
                PairwiseForm::Acon { .. } => {
                    // f = d·σ(βd) + b; ∂f/∂a = σ + βd·σ(1 − σ).
                    let s = sigmoid(k * d);
                    *v = d * s + b;
                    *ga = s + k * d * s * (1.0 - s);
                    *gb = 1.0 - *ga;
                }
            }
        });
    (v, ga, gb)
}

/// One element of a binary loss: `(ℓ, ∂ℓ/∂f)` before weights, for a label already resolved
/// (±1 for the margin losses) and, for the logistic loss, a positive weight `pw`.
pub fn binary_element(loss: BinaryLoss, f: f64, y: f64, pw: f64) -> (f64, f64) {
    match loss {
        BinaryLoss::Logistic => {
            // PyTorch: (1 − y)·x − l_w·log σ(x), log σ(x) = min(x, 0) − log1p(e^{−|x|}).
            // 1 + (pw − 1)·y, formed without the cancellation that loses a small pw at y = 1.
            let lw = (1.0 - y) + pw * y;
            let log_sig = f.min(0.0) - (-f.abs()).exp().ln_1p();
            ((1.0 - y) * f - lw * log_sig, lw * sigmoid(f) - pw * y)
        }
        _ if !f.is_finite() => (f64::NAN, f64::NAN),
        BinaryLoss::Hinge => {
            let u = 1.0 - y * f;
            if u > 0.0 {
                (u, -y)
            } else {
                (0.0, 0.0)
            }
        }
        BinaryLoss::SquaredHinge => {
            let u = (1.0 - y * f).max(0.0);
            (u * u, -2.0 * y * u)
        }
        BinaryLoss::Exponential => {
            let e = (-y * f).exp();
            (e, -y * e)
        }
        BinaryLoss::Squared => {
            let u = 1.0 - y * f;
            (u * u, -2.0 * y * u)
        }
    }
}

/// Multi-class hinge per row: `(loss [B], gradient [B, C])` (PyTorch's MultiMarginLoss with
/// reduction none).
pub fn multi_margin(
    x: ArrayView2<f64>,
    targets: &[u32],
    p: u32,
    margin: f64,
    weight: Option<&[f64]>,
) -> (Array1<f64>, Array2<f64>) {
    let (rows, cols) = x.dim();
    let mut loss = Array1::zeros(rows);
    let mut grad = Array2::zeros((rows, cols));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            loss[i] = f64::NAN;
            grad.row_mut(i).fill(f64::NAN);
            continue;
        }
        let y = targets[i] as usize;
        let w = weight.map_or(1.0, |w| w[y]) / cols as f64;
        let mut gy = 0.0;
        for j in (0..cols).filter(|&j| j != y) {
            // (x_j − x_y) + margin: exact for ties, where margin − x_y + x_j loses a small
            // margin to the rounding of margin − x_y.
            let z = (row[j] - row[y]) + margin;
            if z > 0.0 {
                loss[i] += w * if p == 1 { z } else { z * z };
                let g = w * if p == 1 { 1.0 } else { 2.0 * z };
                grad[[i, j]] = g;
                gy -= g;
            }
        }
        grad[[i, y]] = gy;
    }
    (loss, grad)
}

fn f64_of(x: &ArrayView2<f32>) -> Array2<f64> {
    x.mapv(|v| v as f64)
}

fn reduce_f64(v: Array2<f64>, reduction: Reduction) -> Value<f64> {
    match reduction.apply(v.sum(), v.len() as f64) {
        None => Value::Matrix(v),
        Some(s) => Value::Scalar(s),
    }
}

/// Runs `call` in f64: inputs are widened, every sum is f64. Errors as the other backends.
pub fn surrogate_f64(call: &Surrogate) -> Result<SurrogateOutput<f64>> {
    let pr = prepare(call)?;
    let out = |value, grad| SurrogateOutput {
        value,
        grad,
        grad_b: None,
        sums: None,
    };
    let with_sums = |o, sums| SurrogateOutput {
        sums: Some(sums),
        ..o
    };

    Ok(match call {
        Surrogate::BoltzmannMax { x, beta } => {
            let (v, g) = boltzmann_max(f64_of(x).view(), *beta as f64);
            out(Value::PerRow(v), g)
        }
        Surrogate::SoftArgmax { x, temperature } => {
            let (v, g) = soft_argmax(f64_of(x).view(), *temperature as f64);
            out(Value::PerRow(v), g)
        }
        Surrogate::SmoothAccuracy {
            logits,
            temperature,
            ..
        } => {
            let (v, g) = smooth_accuracy(f64_of(logits).view(), &pr.class, *temperature as f64);
            // The mean times the row count is the sum (0 for no rows, where the mean is NaN).
            let (n, none) = (pr.rows as f64, LossSums::default());
            let loss = if n > 0.0 { v * n } else { 0.0 };
            let sums = LossSums {
                loss,
                weight: n,
                ..none
            };
            with_sums(out(Value::Scalar(v), g), sums)
        }
        Surrogate::SmoothF1Binary { logits, labels } => {
            let (v, g) = smooth_f1_binary(f64_of(logits).view(), f64_of(labels).view());
            out(Value::Scalar(v), g)
        }
        Surrogate::SmoothF1Macro {
            logits,
            temperature,
            ..
        } => {
            let (v, g) = smooth_f1_macro(f64_of(logits).view(), &pr.class, *temperature as f64);
            out(Value::Scalar(v), g)
        }
        Surrogate::PairwiseMax { a, b, form } => {
            let (v, ga, gb) = pairwise_max(f64_of(a).view(), f64_of(b).view(), *form);
            SurrogateOutput {
                value: Value::Matrix(v),
                grad: ga,
                grad_b: Some(gb),
                sums: None,
            }
        }
        Surrogate::Binary {
            logits,
            loss,
            options,
            ..
        } => {
            let (rows, cols) = (pr.rows, pr.cols);
            let labels = pr.labels.as_deref().unwrap_or(&[]);
            let mut l = Array2::zeros((rows, cols));
            let mut g = Array2::zeros((rows, cols));
            let n = rows * cols;
            let scale = if options.reduction == Reduction::Mean {
                1.0 / n as f64
            } else {
                1.0
            };
            for ((r, c), &f) in logits.indexed_iter() {
                let e = r * cols + c;
                let pw = pr.pos_weight.as_ref().map_or(1.0, |p| p[c] as f64);
                let (li, gi) = binary_element(*loss, f as f64, labels[e] as f64, pw);
                let w = pr.weight.as_ref().map_or(1.0, |w| w[e] as f64);
                l[[r, c]] = w * li;
                g[[r, c]] = w * gi * scale;
            }
            let sums = loss_sums(l.iter().copied());
            with_sums(out(reduce_f64(l, options.reduction), g), sums)
        }
        Surrogate::Smoothing { x, op } => {
            let (v, g) = super::smoothings::elementwise(x.view(), *op);
            out(Value::Matrix(v), g)
        }
        Surrogate::PowerMax { x, p } => {
            super::check_power_input(x.view())?;
            let (v, g) = super::smoothings::power_max(f64_of(x).view(), *p as f64);
            out(Value::PerRow(v), g)
        }
        Surrogate::MultiMargin {
            logits, options, ..
        } => {
            let w: Option<Vec<f64>> = pr
                .weight
                .as_ref()
                .map(|w| w.iter().map(|&v| v as f64).collect());
            let (l, mut g) = multi_margin(
                f64_of(logits).view(),
                &pr.class,
                options.p,
                options.margin as f64,
                w.as_deref(),
            );
            let sums = loss_sums(l.iter().copied());
            let value = match options.reduction {
                Reduction::None => Value::PerRow(l),
                Reduction::Sum => Value::Scalar(l.sum()),
                Reduction::Mean => {
                    g /= pr.rows as f64;
                    Value::Scalar(l.sum() / pr.rows as f64)
                }
            };
            with_sums(out(value, g), sums)
        }
    })
}

/// Narrows an f64 result to f32 (what [`crate::Reference`] returns); the same as
/// [`SurrogateOutput::narrow`].
pub fn narrow(o: SurrogateOutput<f64>) -> SurrogateOutput<f32> {
    o.narrow()
}
