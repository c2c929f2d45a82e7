//! The GPU engine behind the cross-backend interface: each op through [`Gpu::call`], host data
//! in and out, blocking.

use super::call::{CrossEntropy, Rows};
use super::engine::Gpu;
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::element::{DType, MatrixView, Tensor};
use crate::error::Result;
use crate::rows::{RowOp, RowOutput};
use crate::surrogates::{Surrogate, SurrogateOutput};
use crate::tensor::narrow2;
use ndarray::Ix1;

impl Backend for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn surrogate(&self, call: &Surrogate) -> Result<SurrogateOutput> {
        self.call(call.clone()).run()
    }

    fn row_op_matrix(
        &self,
        op: RowOp,
        x: MatrixView<'_>,
        temperature: f32,
        out: DType,
    ) -> Result<Tensor> {
        let x = x.to_f32();
        Ok(
            match self
                .call(Rows {
                    op,
                    x: x.view(),
                    temperature,
                })
                .run()?
            {
                RowOutput::PerRow(v) => Tensor::F32(v.into_dyn()),
                RowOutput::Matrix(m) => narrow2(m, out),
            },
        )
    }

    fn cross_entropy_matrix(
        &self,
        logits: MatrixView<'_>,
        targets: Targets,
        options: &CrossEntropyOptions,
        out: DType,
    ) -> Result<CrossEntropyOutput<Tensor, Ix1>> {
        let logits = logits.to_f32();
        let r = self
            .call(CrossEntropy {
                logits: logits.view(),
                targets,
                options: options.clone(),
            })
            .run()?;
        Ok(CrossEntropyOutput {
            loss: r.loss,
            grad: r.grad.map(|g| narrow2(g, out)),
            lse: r.lse,
        })
    }
}
