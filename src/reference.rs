//! The f64 reference backend: each family's oracle (`rows::reference`,
//! `cross_entropy::reference`, `surrogates::reference`) behind the [`Backend`] interface.
//!
//! Every op is written for obviousness, accumulating in f64.
//!
//! The fast backends use the same formulas (max-shifted exponentials) but accumulate in f32, so
//! a disagreement beyond f32 rounding points at a bug, not at a different algorithm. The
//! non-finite cases are spelled out one by one, in the order of the table in the crate docs.

use crate::backend::Backend;
use crate::cross_entropy::reference::{
    cross_entropy_f64, cross_entropy_f64_logits, ReferenceCrossEntropy,
};
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Loss, Reduction, Targets};
use crate::error::Result;
use crate::rows::reference as rows;
use crate::rows::{RowOp, RowOutput};
use ndarray::{Array1, Array2, ArrayView2};

/// The f64 reference backend. Slow and obvious; use it to check the others.
#[derive(Copy, Clone, Debug, Default)]
pub struct Reference;

impl Reference {
    /// `T · logsumexp(x / T) = m + T·ln s` per row, in f64.
    pub fn logsumexp_f64(&self, x: ArrayView2<f32>, temperature: f32) -> Result<Array1<f64>> {
        rows::logsumexp_f64(x, temperature)
    }

    /// Softmax (or, with `log = true`, log-softmax) of `x / T` per row, in f64.
    pub fn softmax_f64(
        &self,
        x: ArrayView2<f32>,
        temperature: f32,
        log: bool,
    ) -> Result<Array2<f64>> {
        rows::softmax_f64(x, temperature, log)
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
