//! The row family (shaders/surrogate_rows.wgsl) as a [`Job`]: one value and one gradient row
//! per row of scores (`weighted`, `margin`), and the per-chunk column sums of macro F1
//! (`f1_columns`, after a softmax into scratch).

use super::params::Kappa;
use crate::element::DType;
use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params, Slice};
use crate::gpu::io::{In, Out};
use crate::gpu::kernel::uniforms::SParams;
use crate::gpu::kernel::{Entry, Family, Kernel, Slot, Spec, SurrogateOp};
use crate::gpu::launch::{
    chunk_outputs, host, launch, Chunk, Input, Job, Layout, Mode, Output, Sink,
};
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::rows::{record_rows, RowsJob};
use crate::gpu::split::{RowSplit, WG};
use crate::rows::RowOp;
use wgpu::BufferUsages as U;

/// A job of the row family. Inputs: the scores (strided) and, for ops with classes, a class
/// per row; outputs: the gradient `[B, C]` and one value per row (`weighted`, `margin`), or
/// `(Σ_i p_ic, Σ_{i: y_i = c} p_ic)` per chunk (`f1_columns`).
pub(super) struct RowJob {
    pub(super) entry: Entry,
    pub(super) op: SurrogateOp,
    pub(super) kappa: Kappa,
    pub(super) cols: usize,
    sp: PooledBuffer,
    /// Class weights (margin) or F1's interleaved `(h, v)`.
    weight: Option<PooledBuffer>,
    /// Macro F1's gradient: `(h, v)` and the device sum of the classes' F1 (for its NaN
    /// flag), where `f1_classes` and the sums left them (bound as `weight` and `q`).
    device: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

const X: usize = 0;
const CLASSES: usize = 1;
const GRAD: usize = 0;
const VALUES: usize = 1;
const COLUMNS: usize = 0;

impl RowJob {
    pub(super) fn new(
        ctx: &Context,
        entry: Entry,
        op: SurrogateOp,
        kappa: Kappa,
        cols: usize,
        sp: SParams,
        weight: Option<&[f32]>,
    ) -> Result<Self> {
        Ok(RowJob {
            entry,
            op,
            kappa,
            cols,
            sp: ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&sp))?,
            weight: weight
                .map(|w| ctx.upload_small(U::STORAGE, bytemuck::cast_slice(w)))
                .transpose()?,
            device: None,
        })
    }

    /// Reads its weights (`F1Grad`'s coefficients) and `q` (the F sum) from device buffers.
    pub(super) fn with_device(self, weight: &wgpu::Buffer, q: &wgpu::Buffer) -> Self {
        RowJob {
            device: Some((weight.clone(), q.clone())),
            ..self
        }
    }

    /// The `weighted` ops: `κ` split as `kappa_times` wants it.
    pub(super) fn weighted(
        ctx: &Context,
        op: SurrogateOp,
        sp: SParams,
        kappa: Kappa,
        cols: usize,
        weight: Option<&[f32]>,
    ) -> Result<Self> {
        let (s, r) = kappa.split();
        // Boltzmann's (g − f) is in quarters: the 4 goes into kappa_r (see `kappa_times`).
        let r = if op == SurrogateOp::Boltzmann {
            4.0 * r
        } else {
            r
        };
        let sp = SParams {
            kappa: s,
            kappa_r: r,
            ..sp
        };
        RowJob::new(ctx, Entry::Weighted, op, kappa, cols, sp, weight)
    }

    /// Runs over every row: the gradient into `grad`, each row's value into `values`.
    pub(super) async fn run(
        &self,
        ctx: &Context,
        x: &In<'_>,
        classes: Option<&[u32]>,
        grad: &mut Out,
        values: &mut Out,
        mode: Mode<'_>,
    ) -> Result<Vec<PooledBuffer>> {
        let (rows, _) = x.dim();
        let mut inputs = vec![Input {
            source: x.source()?,
            layout: Layout::Strided,
        }];
        inputs.extend(classes.map(|c| Input {
            source: host(c, 1),
            layout: Layout::Packed,
        }));
        let mut outputs = [
            Output {
                sink: grad.sink(),
                layout: Layout::Based,
            },
            Output {
                sink: values.sink(),
                layout: Layout::Packed,
            },
        ];
        launch(ctx, self, rows, self.cols, &inputs, &mut outputs, mode).await
    }

    /// Macro F1's column sums per chunk, `(Σ_i p_ic, Σ_{i: y_i = c} p_ic)` for every class:
    /// row `k` of the returned matrix holds chunk `k`'s (`2C` floats; see
    /// `launch::chunk_outputs`).
    pub(super) async fn column_sums(
        &self,
        ctx: &Context,
        x: &In<'_>,
        classes: &[u32],
        mode: Mode<'_>,
        keep: &mut Vec<PooledBuffer>,
    ) -> Result<GpuMatrix> {
        let (rows, cols) = x.dim();
        let inputs = [
            Input {
                source: x.source()?,
                layout: Layout::Strided,
            },
            Input {
                source: host(classes, 1),
                layout: Layout::Packed,
            },
        ];
        let parts = chunk_outputs(ctx, (rows, cols), &inputs, &[], &mode, 2 * cols)?;
        let mut outputs = [Output {
            sink: Sink::DeviceChunks(&parts),
            layout: Layout::Packed,
        }];
        keep.extend(launch(ctx, self, rows, cols, &inputs, &mut outputs, mode).await?);
        Ok(parts)
    }
}

impl Job for RowJob {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let (n, cols) = (chunk.rows, self.cols);
        let x = chunk.inputs[X];
        let classes = chunk
            .inputs
            .get(CLASSES)
            .map(|c| (Slot::Targets, c.slice.binding()));
        let sp = (Slot::SParams, binding(self.sp.buffer(), SPARAMS_BYTES));
        if self.entry == Entry::F1Columns {
            // Softmax into scratch, then its column sums.
            let bytes = (n * cols * 4) as u64;
            let p = ctx
                .pool
                .acquire(&ctx.device, U::STORAGE, bytes, ctx.max_binding());
            let softmax = RowsJob {
                op: RowOp::Softmax,
                temperature: self.kappa_temperature(),
                cols,
                x_dtype: DType::F32,
                y_dtype: DType::F32,
            };
            let mut keep = record_rows(
                ctx,
                encoder,
                &softmax,
                (x.slice, x.stride),
                (Slice::at0(p.buffer(), bytes), cols),
                n,
            )?;
            let kernel = Kernel {
                family: Family::SurrogateRows,
                entry: Entry::F1Columns,
                spec: Spec {
                    op: Some(self.op),
                    ..Spec::default()
                },
            };
            let mut b = vec![
                (Slot::X, binding(p.buffer(), bytes)),
                (Slot::RowOut, chunk.outputs[COLUMNS].slice.binding()),
                sp,
            ];
            b.extend(classes);
            let params = Params::new(n, cols, 1, cols.div_ceil(4) as u32, 1.0);
            keep.push(record_pass(
                ctx,
                encoder,
                kernel,
                cols.div_ceil(WG),
                params,
                b,
            )?);
            keep.push(p);
            return Ok(keep);
        }
        let split = RowSplit::whole_rows(n, cols.div_ceil(4), ctx.policy());
        let kernel = Kernel {
            family: Family::SurrogateRows,
            entry: self.entry,
            spec: Spec {
                row_threads: split.row_threads,
                op: Some(self.op),
                exp_form: self.kappa.form(),
                ..Spec::default()
            },
        };
        let (grad, values) = (chunk.outputs[GRAD].slice, chunk.outputs[VALUES].slice);
        let mut b = vec![
            (Slot::X, x.slice.binding()),
            (Slot::Y, grad.binding()),
            (Slot::RowOut, values.binding()),
            sp,
        ];
        b.extend(classes);
        b.extend(
            self.weight
                .as_ref()
                .map(|w| (Slot::Weight, binding(w.buffer(), w.buffer().size()))),
        );
        if let Some((w, q)) = &self.device {
            b.push((Slot::Weight, binding(w, w.size())));
            b.push((Slot::Q, binding(q, q.size())));
        }
        let params =
            self.kappa
                .params(n, cols, split.seg_len)
                .placed(x.slice.base, x.stride, grad.base);
        let pass = record_pass(ctx, encoder, kernel, split.workgroups(n), params, b)?;
        Ok(vec![pass])
    }
}

impl RowJob {
    /// The per-call buffers the kernels read (the uniform, the weights): a recorded call
    /// keeps them until its encoder has been submitted.
    pub(super) fn into_buffers(self) -> Vec<PooledBuffer> {
        // (The device buffers are handles: wgpu keeps a buffer alive while recorded work
        // uses it, whoever drops the handle.)
        std::iter::once(self.sp).chain(self.weight).collect()
    }

    /// The temperature macro F1's softmax runs at.
    fn kappa_temperature(&self) -> f32 {
        match self.kappa {
            Kappa::Temperature(t) => t,
            Kappa::Beta(_) => 1.0,
        }
    }
}

const SPARAMS_BYTES: u64 = std::mem::size_of::<SParams>() as u64;
