//! The GPU engine behind the cross-backend interface: host data in and out, blocking. Row ops
//! and cross-entropy read f32, f16 and bf16 rows natively (half elements in u32 words) and
//! write their matrix output in the type asked for; the surrogates run through [`Gpu::call`].

use super::engine::Gpu;
use super::io::{Matrix, Place};
use super::launch::Mode;
use super::readback::Wait;
use super::{ce_call as ce, rows};
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::element::{DType, MatrixView, Tensor};
use crate::error::Result;
use crate::linear_ce::pass::{LinearPass, LinearPassResult};
use crate::rows::RowOp;
use crate::shard::pass::{ShardPass, ShardResult};
use crate::surrogates::{Surrogate, SurrogateOutput};
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
        let rows = x.dim().0;
        pollster::block_on(async {
            let mut keep = Vec::new();
            let mode = Mode::Stream(Wait::Inline);
            let x = Matrix::Host(x);
            let staged = rows::stage(
                &self.ctx,
                op,
                x,
                temperature,
                Place::Host,
                None,
                Some(out),
                mode,
                &mut keep,
            )
            .await?;
            drop(keep);
            rows::finish_tensor(op, staged, rows)
        })
    }

    fn cross_entropy_shard(
        &self,
        logits: MatrixView<'_>,
        pass: &ShardPass<'_>,
    ) -> Result<ShardResult> {
        let (p, fi, o) = pass.fast_call();
        pollster::block_on(async {
            let mut keep = Vec::new();
            let mode = Mode::Stream(Wait::Inline);
            let staged = ce::stage_planned(
                &self.ctx,
                Matrix::Host(logits),
                p.clone(),
                fi.clone(),
                o,
                (Place::Host, false, Some(pass.out)),
                mode,
                &mut keep,
            )
            .await?;
            drop(keep);
            let (stats, grad) = staged.finish_raw(self, Wait::Inline).await?;
            Ok(pass.fast_result(&stats, grad))
        })
    }

    fn linear_ce_pass(&self, pass: &LinearPass<'_, '_>) -> Result<LinearPassResult> {
        super::linear::pass(self, pass)
    }

    fn cross_entropy_matrix(
        &self,
        logits: MatrixView<'_>,
        targets: Targets,
        options: &CrossEntropyOptions,
        out: DType,
    ) -> Result<CrossEntropyOutput<Tensor, Ix1>> {
        pollster::block_on(async {
            let mut keep = Vec::new();
            let mode = Mode::Stream(Wait::Inline);
            let staged = ce::stage(
                &self.ctx,
                Matrix::Host(logits),
                &targets,
                options,
                Place::Host,
                false,
                Some(out),
                mode,
                &mut keep,
            )
            .await?;
            drop(keep);
            staged.finish_tensor(self, Wait::Inline).await
        })
    }
}
