//! Validation and the host-side preparation every backend shares, and the small f64 helpers
//! the fast backends finish with (reductions, macro F1's coefficients).

use super::call::{BinaryLoss, ElementSmoothing, PairwiseForm, Surrogate, SurrogateOutput, Value};
use crate::error::{Error, Result};
use crate::reduction::{LossSums, Reduction};
use crate::rows::check_temperature;
use crate::shape::Shape;
use ndarray::{Array2, ArrayView1, ArrayView2};

/// Everything the fast backends need, checked and resolved on the host before any work.
pub(crate) struct Prepared {
    pub rows: usize,
    pub cols: usize,
    /// Class per row (targets in range), for the ops that take classes.
    pub class: Vec<u32>,
    /// Labels as the kernels use them: ±1 for the margin losses, as given otherwise.
    pub labels: Option<Vec<f32>>,
    /// Per-element weights, materialized `[B, C]`, or per-class weights (`[C]`) for
    /// multi-margin.
    pub weight: Option<Vec<f32>>,
    /// Logistic loss: per-column positive weights (length `C`).
    pub pos_weight: Option<Vec<f32>>,
}

fn bad<T>(m: String) -> Result<T> {
    Err(Error::InvalidInput(m))
}

fn check_classes(targets: &ArrayView1<i64>, rows: usize, cols: usize) -> Result<Vec<u32>> {
    if targets.len() != rows {
        return bad(format!(
            "targets have length {}, expected B = {rows}",
            targets.len()
        ));
    }
    let mut class = Vec::with_capacity(rows);
    for (i, &t) in targets.iter().enumerate() {
        if t < 0 || t as u64 >= cols as u64 {
            return bad(format!(
                "target[{i}] = {t} is out of range for C = {cols} classes"
            ));
        }
        class.push(t as u32);
    }
    Ok(class)
}

fn check_same_shape(what: &str, got: (usize, usize), want: (usize, usize)) -> Result<()> {
    if got != want {
        return bad(format!(
            "{what} has shape [{}, {}], expected [{}, {}] (the shape of the first input)",
            got.0, got.1, want.0, want.1
        ));
    }
    Ok(())
}

fn check_finite_param(what: &str, v: f32, positive: bool) -> Result<()> {
    if !v.is_finite() || (positive && v <= 0.0) {
        let need = if positive { "finite and > 0" } else { "finite" };
        return bad(format!("{what} must be {need}, got {v}"));
    }
    Ok(())
}

/// A sharpness: finite and at least the smallest normal f32 (devices may flush a subnormal
/// to 0, and the results' `1/k` terms are finite above it).
fn check_sharpness(what: &str, v: f32) -> Result<()> {
    if v.is_finite() && v >= f32::MIN_POSITIVE {
        return Ok(());
    }
    bad(format!("{what} must be finite and >= 2^-126, got {v}"))
}

/// The power-mean max's domain, checked wherever the scores are host data: every value
/// finite and `≥ 0` (`−0` is 0). The error names the first bad element.
pub(crate) fn check_power_input(x: ArrayView2<f32>) -> Result<()> {
    match x
        .indexed_iter()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        Some(((r, c), v)) => bad(format!(
            "x[{r}, {c}] = {v}: the power-mean max needs finite x >= 0"
        )),
        None => Ok(()),
    }
}

/// Checks a surrogate call's inputs without running it (what every backend checks first); the
/// error names the element, value or limit.
///
/// ```
/// use smoothmax::surrogates::{validate, Surrogate};
/// let x = ndarray::Array2::<f32>::zeros((2, 3));
/// let y = ndarray::array![0i64, 3];
/// let call = Surrogate::SmoothAccuracy { logits: x.view(), targets: y.view(), temperature: 1.0 };
/// assert!(validate(&call).unwrap_err().to_string().contains("target[1] = 3"));
/// ```
pub fn validate<M: Shape>(call: &Surrogate<'_, M>) -> Result<()> {
    prepare(call).map(|_| ())
}

pub(crate) fn prepare<M: Shape>(call: &Surrogate<'_, M>) -> Result<Prepared> {
    let (rows, cols) = call.shape();
    let mut p = Prepared {
        rows,
        cols,
        class: Vec::new(),
        labels: None,
        weight: None,
        pos_weight: None,
    };
    match call {
        Surrogate::BoltzmannMax { beta, .. } => check_finite_param("beta", *beta, false)?,
        Surrogate::Smoothing { op, .. } => match *op {
            ElementSmoothing::Abs { k } => check_sharpness("k", k)?,
            ElementSmoothing::Floor { t } => check_sharpness("t", t)?,
        },
        Surrogate::SoftArgmax { temperature, .. } => check_temperature(*temperature)?,
        Surrogate::PowerMax { p, .. } => {
            if !(p.is_finite() && *p >= 1.0) {
                return bad(format!("p must be finite and >= 1, got {p}"));
            }
        }
        Surrogate::SmoothAccuracy {
            targets,
            temperature,
            ..
        }
        | Surrogate::SmoothF1Macro {
            targets,
            temperature,
            ..
        } => {
            check_temperature(*temperature)?;
            p.class = check_classes(targets, rows, cols)?;
        }
        Surrogate::SmoothF1Binary { labels, .. } => {
            check_same_shape("labels", labels.dim(), (rows, cols))?;
            if let Some(((r, c), v)) = labels
                .indexed_iter()
                .find(|(_, v)| !(0.0..=1.0).contains(*v))
            {
                return bad(format!("label [{r}, {c}] = {v}: must be in [0, 1]"));
            }
            p.labels = Some(labels.iter().copied().collect());
        }
        Surrogate::PairwiseMax { b, form, .. } => {
            check_same_shape("b", b.dim(), (rows, cols))?;
            match *form {
                PairwiseForm::Erf { mu } | PairwiseForm::Sqrt { mu } => {
                    check_finite_param("mu", mu, true)?
                }
                PairwiseForm::Acon { beta } => check_finite_param("beta", beta, false)?,
                PairwiseForm::LogCosh { k } => check_sharpness("k", k)?,
            }
        }
        Surrogate::Binary {
            labels,
            loss,
            options,
            ..
        } => {
            check_same_shape("labels", labels.dim(), (rows, cols))?;
            let mut ls = Vec::with_capacity(rows * cols);
            for ((r, c), &v) in labels.indexed_iter() {
                let ok = match loss {
                    BinaryLoss::Logistic => (0.0..=1.0).contains(&v),
                    _ => v == 1.0 || v == -1.0 || v == 0.0,
                };
                if !ok {
                    let need = match loss {
                        BinaryLoss::Logistic => "in [0, 1]",
                        _ => "-1 or +1 (0 is read as -1)",
                    };
                    return bad(format!("label [{r}, {c}] = {v}: must be {need}"));
                }
                ls.push(match loss {
                    BinaryLoss::Logistic => v,
                    _ if v > 0.0 => 1.0,
                    _ => -1.0,
                });
            }
            p.labels = Some(ls);
            if let Some(w) = &options.weight {
                let full = w.broadcast((rows, cols)).ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "weight of shape {:?} does not broadcast to [{rows}, {cols}]",
                        w.shape()
                    ))
                })?;
                if let Some(((r, c), v)) = full.indexed_iter().find(|(_, v)| !v.is_finite()) {
                    return bad(format!("weight [{r}, {c}] = {v}: must be finite"));
                }
                p.weight = Some(full.iter().copied().collect());
            }
            if let Some(pw) = &options.pos_weight {
                if *loss != BinaryLoss::Logistic {
                    return bad(format!(
                        "pos_weight applies to the logistic loss only, not {}",
                        loss.name()
                    ));
                }
                if pw.len() != cols && pw.len() != 1 {
                    return bad(format!(
                        "pos_weight has length {}, expected C = {cols} (or 1)",
                        pw.len()
                    ));
                }
                if let Some((i, v)) = pw
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
                {
                    return bad(format!("pos_weight[{i}] = {v}: must be finite and >= 0"));
                }
                p.pos_weight = Some((0..cols).map(|c| pw[c % pw.len()]).collect());
            }
        }
        Surrogate::MultiMargin {
            targets, options, ..
        } => {
            if options.p != 1 && options.p != 2 {
                return bad(format!("p must be 1 or 2, got {}", options.p));
            }
            check_finite_param("margin", options.margin, false)?;
            p.class = check_classes(targets, rows, cols)?;
            if let Some(w) = &options.weight {
                if w.len() != cols {
                    return bad(format!(
                        "weight has length {}, expected C = {cols}",
                        w.len()
                    ));
                }
                if let Some((i, v)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return bad(format!("weight[{i}] = {v}: must be finite"));
                }
                p.weight = Some(w.to_vec());
            }
        }
    }
    Ok(p)
}

/// An input's elements in row-major order (`c` from `as_standard_layout`, which copies only
/// when the view is not already standard).
pub(crate) fn flat<'a>(c: &'a ndarray::CowArray<f32, ndarray::Ix2>) -> Result<&'a [f32]> {
    c.as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))
}

/// A `[rows, cols]` matrix from a backend's flat output.
pub(crate) fn matrix(v: Vec<f32>, rows: usize, cols: usize) -> Result<Array2<f32>> {
    Array2::from_shape_vec((rows, cols), v).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// An output with one gradient.
pub(crate) fn output(value: Value, grad: Array2<f32>) -> SurrogateOutput {
    SurrogateOutput {
        value,
        grad,
        grad_b: None,
        sums: None,
    }
}

/// The sum of element (or row) values in f64 and their count.
pub(crate) fn loss_sums(values: impl IntoIterator<Item = f64>) -> LossSums {
    let (mut loss, mut n) = (0.0, 0usize);
    for v in values {
        loss += v;
        n += 1;
    }
    LossSums {
        loss,
        weight: n as f64,
        ..LossSums::default()
    }
}

/// Reduces element (or row) losses in f64: `None` keeps them, `Mean` divides the sum by their
/// count (NaN for none), `Sum` adds them; with the sums themselves.
pub(crate) fn reduce(losses: &[f32], reduction: Reduction) -> (Option<f32>, LossSums) {
    let sums = loss_sums(losses.iter().map(|&v| v as f64));
    (sums.reduce(reduction).map(|v| v as f32), sums)
}

/// The factor a per-element gradient is multiplied by for a reduction over `n` elements.
pub(crate) fn grad_scale(reduction: Reduction, n: usize) -> f32 {
    match reduction {
        Reduction::Mean => (1.0 / n as f64) as f32,
        _ => 1.0,
    }
}

/// Macro F1 from per-class column sums (the part every backend shares, in f64): returns `F`
/// and, per class, `(h_k, v_k)` with `h_k = 1/(C·D_k)` and `v_k = −F1_k·h_k` (0 for `D_k = 0`),
/// so that `g_ik = v_k + 2·[y_i = k]·h_k`.
pub(crate) fn macro_f1_from_columns(
    tp: &[f64],
    pred: &[f64],
    count: &[f64],
) -> (f64, Vec<(f64, f64)>) {
    let c = tp.len();
    let mut f = 0.0;
    let mut coef = Vec::with_capacity(c);
    for k in 0..c {
        let d = pred[k] + count[k];
        if d.is_nan() {
            // A NaN row reached the column sums: the whole value is NaN.
            return (f64::NAN, vec![(f64::NAN, f64::NAN); c]);
        }
        if d > 0.0 {
            let f1 = 2.0 * tp[k] / d;
            f += f1;
            let h = 1.0 / (c as f64 * d);
            coef.push((h, -f1 * h));
        } else {
            coef.push((0.0, 0.0));
        }
    }
    (if c == 0 { f64::NAN } else { f / c as f64 }, coef)
}
