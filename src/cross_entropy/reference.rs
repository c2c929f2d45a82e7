//! The f64 cross-entropy oracle: PyTorch's formulas applied literally, in IEEE f64, so
//! `0·(−inf) = NaN` and `+inf` losses arise exactly where PyTorch has them. The gradient is the
//! analytic one (tests check it against central finite differences):
//!
//! ```text
//! class target y:  g_j = s_ce·[(1−ls)·w_y·(p_j − [j=y]) + (ls/C)·(W·p_j − w_j)] + s_z·2z·lse·p_j
//! probabilities:   g_j = s_ce·(p_j·Σ_c w_c q'_c − w_j q'_j)                   + s_z·2z·lse·p_j
//! ```
//!
//! with `p = softmax(x')`, `W = Σ_c w_c`, `q' = q(1−ls) + ls/C`, `s_ce`, `s_z` the upstream
//! gradient over the mean denominators, and, with softcap, the chain factor `1 − tanh²(x/c)`.

use super::{prepare, CrossEntropyOptions, LossSums, Prepared, Reduction, Targets};
use crate::error::Result;
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// The reference's result, in f64.
#[derive(Clone, Debug)]
pub struct ReferenceCrossEntropy {
    /// Per-row loss, z-loss included (0 for ignored rows).
    pub per_row: Array1<f64>,
    /// The reduced loss (equal to `per_row` summed / averaged; unused for reduction none).
    pub reduced: f64,
    /// The gradient, when asked for.
    pub grad: Option<Array2<f64>>,
    /// Per-row logsumexp of the (soft-capped) logits.
    pub lse: Array1<f64>,
    /// The reduction's numerator and denominator (see [`LossSums`]).
    pub sums: LossSums,
}

/// `logsumexp` and `log_softmax` of one row, with PyTorch's non-finite rules.
fn row_log_softmax(x: &[f64]) -> (f64, Vec<f64>) {
    let nan_row = || vec![f64::NAN; x.len()];
    if x.iter().any(|v| v.is_nan()) {
        return (f64::NAN, nan_row());
    }
    if x.contains(&f64::INFINITY) {
        return (f64::INFINITY, nan_row());
    }
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return (f64::NEG_INFINITY, nan_row());
    }
    let ln_s = x.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
    (m + ln_s, x.iter().map(|&v| (v - m) - ln_s).collect())
}

/// Cross-entropy in f64 of f32 logits; see the module docs.
pub fn cross_entropy_f64(
    logits: ArrayView2<f32>,
    targets: &Targets,
    o: &CrossEntropyOptions,
) -> Result<ReferenceCrossEntropy> {
    cross_entropy_f64_logits(logits.mapv(|v| v as f64).view(), targets, o)
}

/// Cross-entropy of f64 logits (for finite-difference checks of the gradient).
pub fn cross_entropy_f64_logits(
    logits: ArrayView2<f64>,
    targets: &Targets,
    o: &CrossEntropyOptions,
) -> Result<ReferenceCrossEntropy> {
    let p: Prepared = prepare(logits.dim(), targets, o)?;
    let (rows, cols) = (p.rows, p.cols);
    let ls = o.label_smoothing as f64;
    let z = o.z_loss as f64;
    let c = cols as f64;
    let w = |j: usize| Prepared::weight_of(o.weight.as_ref(), j) as f64;
    let (scale_ce, scale_z) = p.scales(o.reduction);
    let mut per_row = Array1::<f64>::zeros(rows);
    let mut ce_rows = vec![0.0f64; rows];
    let mut lse = Array1::<f64>::zeros(rows);
    let mut grad = o.gradient.then(|| Array2::<f64>::zeros((rows, cols)));

    for (i, xrow) in logits.axis_iter(Axis(0)).enumerate() {
        // Soft-capping first: x' = c·tanh(x/c) (tanh(±inf) = ±1, so ±inf become ±c).
        let raw: Vec<f64> = xrow.to_vec();
        let x: Vec<f64> = match o.softcap {
            Some(cap) => raw
                .iter()
                .map(|&v| cap as f64 * (v / cap as f64).tanh())
                .collect(),
            None => raw.clone(),
        };
        let (l, logp) = row_log_softmax(&x);
        lse[i] = l;
        // q' per class: the smoothed probability target, or None for class targets.
        let (ignored, y) = match &p.class {
            Some(cls) => (cls[i] < 0, cls[i].max(0) as usize),
            None => (false, 0),
        };
        if ignored {
            continue; // loss 0, gradient 0
        }
        let ce = match &p.probs {
            Some(q) => -(0..cols)
                .map(|j| w(j) * (q[[i, j]] as f64 * (1.0 - ls) + ls / c) * logp[j])
                .sum::<f64>(),
            None => {
                let nll = -w(y) * logp[y];
                if ls > 0.0 {
                    let smooth = -(0..cols).map(|j| w(j) * logp[j]).sum::<f64>();
                    (1.0 - ls) * nll + (ls / c) * smooth
                } else {
                    nll
                }
            }
        };
        ce_rows[i] = ce;
        per_row[i] = ce + if z != 0.0 { z * l * l } else { 0.0 };

        if let Some(g) = grad.as_mut() {
            let u = p.upstream.at(i) as f64;
            let (s_ce, s_z) = (u * scale_ce, u * scale_z);
            let mut gi = g.row_mut(i);
            let qs = |k: usize| {
                p.probs
                    .as_ref()
                    .map_or(0.0, |q| q[[i, k]] as f64 * (1.0 - ls) + ls / c)
            };
            let wq: f64 = if p.probs.is_some() {
                (0..cols).map(|k| w(k) * qs(k)).sum()
            } else {
                0.0
            };
            for j in 0..cols {
                let pj = logp[j].exp();
                let ce_part = match &p.probs {
                    Some(_) => pj * wq - w(j) * qs(j),
                    None => {
                        let hit = if j == y { 1.0 } else { 0.0 };
                        (1.0 - ls) * w(y) * (pj - hit) + (ls / c) * (p.w_total * pj - w(j))
                    }
                };
                let mut gj = s_ce * ce_part + s_z * 2.0 * z * l * pj;
                if let Some(cap) = o.softcap {
                    let t = (raw[j] / cap as f64).tanh();
                    gj *= 1.0 - t * t;
                }
                gi[j] = gj;
            }
        }
    }
    let z_sum: f64 = (0..rows)
        .filter(|&i| p.class.as_ref().is_none_or(|c| c[i] >= 0))
        .map(|i| if z != 0.0 { z * lse[i] * lse[i] } else { 0.0 })
        .sum();
    let sums = LossSums {
        loss: ce_rows.iter().sum(),
        weight: p.denom_ce,
        z_loss: z_sum,
        z_rows: p.denom_z,
    };
    let reduced = match o.reduction {
        Reduction::None => f64::NAN,
        Reduction::Sum => per_row.sum(),
        Reduction::Mean => sums.mean(),
    };
    Ok(ReferenceCrossEntropy {
        per_row,
        reduced,
        grad,
        lse,
        sums,
    })
}
