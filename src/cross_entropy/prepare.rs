//! Validation and the host-side preparation every backend shares (targets resolved to
//! class-or-ignored, mean denominators, gradient scales), and the reduction of per-row
//! losses into the loss.

use super::options::{CrossEntropyOptions, Loss, Reduction, Targets, Upstream};
use crate::error::{Error, Result};
use crate::reduction::LossSums;
use ndarray::{Array2, ArrayView1};

/// Everything the fast backends need, checked and resolved on the host before any work.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub rows: usize,
    pub cols: usize,
    /// Class per row, or −1 for an ignored row (class targets only).
    pub class: Option<Vec<i32>>,
    /// Probability targets, contiguous `[B, C]`.
    pub probs: Option<Array2<f32>>,
    /// The upstream gradient of each row.
    pub upstream: RowUpstream,
    /// Σ_c w[c] (C when unweighted).
    pub w_total: f64,
    /// Mean denominators: D = Σ w[y] over non-ignored rows (B for probabilities),
    /// N = non-ignored rows (B for probabilities). Unused unless reduction is mean.
    pub denom_ce: f64,
    pub denom_z: f64,
}

/// The upstream gradient of each row: one value for all (no per-row vector: at `B = 65536`
/// filling one took longer than the call's other per-row bookkeeping), or one per row.
#[derive(Clone, Debug)]
pub(crate) enum RowUpstream {
    All(f32),
    Each(Vec<f32>),
}

impl RowUpstream {
    /// Row `i`'s upstream gradient.
    #[inline]
    pub fn at(&self, i: usize) -> f32 {
        match self {
            RowUpstream::All(u) => *u,
            RowUpstream::Each(v) => v[i],
        }
    }
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
/// let err = validate((2, 5), Targets::classes(y.view()), &CrossEntropyOptions::default());
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
        Upstream::One => RowUpstream::All(1.0),
        Upstream::Scalar(u) if !u.is_finite() => {
            return bad(format!("the upstream gradient must be finite, got {u}"));
        }
        Upstream::Scalar(u) => RowUpstream::All(*u),
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
            RowUpstream::Each(v.to_vec())
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
            let q = match q.view().into_dimensionality::<ndarray::Ix2>() {
                Ok(q) if q.dim() == (rows, cols) => q,
                _ => {
                    return bad(format!(
                        "probability targets have shape {:?}, expected [{rows}, {cols}]",
                        q.shape()
                    ))
                }
            };
            if let Some(((r, c), v)) = q.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return bad(format!(
                    "probability target [{r}, {c}] = {v}: must be finite"
                ));
            }
            p.probs = Some(q.as_standard_layout().into_owned());
        }
        Targets::Classes(t) => classes_of(&mut p, t, o)?,
        Targets::ClassesI32(t) => classes_of(&mut p, t, o)?,
        Targets::ClassesU32(t) => classes_of(&mut p, t, o)?,
    }
    Ok(p)
}

/// [`resolve_classes`] of class targets of any index type, read as a slice where they are
/// contiguous (an n-dimensional view's own iterator costs several times the check itself).
fn classes_of<T: Copy + Into<i64>>(
    p: &mut Prepared,
    t: &ndarray::ArrayViewD<T>,
    o: &CrossEntropyOptions,
) -> Result<()> {
    match t.as_slice() {
        Some(s) => resolve_classes(p, t.shape(), s.iter().map(|&v| v.into()), o),
        None => resolve_classes(p, t.shape(), t.iter().map(|&v| v.into()), o),
    }
}

/// Class targets (of shape `shape`) as the kernels read them (−1 for an ignored row), checked,
/// with the mean denominators `D = Σ w[y]` and `N` over the rows not ignored. One pass over
/// the targets in their own type: no widened copy (at `B = 65536` each extra per-row vector
/// costs more in first-touch page faults than the pass itself).
fn resolve_classes(
    p: &mut Prepared,
    shape: &[usize],
    t: impl Iterator<Item = i64>,
    o: &CrossEntropyOptions,
) -> Result<()> {
    let (rows, cols) = (p.rows, p.cols);
    if shape != [rows] {
        return Err(Error::InvalidInput(format!(
            "targets have shape {shape:?}, expected [{rows}]"
        )));
    }
    let ignore = o.effective_ignore_index();
    let mut class = Vec::with_capacity(rows);
    for (i, v) in t.enumerate() {
        if v == ignore {
            class.push(-1);
        } else if v < 0 || v >= cols as i64 {
            return Err(Error::InvalidInput(format!(
                "target[{i}] = {v} is outside [0, {cols}) and is not ignore_index ({ignore})"
            )));
        } else {
            class.push(v as i32);
        }
    }
    let counted = || class.iter().filter(|&&c| c >= 0);
    let n = counted().count();
    // Unweighted, D = N (no serial chain of f64 additions).
    p.denom_ce = match &o.weight {
        // (Folded from +0: an empty f64 `sum` is −0.)
        Some(w) => counted().fold(0.0, |d, &c| d + w[c as usize] as f64),
        None => n as f64,
    };
    p.denom_z = n as f64;
    p.class = Some(class);
    Ok(())
}

/// Combines per-row CE losses (z-loss not included, f64) and per-row lse into the loss
/// output and its [`LossSums`]: `none` → `ce_i + z·lse_i²` (0 for ignored rows); `sum`/`mean`
/// → the sums in f64, the mean over each part's denominator. An empty or all-ignored batch
/// gives NaN for mean, 0 for sum.
pub(crate) fn reduce(
    p: &Prepared,
    o: &CrossEntropyOptions,
    ce: &[f64],
    lse: &[f32],
) -> (Loss, LossSums) {
    let counted = |i: usize| p.class.as_ref().is_none_or(|c| c[i] >= 0);
    let z = o.z_loss as f64;
    let zpart = |i: usize| {
        if z != 0.0 && counted(i) {
            z * (lse[i] as f64).powi(2)
        } else {
            0.0
        }
    };
    let sums = LossSums {
        loss: ce.iter().sum(),
        weight: p.denom_ce,
        z_loss: (0..p.rows).map(zpart).sum(),
        z_rows: p.denom_z,
    };
    let loss = match sums.reduce(o.reduction) {
        None => Loss::PerRow((0..p.rows).map(|i| (ce[i] + zpart(i)) as f32).collect()),
        Some(v) => Loss::Scalar(v as f32),
    };
    (loss, sums)
}
