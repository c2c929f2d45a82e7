//! The GPU engine behind the cross-backend interface: each op through [`Gpu::call`], host data
//! in and out, blocking.

use super::call::{CrossEntropy, Rows};
use super::engine::Gpu;
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::Result;
use crate::rows::{RowOp, RowOutput};
use crate::surrogates::{Surrogate, SurrogateOutput};
use ndarray::ArrayView2;

impl Backend for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn surrogate(&self, call: &Surrogate) -> Result<SurrogateOutput> {
        self.call(call.clone()).run()
    }

    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput> {
        self.call(Rows { op, x, temperature }).run()
    }

    fn cross_entropy(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        self.call(CrossEntropy {
            logits,
            targets,
            options: options.clone(),
        })
        .run()
    }
}
