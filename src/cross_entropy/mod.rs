//! Softmax cross-entropy: options, validation, and the host-side preparation every backend
//! shares (targets resolved to class-or-ignored, mean denominators, gradient scales).
//!
//! Semantics are `torch.nn.functional.cross_entropy` (aten/src/ATen/native/LossNLL.cpp):
//! with `logp = log_softmax(x)`, class target `y`, weights `w`, smoothing `ls`, `C` classes,
//!
//! ```text
//! nll_i    = −w[y_i]·logp_i[y_i]
//! smooth_i = −Σ_c w[c]·logp_i[c]                (only when ls > 0)
//! loss_i   = (1 − ls)·nll_i + (ls/C)·smooth_i   (0 for ignored rows)
//! mean     = Σ_i loss_i / Σ_{i not ignored} w[y_i]
//! ```
//!
//! and for probability targets `q` (smoothed to `q(1 − ls) + ls/C`):
//! `loss_i = −Σ_c w[c]·q_ic·logp_i[c]`, mean = Σ_i loss_i / B. Extras, off by default:
//! `z_loss` adds `z·lse_i²` per non-ignored row (unweighted; mean divides it by the number of
//! non-ignored rows), and `softcap` replaces the logits by `c·tanh(x/c)` before everything.

pub(crate) mod fast;
pub mod reference;

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Class targets (one index per row) or probability targets (one distribution per row).
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices as i64 (PyTorch's `long`).
    Classes(ArrayView1<'a, i64>),
    /// Class indices as i32.
    ClassesI32(ArrayView1<'a, i32>),
    /// Class indices as u32 (token ids as tokenizers hand them out). `ignore_index` is
    /// compared with the value widened to i64, so the default −100 never matches one.
    ClassesU32(ArrayView1<'a, u32>),
    /// Probabilities, shape `[B, C]` (each row a distribution over classes). Rows need not be
    /// normalized (as in PyTorch), but the f32 gradient `p_j·Σ_c w_c q_c − w_j q_j` then has an
    /// error proportional to `Σ_c w_c q_c`, which is `≤ max w` for distributions.
    Probabilities(ArrayView2<'a, f32>),
}

/// How per-row losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Per-row losses, shape `[B]`.
    None,
    /// Weighted mean: divided by `Σ w[y_i]` over non-ignored rows (class targets) or by `B`
    /// (probability targets).
    #[default]
    Mean,
    /// Sum of the per-row losses.
    Sum,
}

/// The upstream gradient `dL/d(loss output)` the logits gradient is scaled by.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Upstream {
    /// 1 (the gradient of the loss itself).
    #[default]
    One,
    /// A scalar.
    Scalar(f32),
    /// One value per row; only with [`Reduction::None`].
    PerRow(Array1<f32>),
}

/// Options of [`crate::Backend::cross_entropy`]. `Default` is PyTorch's default call:
/// no weights, `ignore_index = −100`, no smoothing, mean, no z-loss, no softcap, no gradient.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyOptions<'a> {
    /// Per-class weights, length `C`, finite and `≥ 0`.
    pub weight: Option<ArrayView1<'a, f32>>,
    /// Target value that marks a row as ignored (default −100; may be a valid class). Setting
    /// it with probability targets is an error, as in PyTorch.
    pub ignore_index: Option<i64>,
    /// Label smoothing in `[0, 1]`.
    pub label_smoothing: f32,
    /// How rows are combined.
    pub reduction: Reduction,
    /// z-loss coefficient (PaLM; Liger's `lse_square_scale`): adds `z·lse²` per non-ignored row.
    pub z_loss: f32,
    /// Gemma 2 logit soft-capping: logits become `c·tanh(x/c)` first. Must be `> 0`.
    pub softcap: Option<f32>,
    /// Compute the gradient with respect to the logits.
    pub gradient: bool,
    /// The upstream gradient (used when `gradient` is set).
    pub upstream: Upstream,
}

impl CrossEntropyOptions<'_> {
    /// The ignore index in force: the one given, else PyTorch's −100.
    pub fn effective_ignore_index(&self) -> i64 {
        self.ignore_index.unwrap_or(-100)
    }
}

/// The loss: per row for [`Reduction::None`], else one number.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss {
    /// One loss per row (z-loss included).
    PerRow(Array1<f32>),
    /// The reduced loss.
    Scalar(f32),
}

impl Loss {
    /// The scalar loss, or `None` for per-row losses.
    pub fn scalar(&self) -> Option<f32> {
        match self {
            Loss::Scalar(v) => Some(*v),
            Loss::PerRow(_) => None,
        }
    }
}

/// What [`crate::Backend::cross_entropy`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOutput {
    /// The loss.
    pub loss: Loss,
    /// `d(loss)/d(logits)` times the upstream gradient, `[B, C]`, when asked for. For
    /// [`Reduction::None`] it is the gradient of `Σ_i upstream_i·loss_i`. Ignored rows get 0.
    pub grad: Option<Array2<f32>>,
    /// Per-row logsumexp of the logits actually used (after softcap), for every row.
    pub lse: Array1<f32>,
}

/// Everything the fast backends need, checked and resolved on the host before any work.
pub(crate) struct Prepared {
    pub rows: usize,
    pub cols: usize,
    /// Class per row, or −1 for an ignored row (class targets only).
    pub class: Option<Vec<i32>>,
    /// Probability targets, contiguous `[B, C]`.
    pub probs: Option<Array2<f32>>,
    /// Per-row upstream gradient.
    pub upstream: Vec<f32>,
    /// Σ_c w[c] (C when unweighted).
    pub w_total: f64,
    /// Mean denominators: D = Σ w[y] over non-ignored rows (B for probabilities),
    /// N = non-ignored rows (B for probabilities). Unused unless reduction is mean.
    pub denom_ce: f64,
    pub denom_z: f64,
}

impl Prepared {
    /// Weight of class `c` (1 when unweighted).
    #[inline]
    pub fn weight_of(weight: Option<&ArrayView1<f32>>, c: usize) -> f32 {
        weight.map_or(1.0, |w| w[c])
    }

    /// Scales applied to the CE part and the z part of each row's gradient: upstream divided
    /// by the mean denominators (or 1 for sum / none).
    pub fn scales(&self, reduction: Reduction) -> (f64, f64) {
        match reduction {
            Reduction::Mean => (1.0 / self.denom_ce, 1.0 / self.denom_z),
            _ => (1.0, 1.0),
        }
    }
}

/// Checks a cross-entropy call's inputs without running it: what every backend checks first
/// (the error names the row, value or limit). `O(B + C)` for class targets.
///
/// ```
/// use smoothmax::cross_entropy::{validate, CrossEntropyOptions, Targets};
/// let y = ndarray::array![0i64, 7];
/// let err = validate((2, 5), Targets::Classes(y.view()), &CrossEntropyOptions::default());
/// assert!(err.unwrap_err().to_string().contains("target[1] = 7"));
/// ```
pub fn validate(
    shape: (usize, usize),
    targets: Targets,
    options: &CrossEntropyOptions,
) -> Result<()> {
    prepare(shape, &targets, options).map(|_| ())
}

/// Checks every input and resolves targets; the error names the row, value or limit.
pub(crate) fn prepare(
    shape: (usize, usize),
    targets: &Targets,
    o: &CrossEntropyOptions,
) -> Result<Prepared> {
    let (rows, cols) = shape;
    let bad = |m: String| Err(Error::InvalidInput(m));
    if !(0.0..=1.0).contains(&o.label_smoothing) {
        return bad(format!(
            "label_smoothing must be in [0, 1], got {}",
            o.label_smoothing
        ));
    }
    if !o.z_loss.is_finite() {
        return bad(format!("z_loss must be finite, got {}", o.z_loss));
    }
    if let Some(c) = o.softcap {
        if !(c.is_finite() && c > 0.0) {
            return bad(format!("softcap must be finite and > 0, got {c}"));
        }
    }
    let mut w_total = cols as f64;
    if let Some(w) = &o.weight {
        if w.len() != cols {
            return bad(format!(
                "weight has length {}, expected C = {cols}",
                w.len()
            ));
        }
        if let Some((i, v)) = w
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return bad(format!(
                "weight[{i}] = {v}: weights must be finite and >= 0"
            ));
        }
        w_total = w.iter().map(|&v| v as f64).sum();
    }
    let upstream = match &o.upstream {
        Upstream::One => vec![1.0; rows],
        Upstream::Scalar(u) if !u.is_finite() => {
            return bad(format!("the upstream gradient must be finite, got {u}"));
        }
        Upstream::Scalar(u) => vec![*u; rows],
        Upstream::PerRow(v) => {
            if o.reduction != Reduction::None {
                return bad("a per-row upstream gradient needs reduction none".into());
            }
            if v.len() != rows {
                return bad(format!(
                    "upstream gradient has length {}, expected B = {rows}",
                    v.len()
                ));
            }
            if let Some((i, u)) = v.iter().enumerate().find(|(_, u)| !u.is_finite()) {
                return bad(format!("upstream gradient[{i}] = {u}: must be finite"));
            }
            v.to_vec()
        }
    };
    let mut p = Prepared {
        rows,
        cols,
        class: None,
        probs: None,
        upstream,
        w_total,
        denom_ce: rows as f64,
        denom_z: rows as f64,
    };
    match targets {
        Targets::Probabilities(q) => {
            if o.ignore_index.is_some() {
                return bad("ignore_index cannot be used with probability targets".into());
            }
            if q.dim() != (rows, cols) {
                return bad(format!(
                    "probability targets have shape {:?}, expected [{rows}, {cols}]",
                    q.shape()
                ));
            }
            if let Some(((r, c), v)) = q.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return bad(format!(
                    "probability target [{r}, {c}] = {v}: must be finite"
                ));
            }
            p.probs = Some(q.as_standard_layout().into_owned());
        }
        Targets::Classes(_) | Targets::ClassesI32(_) | Targets::ClassesU32(_) => {
            let t: Vec<i64> = match targets {
                Targets::Classes(t) => t.to_vec(),
                Targets::ClassesI32(t) => t.iter().map(|&v| v as i64).collect(),
                Targets::ClassesU32(t) => t.iter().map(|&v| v as i64).collect(),
                Targets::Probabilities(_) => unreachable!(),
            };
            if t.len() != rows {
                return bad(format!(
                    "targets have length {}, expected B = {rows}",
                    t.len()
                ));
            }
            let ignore = o.effective_ignore_index();
            let mut class = Vec::with_capacity(rows);
            let (mut d, mut n) = (0.0f64, 0usize);
            for (i, &v) in t.iter().enumerate() {
                if v == ignore {
                    class.push(-1);
                } else if v < 0 || v >= cols as i64 {
                    return bad(format!(
                        "target[{i}] = {v} is outside [0, {cols}) and is not ignore_index ({ignore})"
                    ));
                } else {
                    class.push(v as i32);
                    d += Prepared::weight_of(o.weight.as_ref(), v as usize) as f64;
                    n += 1;
                }
            }
            p.class = Some(class);
            p.denom_ce = d;
            p.denom_z = n as f64;
        }
    }
    Ok(p)
}

/// Assembles a fast backend's result from its per-row statistics: the losses (finished in
/// f64, see [`fast`]), the reduced loss, the per-row lse, and the `[B, C]` gradient when it
/// was asked for.
pub(crate) fn finish(
    p: &Prepared,
    fi: &fast::FastInputs,
    o: &CrossEntropyOptions,
    stats: &[fast::RowStats],
    grad: Option<Vec<f32>>,
) -> Result<CrossEntropyOutput> {
    let (ce, lse) = fast::row_losses(p, fi, stats);
    let grad = grad
        .map(|g| {
            Array2::from_shape_vec((p.rows, p.cols), g)
                .map_err(|e| Error::InvalidInput(e.to_string()))
        })
        .transpose()?;
    Ok(CrossEntropyOutput {
        loss: reduce(p, o, &ce, &lse),
        grad,
        lse: Array1::from_vec(lse),
    })
}

/// Combines per-row CE losses (z-loss not included, f64) and per-row lse into the loss
/// output: `none` → `ce_i + z·lse_i²` (0 for ignored rows); `sum`/`mean` → summed in f64 and
/// divided by the mean denominators. An empty or all-ignored batch gives NaN for mean, 0 for
/// sum.
pub(crate) fn reduce(p: &Prepared, o: &CrossEntropyOptions, ce: &[f64], lse: &[f32]) -> Loss {
    let counted = |i: usize| p.class.as_ref().is_none_or(|c| c[i] >= 0);
    let z = o.z_loss as f64;
    let zpart = |i: usize| {
        if z != 0.0 && counted(i) {
            z * (lse[i] as f64).powi(2)
        } else {
            0.0
        }
    };
    match o.reduction {
        Reduction::None => Loss::PerRow((0..p.rows).map(|i| (ce[i] + zpart(i)) as f32).collect()),
        Reduction::Sum | Reduction::Mean => {
            let ce_sum: f64 = ce.iter().sum();
            let z_sum: f64 = (0..p.rows).map(zpart).sum();
            if o.reduction == Reduction::Sum {
                Loss::Scalar((ce_sum + z_sum) as f32)
            } else {
                let mut v = ce_sum / p.denom_ce; // 0/0 = NaN for an empty or all-ignored batch
                if z != 0.0 {
                    v += z_sum / p.denom_z;
                }
                Loss::Scalar(v as f32)
            }
        }
    }
}
