//! The f64 oracle: every op written for obviousness, accumulating in f64.
//!
//! The fast backends use the same formulas (max-shifted exponentials) but accumulate in f32, so
//! a disagreement beyond f32 rounding points at a bug, not at a different algorithm. The
//! non-finite cases are spelled out one by one, in the order of the table in the crate docs.

use crate::cross_entropy::reference::{
    cross_entropy_f64, cross_entropy_f64_logits, ReferenceCrossEntropy,
};
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Loss, Reduction, Targets};
use crate::error::Result;
use crate::ops::{check_temperature, Backend, RowOp, RowOutput};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// The f64 reference backend. Slow and obvious; use it to check the others.
#[derive(Copy, Clone, Debug, Default)]
pub struct Reference;

/// What a row's values say about its normalizer, decided before any arithmetic.
enum RowKind {
    /// Some NaN: every output is NaN.
    HasNan,
    /// Some +inf and no NaN: logsumexp is +inf, (log-)softmax NaN.
    HasPosInf,
    /// Empty, or every value −inf: logsumexp is −inf, (log-)softmax NaN.
    NoFinite,
    /// At least one finite value, the rest finite or −inf: `m` is the finite max, `s` the sum
    /// of `exp(x − m)` (−inf terms contribute exactly 0), so `lse = m + ln s`.
    Finite { m: f64, s: f64 },
}

/// A row's kind, and for a finite row its max `m` (of the raw values) and
/// `s = Σ exp((x − m)/T)`: the difference is formed before dividing (in f64, exact or nearly
/// so for nearby values), so a row of values `ε·|x|` apart keeps its spread even when `|x/T|`
/// is far beyond `2⁵³`.
fn classify(xs: &[f64], t: f64) -> RowKind {
    if xs.iter().any(|x| x.is_nan()) {
        return RowKind::HasNan;
    }
    if xs.contains(&f64::INFINITY) {
        return RowKind::HasPosInf;
    }
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return RowKind::NoFinite;
    }
    let s = xs.iter().map(|&x| ((x - m) / t).exp()).sum();
    RowKind::Finite { m, s }
}

fn widen(row: ArrayView1<f32>) -> Vec<f64> {
    row.iter().map(|&x| x as f64).collect()
}

impl Reference {
    /// `T · logsumexp(x / T) = m + T·ln s` per row, in f64.
    pub fn logsumexp_f64(&self, x: ArrayView2<f32>, temperature: f32) -> Result<Array1<f64>> {
        check_temperature(temperature)?;
        let t = temperature as f64;
        Ok(x.axis_iter(Axis(0))
            .map(|row| match classify(&widen(row), t) {
                RowKind::HasNan => f64::NAN,
                RowKind::HasPosInf => f64::INFINITY,
                RowKind::NoFinite => f64::NEG_INFINITY,
                RowKind::Finite { m, s } => m + t * s.ln(),
            })
            .collect())
    }

    /// Softmax (or, with `log = true`, log-softmax) of `x / T` per row, in f64.
    pub fn softmax_f64(
        &self,
        x: ArrayView2<f32>,
        temperature: f32,
        log: bool,
    ) -> Result<Array2<f64>> {
        check_temperature(temperature)?;
        let t = temperature as f64;
        let mut out = Array2::<f64>::zeros(x.raw_dim());
        for (row, mut dst) in x.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
            let xs = widen(row);
            match classify(&xs, t) {
                RowKind::HasNan | RowKind::HasPosInf | RowKind::NoFinite => dst.fill(f64::NAN),
                RowKind::Finite { m, s } => {
                    for (d, &v) in dst.iter_mut().zip(&xs) {
                        // (x − m)/T − ln s, not x/T − lse: full precision under a large shift.
                        *d = if log {
                            (v - m) / t - s.ln()
                        } else {
                            ((v - m) / t).exp() / s
                        };
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Reference {
    /// Cross-entropy in f64: PyTorch's formulas applied literally (see
    /// [`crate::cross_entropy`]), with the analytic gradient.
    pub fn cross_entropy_f64(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<ReferenceCrossEntropy> {
        cross_entropy_f64(logits, &targets, options)
    }

    /// [`Reference::cross_entropy_f64`] on f64 logits, e.g. for finite-difference checks.
    pub fn cross_entropy_f64_logits(
        &self,
        logits: ArrayView2<f64>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<ReferenceCrossEntropy> {
        cross_entropy_f64_logits(logits, &targets, options)
    }
}

impl Backend for Reference {
    fn surrogate(&self, call: &crate::Surrogate) -> Result<crate::SurrogateOutput> {
        use crate::surrogates::reference::{narrow, surrogate_f64};
        Ok(narrow(surrogate_f64(call)?))
    }

    fn cross_entropy(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        let r = cross_entropy_f64(logits, &targets, options)?;
        Ok(CrossEntropyOutput {
            loss: match options.reduction {
                Reduction::None => Loss::PerRow(r.per_row.mapv(|v| v as f32)),
                _ => Loss::Scalar(r.reduced as f32),
            },
            grad: r.grad.map(|g| g.mapv(|v| v as f32)),
            lse: r.lse.mapv(|v| v as f32),
        })
    }

    fn name(&self) -> &'static str {
        "reference"
    }

    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput> {
        Ok(match op {
            RowOp::LogSumExp => {
                RowOutput::PerRow(self.logsumexp_f64(x, temperature)?.mapv(|v| v as f32))
            }
            RowOp::Softmax => {
                RowOutput::Matrix(self.softmax_f64(x, temperature, false)?.mapv(|v| v as f32))
            }
            RowOp::LogSoftmax => {
                RowOutput::Matrix(self.softmax_f64(x, temperature, true)?.mapv(|v| v as f32))
            }
        })
    }
}
