//! The smooth surrogates built on the smooth max, and the classic margin losses: each batched,
//! with its gradient, on every backend ([`crate::Backend::surrogate`]).
//!
//! ## Formulas
//!
//! Row-wise on `[B, C]`, with `p = softmax(κ·x)` per row (`κ = β` or `1/T`):
//!
//! | op | value | gradient `∂/∂x_j` |
//! |----|-------|-------------------|
//! | Boltzmann operator, β | `f = Σ x_j e^{βx_j} / Σ e^{βx_j} = Σ p_j x_j` | `p_j (1 + β(x_j − f))` |
//! | soft-argmax, T | `f = Σ j·p_j` (0-based `j`) | `p_j (j − f) / T` |
//! | smooth accuracy, T | `A = (1/B) Σ_i p_{i,y_i}` | `p_ij (δ_{j,y_i} − p_{i,y_i}) / (T·B)` |
//! | macro smooth F1, T | `F = (1/C) Σ_c 2 TP_c / (P_c + N_c)` | `p_ij (g_ij − Σ_k p_ik g_ik) / T` |
//!
//! with `TP_c = Σ_{i: y_i = c} p_ic`, `P_c = Σ_i p_ic`, `N_c = #{i: y_i = c}` and
//! `g_ik = ∂F/∂p_ik = (2·[y_i = k] − F1_k) / (C·(P_k + N_k))`. Boltzmann is exact at the limits
//! (β → +∞: max, β = 0: mean, β → −∞: min); for `β < 0` it is evaluated as `−f(−x, −β)`, so
//! every backend only ever exponentiates non-positive numbers. A row's values go through the
//! softmax table of the crate docs (applied to `κ·x`): a NaN, a `+inf` (after the sign), or no
//! finite value makes the row's value and gradient NaN; `−inf` entries get weight exactly 0
//! (contributing nothing, even to `Σ p_j x_j`); with `β = 0` any infinite value gives NaN.
//!
//! Binary smooth F1 on logits `x` and labels `y ∈ [0, 1]` (any shape, all elements together):
//! `p = σ(x)`, `F = 2 Σ p·y / Σ (p + y)`, `∂F/∂x_i = p_i (1 − p_i)(2 y_i − F) / Σ(p + y)`; a
//! zero denominator gives `F = 0` (scikit-learn's `zero_division = 0`), as does a class absent
//! from both targets and predictions in the macro form. `σ(±inf)` is 1 / 0 (a hard prediction);
//! a NaN logit makes `F` and every gradient NaN.
//!
//! Element-wise on two same-shaped arrays, `d = a − b`, the pairwise smooth maximum in its three
//! classic forms ([`PairwiseForm`]), each `max(a, b)` in the limit of its parameter and each
//! with `∂f/∂a + ∂f/∂b = 1`:
//!
//! | form | `f(a, b)` | limit | `f − max(a, b)` |
//! |------|-----------|-------|-----------------|
//! | `Erf { mu }` | `(a + b + d·erf(μd)) / 2 = max − |d|·erfc(μ|d|)/2` | μ → ∞ | in `[−0.1202/μ, 0]` |
//! | `Sqrt { mu }` | `(a + b + √(d² + μ²)) / 2 = max + μ² / (2(r + |d|))` | μ → 0 | in `(0, μ/2]` |
//! | `Acon { beta }` | `d·σ(βd) + b` (ACON-C with `p1 = 1, p2 = 0`, Ma et al. 2021) | β → ∞ | in `[−0.2785/β, 0]` |
//!
//! (`0.1202 = max_z z·erfc(z)/2`, `0.2785 = max_t t·σ(−t)`; both checked numerically in the
//! tests.) The erf form is not monotone in the smaller argument (`∂f/∂b < 0` for large `d`).
//! A non-finite `a` or `b` makes that element's value and gradients NaN.
//!
//! Binary losses on scores `f` ([`BinaryLoss`]), weighted by `w` (broadcast to the scores'
//! shape) and reduced by [`Reduction`] (mean over all elements, as PyTorch):
//!
//! | loss | labels | `ℓ(f, y)` | `∂ℓ/∂f` |
//! |------|--------|-----------|---------|
//! | `Logistic` | `y ∈ [0, 1]` | `(1 − y)f − l_w·log σ(f)`, `l_w = 1 + (pw − 1)y` | `l_w σ(f) − pw·y` |
//! | `Hinge` | `y = ±1` | `max(0, 1 − yf)` | `−y·[1 − yf > 0]` |
//! | `SquaredHinge` | `y = ±1` | `max(0, 1 − yf)²` | `−2y·max(0, 1 − yf)` |
//! | `Exponential` | `y = ±1` | `e^{−yf}` | `−y·e^{−yf}` |
//! | `Squared` | `y = ±1` | `(1 − yf)² = (f − y)²` | `−2y(1 − yf)` |
//!
//! `Logistic` is `torch.nn.functional.binary_cross_entropy_with_logits` (aten Loss.cpp:
//! `(1 − y)·x − l_w·log_sigmoid(x)`, `log σ(f) = min(f, 0) − log1p(e^{−|f|})`, finite for any
//! finite `f`), including `pos_weight` (`pw`, one per column, broadcast along the last
//! dimension) and its infinities: `f = +inf` gives `+inf` for `y < 1` and NaN for `y = 1`,
//! `f = −inf` gives NaN (PyTorch computes `0·inf` and `inf − inf` there), with finite gradients.
//! The margin losses take labels `±1`, and `0` as `−1` so `{0, 1}` data works unchanged; a
//! non-finite score there makes that element NaN (a score of ±inf has no margin).
//!
//! Multi-class hinge, `torch.nn.MultiMarginLoss`: per row `ℓ_i = (w_{y_i}/C) Σ_{j≠y_i}
//! max(0, margin − x_{y_i} + x_j)^p` for `p ∈ {1, 2}` (the weight multiplies after the power, as
//! in aten LossMultiMargin.cpp); `∂ℓ_i/∂x_j = (w_y/C)·p·max(0, z_j)^{p−1}·[z_j > 0]` for
//! `j ≠ y`, and `∂ℓ_i/∂x_y = −Σ_{j≠y} ∂ℓ_i/∂x_j`. Mean divides by `B`. One deliberate difference:
//! a row with a NaN or infinite logit gives NaN loss and gradient (PyTorch's `z > 0` test
//! silently drops NaN terms, which can make a NaN row's loss 0).
//!
//! ## Gradients and reductions
//!
//! Every op returns its gradient with respect to its (first) input. For a value per row or per
//! element (Boltzmann, soft-argmax, pairwise, losses with [`Reduction::None`]) it is the
//! gradient of their sum, i.e. each row's or element's own derivative. Mean over zero elements
//! is NaN and sum is 0, as in PyTorch.

pub mod reference;

use crate::cross_entropy::Reduction;
use crate::error::{Error, Result};
use crate::ops::check_temperature;
use crate::shape::Shape;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// A form of the pairwise smooth maximum `f(a, b) ≈ max(a, b)` (see the module docs).
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum PairwiseForm {
    /// `(a + b + (a − b)·erf(μ(a − b))) / 2`; exact as `μ → ∞`. Needs `μ > 0`.
    Erf {
        /// Sharpness `μ > 0`.
        mu: f32,
    },
    /// `(a + b + √((a − b)² + μ²)) / 2`; exact as `μ → 0`. Needs `μ > 0`.
    Sqrt {
        /// Smoothing width `μ > 0`.
        mu: f32,
    },
    /// `(a − b)·σ(β(a − b)) + b` (the ACON form); exact as `β → ∞`, the mean at `β = 0`, a
    /// smooth minimum for `β < 0`. Needs finite `β`.
    Acon {
        /// Sharpness `β`.
        beta: f32,
    },
}

impl PairwiseForm {
    /// The form's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            PairwiseForm::Erf { .. } => "erf",
            PairwiseForm::Sqrt { .. } => "sqrt",
            PairwiseForm::Acon { .. } => "acon",
        }
    }

    /// The form's parameter (`μ` or `β`).
    pub fn parameter(&self) -> f32 {
        match *self {
            PairwiseForm::Erf { mu } | PairwiseForm::Sqrt { mu } => mu,
            PairwiseForm::Acon { beta } => beta,
        }
    }
}

/// A binary loss on a score `f` and a label `y` (see the module docs for formulas).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryLoss {
    /// Logistic loss in the stable softplus form: PyTorch's
    /// `binary_cross_entropy_with_logits`. Labels in `[0, 1]`.
    Logistic,
    /// `max(0, 1 − y·f)`, labels ±1.
    Hinge,
    /// `max(0, 1 − y·f)²`, labels ±1.
    SquaredHinge,
    /// `exp(−y·f)` (AdaBoost), labels ±1.
    Exponential,
    /// `(1 − y·f)²`, labels ±1.
    Squared,
}

impl BinaryLoss {
    /// The loss's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryLoss::Logistic => "logistic",
            BinaryLoss::Hinge => "hinge",
            BinaryLoss::SquaredHinge => "squared-hinge",
            BinaryLoss::Exponential => "exponential",
            BinaryLoss::Squared => "squared",
        }
    }

    /// Every binary loss, in a fixed order.
    pub const ALL: [BinaryLoss; 5] = [
        BinaryLoss::Logistic,
        BinaryLoss::Hinge,
        BinaryLoss::SquaredHinge,
        BinaryLoss::Exponential,
        BinaryLoss::Squared,
    ];
}

/// Options of the binary losses. `Default`: no weights, mean.
#[derive(Clone, Debug, Default)]
pub struct BinaryOptions<'a> {
    /// Per-element weights, broadcast to the scores' shape (e.g. `[1, C]` per column,
    /// `[B, 1]` per row); finite.
    pub weight: Option<ArrayView2<'a, f32>>,
    /// Logistic loss only: weight of the positive term, one per column (length `C`, or 1 for
    /// all), finite and `≥ 0`.
    pub pos_weight: Option<ArrayView1<'a, f32>>,
    /// How element losses are combined (mean over all elements, as PyTorch).
    pub reduction: Reduction,
}

/// Options of the multi-class hinge loss (`torch.nn.MultiMarginLoss`). `Default` is PyTorch's:
/// `p = 1`, `margin = 1`, no weights, mean.
#[derive(Clone, Debug)]
pub struct MultiMarginOptions<'a> {
    /// The power, 1 or 2.
    pub p: u32,
    /// The margin, finite.
    pub margin: f32,
    /// Per-class weights, length `C`, finite.
    pub weight: Option<ArrayView1<'a, f32>>,
    /// How row losses are combined (mean divides by `B`).
    pub reduction: Reduction,
}

impl Default for MultiMarginOptions<'_> {
    fn default() -> Self {
        MultiMarginOptions {
            p: 1,
            margin: 1.0,
            weight: None,
            reduction: Reduction::Mean,
        }
    }
}

/// One call of a surrogate op: the op, its inputs and its parameters. The scores (`x`,
/// `logits`, `a`, `b`) are host views by default; the GPU backend also takes device matrices
/// there (`Surrogate<&GpuMatrix>`, see [`crate::gpu::Call`]). Labels, targets and weights are
/// always host data: they are checked value by value before any work.
#[derive(Clone, Debug)]
pub enum Surrogate<'a, M = ArrayView2<'a, f32>> {
    /// Boltzmann operator per row of `x` `[B, C]`: value `[B]`.
    BoltzmannMax {
        /// Scores `[B, C]`.
        x: M,
        /// Inverse temperature β, finite (any sign).
        beta: f32,
    },
    /// Soft-argmax per row: value `[B]`.
    SoftArgmax {
        /// Scores `[B, C]`.
        x: M,
        /// Temperature `T > 0`.
        temperature: f32,
    },
    /// Smooth accuracy, a scalar.
    SmoothAccuracy {
        /// Logits `[B, C]`.
        logits: M,
        /// Class per row, in `[0, C)`.
        targets: ArrayView1<'a, i64>,
        /// Temperature `T > 0`.
        temperature: f32,
    },
    /// Binary smooth F1 over all elements, a scalar.
    SmoothF1Binary {
        /// Logits, any `[B, C]`.
        logits: M,
        /// Labels in `[0, 1]`, same shape.
        labels: ArrayView2<'a, f32>,
    },
    /// Macro smooth F1 over the `C` classes, a scalar.
    SmoothF1Macro {
        /// Logits `[B, C]`.
        logits: M,
        /// Class per row, in `[0, C)`.
        targets: ArrayView1<'a, i64>,
        /// Temperature `T > 0`.
        temperature: f32,
    },
    /// Pairwise smooth max of two same-shaped arrays: value per element, gradients for both.
    PairwiseMax {
        /// First argument.
        a: M,
        /// Second argument, same shape.
        b: M,
        /// Which form.
        form: PairwiseForm,
    },
    /// A binary loss: value per element (reduction none) or a scalar.
    Binary {
        /// Scores (logits) `[B, C]`.
        logits: M,
        /// Labels, same shape.
        labels: ArrayView2<'a, f32>,
        /// Which loss.
        loss: BinaryLoss,
        /// Weights and reduction.
        options: BinaryOptions<'a>,
    },
    /// Multi-class hinge: value per row (reduction none) or a scalar.
    MultiMargin {
        /// Scores `[B, C]`.
        logits: M,
        /// Class per row, in `[0, C)`.
        targets: ArrayView1<'a, i64>,
        /// Power, margin, weights, reduction.
        options: MultiMarginOptions<'a>,
    },
}

impl<M> Surrogate<'_, M> {
    /// The op's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Surrogate::BoltzmannMax { .. } => "boltzmann-max",
            Surrogate::SoftArgmax { .. } => "soft-argmax",
            Surrogate::SmoothAccuracy { .. } => "smooth-accuracy",
            Surrogate::SmoothF1Binary { .. } => "smooth-f1",
            Surrogate::SmoothF1Macro { .. } => "smooth-f1-macro",
            Surrogate::PairwiseMax { .. } => "pairwise-max",
            Surrogate::Binary { loss, .. } => match loss {
                BinaryLoss::Logistic => "binary-cross-entropy",
                BinaryLoss::Hinge => "hinge",
                BinaryLoss::SquaredHinge => "squared-hinge",
                BinaryLoss::Exponential => "exponential",
                BinaryLoss::Squared => "squared",
            },
            Surrogate::MultiMargin { .. } => "multi-margin",
        }
    }

    /// The shape of the input the gradient is taken against.
    pub fn shape(&self) -> (usize, usize)
    where
        M: Shape,
    {
        match self {
            Surrogate::BoltzmannMax { x, .. } | Surrogate::SoftArgmax { x, .. } => x.dim(),
            Surrogate::SmoothAccuracy { logits, .. }
            | Surrogate::SmoothF1Binary { logits, .. }
            | Surrogate::SmoothF1Macro { logits, .. }
            | Surrogate::Binary { logits, .. }
            | Surrogate::MultiMargin { logits, .. } => logits.dim(),
            Surrogate::PairwiseMax { a, .. } => a.dim(),
        }
    }
}

/// A value: one number, one per row, or one per element.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<T = f32> {
    /// A reduced value.
    Scalar(T),
    /// One value per row.
    PerRow(Array1<T>),
    /// One value per element.
    Matrix(Array2<T>),
}

impl<T: Copy> Value<T> {
    /// The scalar, or `None`.
    pub fn scalar(&self) -> Option<T> {
        match self {
            Value::Scalar(v) => Some(*v),
            _ => None,
        }
    }

    /// Every number of the value, in order (for comparisons and files).
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            Value::Scalar(v) => vec![*v],
            Value::PerRow(v) => v.iter().copied().collect(),
            Value::Matrix(m) => m.iter().copied().collect(),
        }
    }

    /// The value's shape as an `.npy` file has it (`[]` for a scalar).
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Scalar(_) => vec![],
            Value::PerRow(v) => vec![v.len()],
            Value::Matrix(m) => m.shape().to_vec(),
        }
    }
}

/// What [`crate::Backend::surrogate`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateOutput<T = f32> {
    /// The value (see each op).
    pub value: Value<T>,
    /// Gradient with respect to the first input (`x`, `logits` or `a`), its shape.
    pub grad: Array2<T>,
    /// Pairwise max only: gradient with respect to `b`.
    pub grad_b: Option<Array2<T>>,
}

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
        Surrogate::SoftArgmax { temperature, .. } => check_temperature(*temperature)?,
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
    }
}

/// Reduces element (or row) losses in f64: `None` keeps them, `Mean` divides the sum by their
/// count (NaN for none), `Sum` adds them.
pub(crate) fn reduce(losses: &[f32], reduction: Reduction) -> Option<f32> {
    let sum = || losses.iter().map(|&v| v as f64).sum::<f64>();
    match reduction {
        Reduction::None => None,
        Reduction::Sum => Some(sum() as f32),
        Reduction::Mean => Some((sum() / losses.len() as f64) as f32),
    }
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
