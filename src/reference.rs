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
use crate::element::{DType, MatrixView, Tensor};
use crate::error::Result;
use crate::rows::reference as rows;
use crate::rows::RowOp;
use crate::tensor::narrow2;
use ndarray::{Array1, Array2, ArrayView2, Ix1};

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
        Ok(crate::surrogates::reference::surrogate_f64(call)?.narrow())
    }

    fn cross_entropy_matrix(
        &self,
        logits: MatrixView<'_>,
        targets: Targets,
        options: &CrossEntropyOptions,
        out: DType,
    ) -> Result<CrossEntropyOutput<Tensor, Ix1>> {
        let r = cross_entropy_f64(logits.to_f32().view(), &targets, options)?;
        Ok(CrossEntropyOutput {
            loss: match options.reduction {
                Reduction::None => Loss::PerRow(r.per_row.mapv(|v| v as f32)),
                _ => Loss::Scalar(r.reduced as f32),
            },
            grad: r.grad.map(|g| narrow2(g.mapv(|v| v as f32), out)),
            lse: r.lse.mapv(|v| v as f32),
            sums: r.sums,
        })
    }

    fn name(&self) -> &'static str {
        "reference"
    }

    /// The f64 results rounded to f32, then (for a half `out`) to `out`: the double rounding
    /// moves a value by at most one unit of `out` beyond the correct rounding.
    fn row_op_matrix(
        &self,
        op: RowOp,
        x: MatrixView<'_>,
        temperature: f32,
        out: DType,
    ) -> Result<Tensor> {
        let x = x.to_f32();
        Ok(match op {
            RowOp::LogSumExp => Tensor::F32(
                self.logsumexp_f64(x.view(), temperature)?
                    .mapv(|v| v as f32)
                    .into_dyn(),
            ),
            RowOp::Softmax | RowOp::LogSoftmax => {
                let log = op == RowOp::LogSoftmax;
                narrow2(
                    self.softmax_f64(x.view(), temperature, log)?
                        .mapv(|v| v as f32),
                    out,
                )
            }
        })
    }
}
