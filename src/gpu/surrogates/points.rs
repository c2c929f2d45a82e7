//! The pointwise family (shaders/pointwise.wgsl) as a [`Job`]: one value and gradient per
//! element (two gradients for the pairwise max). Every stream is packed: the kernel indexes
//! elements `0..n` of its chunk.

use super::sums::{sum_partials, DeviceSums, PARTIAL};
use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params};
use crate::gpu::io::{In, Out};
use crate::gpu::kernel::uniforms::SParams;
use crate::gpu::kernel::{Entry, Family, Kernel, Slot, Spec, SurrogateOp, SUM_GROUPS};
use crate::gpu::launch::{
    chunk_outputs, host, launch, Chunk, Input, Job, Layout, Mode, Output, Sink,
};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::split::WG;
use wgpu::BufferUsages as U;

/// A job of the pointwise family. Inputs: the scores (or `a`), the labels (or `b`) and
/// optionally per-element weights; outputs (each optional): the values, the gradient and,
/// for the pairwise max, the gradient with respect to `b`, each `[B, C]`.
pub(super) struct PointJob {
    pub(super) op: SurrogateOp,
    pub(super) sp: SParams,
    pub(super) cols: usize,
    /// The logistic loss's `pos_weight`, per column.
    pos_weight: Option<PooledBuffer>,
    /// Binary F1's second pass: the device sums of the first, bound as `weight`.
    sums: Option<wgpu::Buffer>,
    /// Whether the values are summed per workgroup (`pointwise_sum`) rather than stored.
    summed: bool,
    /// Which outputs the launch has, in order.
    values: bool,
    grad: bool,
    grad_b: bool,
    weighted: bool,
}

const X: usize = 0;
const B: usize = 1;
const WEIGHT: usize = 2;

impl PointJob {
    pub(super) fn new(
        ctx: &Context,
        op: SurrogateOp,
        sp: SParams,
        cols: usize,
        pos_weight: Option<&[f32]>,
    ) -> Result<Self> {
        Ok(PointJob {
            op,
            sp,
            cols,
            pos_weight: pos_weight
                .map(|w| ctx.upload_small(U::STORAGE, bytemuck::cast_slice(w)))
                .transpose()?,
            sums: None,
            summed: false,
            values: false,
            grad: false,
            grad_b: false,
            weighted: false,
        })
    }

    /// Binds `sums` (binary F1's device sums) as the kernel's `weight`.
    pub(super) fn with_sums(self, sums: &wgpu::Buffer) -> Self {
        PointJob {
            sums: Some(sums.clone()),
            ..self
        }
    }

    /// The streams every pass reads: the scores, the labels or second argument, and the
    /// per-element weights if any (packed: the kernel indexes elements `0..n`).
    fn inputs<'a>(
        &mut self,
        (x, b): (&'a In<'_>, &'a In<'_>),
        weight: Option<&'a [f32]>,
        cols: usize,
    ) -> Result<Vec<Input<'a>>> {
        let mut inputs = vec![
            Input {
                source: x.source()?,
                layout: Layout::Packed,
            },
            Input {
                source: b.source()?,
                layout: Layout::Packed,
            },
        ];
        inputs.extend(weight.map(|w| Input {
            source: host(w, cols),
            layout: Layout::Packed,
        }));
        self.weighted = weight.is_some();
        Ok(inputs)
    }

    fn pairwise(&self) -> bool {
        matches!(
            self.op,
            SurrogateOp::PairwiseErf
                | SurrogateOp::PairwiseSqrt
                | SurrogateOp::PairwiseAcon
                | SurrogateOp::PairwiseLogCosh
        )
    }

    /// Runs over every element. `b` is the labels or the second argument, `weight` per-element
    /// weights; `(values, grad, grad_b)` the outputs asked for.
    pub(super) async fn run(
        mut self,
        ctx: &Context,
        x: &In<'_>,
        b: &In<'_>,
        weight: Option<&[f32]>,
        (values, grad, grad_b): (Option<&mut Out>, Option<&mut Out>, Option<&mut Out>),
        mode: Mode<'_>,
    ) -> Result<Vec<PooledBuffer>> {
        let (rows, cols) = x.dim();
        if rows * cols == 0 {
            return Ok(Vec::new());
        }
        let inputs = self.inputs((x, b), weight, cols)?;
        self.values = values.is_some();
        self.grad = grad.is_some();
        self.grad_b = grad_b.is_some();
        let outputs = [values, grad, grad_b];
        let mut outputs: Vec<Output> = outputs
            .into_iter()
            .flatten()
            .map(|o| Output {
                sink: o.sink(),
                layout: Layout::Packed,
            })
            .collect();
        let mut keep = launch(ctx, &self, rows, cols, &inputs, &mut outputs, mode).await?;
        // Recorded, `pos_weight` must outlive the caller's submission too.
        keep.extend(self.pos_weight);
        Ok(keep)
    }
}

impl PointJob {
    /// Runs over every element with the values summed on the device instead of stored
    /// (`pointwise_sum`): the gradient into `grad` if asked for, the [`SUM_GROUPS`]
    /// workgroups' partial sums into a new matrix, one row per chunk, summed to the end
    /// ([`sum_partials`]).
    pub(super) async fn run_summed(
        mut self,
        ctx: &Context,
        (x, b): (&In<'_>, &In<'_>),
        weight: Option<&[f32]>,
        grad: Option<&mut Out>,
        mut mode: Mode<'_>,
        keep: &mut Vec<PooledBuffer>,
    ) -> Result<DeviceSums> {
        let (rows, cols) = x.dim();
        if rows * cols == 0 {
            return DeviceSums::zero(ctx);
        }
        let inputs = self.inputs((x, b), weight, cols)?;
        self.summed = true;
        self.grad = grad.is_some();
        let mut outputs: Vec<Output> = grad
            .into_iter()
            .map(|o| Output {
                sink: o.sink(),
                layout: Layout::Packed,
            })
            .collect();
        // Per chunk: one group of (s, c, flags) per workgroup, SUM_GROUPS of them.
        let parts = chunk_outputs(
            ctx,
            (rows, cols),
            &inputs,
            &outputs,
            &mode,
            PARTIAL * SUM_GROUPS,
        )?;
        outputs.insert(
            0,
            Output {
                sink: Sink::DeviceChunks(&parts),
                layout: Layout::Packed,
            },
        );
        keep.extend(
            launch(
                ctx,
                &self,
                rows,
                cols,
                &inputs,
                &mut outputs,
                mode.reborrow(),
            )
            .await?,
        );
        drop(outputs);
        keep.extend(self.pos_weight);
        sum_partials(ctx, parts, SUM_GROUPS, mode, keep).await
    }
}

impl Job for PointJob {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let n = chunk.rows * self.cols;
        let sp = SParams {
            n: n as u32,
            ..self.sp
        };
        let ub = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&sp))?;
        let entry = if self.summed {
            Entry::PointwiseSum
        } else {
            Entry::Pointwise
        };
        let kernel = Kernel {
            family: Family::Pointwise,
            entry,
            spec: Spec {
                op: Some(self.op),
                ..Spec::default()
            },
        };
        let mut b = vec![
            (Slot::X, chunk.inputs[X].slice.binding()),
            (Slot::BIn, chunk.inputs[B].slice.binding()),
            (
                Slot::SParams,
                binding(ub.buffer(), std::mem::size_of::<SParams>() as u64),
            ),
        ];
        if self.weighted {
            b.push((Slot::Weight, chunk.inputs[WEIGHT].slice.binding()));
        } else if let Some(sums) = &self.sums {
            b.push((Slot::Weight, binding(sums, sums.size())));
        }
        let mut outs = chunk.outputs.iter();
        if self.values || self.summed {
            b.extend(outs.next().map(|v| (Slot::Y, v.slice.binding())));
        }
        if self.grad {
            b.extend(outs.next().map(|g| (Slot::Grad, g.slice.binding())));
        }
        if self.grad_b {
            b.extend(outs.next().map(|g| (Slot::GradB, g.slice.binding())));
        }
        if let Some(pw) = &self.pos_weight {
            b.push((Slot::Q, binding(pw.buffer(), (self.cols * 4) as u64)));
        }
        let params = Params::new(chunk.rows, self.cols, 1, 1, 1.0);
        // The summing entry runs SUM_GROUPS workgroups over strided shares of the chunk.
        let groups = if self.summed {
            SUM_GROUPS
        } else {
            n.div_ceil(WG)
        };
        let pass = record_pass(ctx, encoder, kernel, groups, params, b)?;
        debug_assert!(self.pairwise() == self.grad_b);
        Ok(vec![pass, ub])
    }
}
