//! The smooth F1 scores, every step on the device (so they record like any other op): macro
//! F1's column sums, per-class coefficients and mean; binary F1's `Σ p·y` and `Σ (p + y)`.
//! Host scores are uploaded once for both passes; what comes back is the sums of
//! [`device_sums`].

use super::output::{Finish, Raw, RawValue};
use super::params::Kappa;
use super::points::PointJob;
use super::rows::RowJob;
use super::sums::{device_sums, merge_level};
use crate::element::DType;
use crate::error::{Error, Result};
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params};
use crate::gpu::io::{HostRows, In, Out, Place};
use crate::gpu::kernel::uniforms::SParams;
use crate::gpu::kernel::{Entry, Family, Kernel, Slot, Spec, SurrogateOp};
use crate::gpu::launch::{launch, Chunk, Input, Job, Layout, Mode, Output, Sink, Source};
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::split::WG;
use crate::surrogates::{macro_f1_from_columns, Prepared, Value};
use ndarray::ArrayView2;
use wgpu::BufferUsages as U;

/// Macro F1: per chunk, softmax then its column sums (`f1_columns`, one row of sums per
/// chunk); per class, the chunks' sums, `F1_c` and the gradient's coefficients
/// (`f1_classes`); `F = ΣF1_c / C` ([`device_sums`]); then the gradient through `weighted`
/// (`F1Grad`), which reads the coefficients and the sum's NaN flag where they lie.
pub(super) async fn macro_f1(
    ctx: &Context,
    x: &In<'_>,
    pr: &Prepared,
    t: f32,
    place: Place,
    mut mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Raw> {
    let (rows, cols) = (pr.rows, pr.cols);
    let mut grad = Out::new(ctx, place, rows, cols, f32::NAN)?;
    if rows == 0 || cols == 0 {
        // Nothing to compute: the value of no rows (0) or no classes (NaN), on the host.
        let zeros = vec![0.0; cols];
        let (f, _) = macro_f1_from_columns(&zeros, &zeros, &zeros);
        fill(ctx, &mut grad, f32::NAN)?;
        return Ok(Raw::done(Value::Scalar(f as f32), grad));
    }
    let mut store = None;
    let x = on_device(ctx, x, &mut store)?;
    let columns = RowJob::new(
        ctx,
        Entry::F1Columns,
        SurrogateOp::F1Columns,
        Kappa::Temperature(t),
        cols,
        SParams::default(),
        None,
    )?;
    let mut parts = columns
        .column_sums(ctx, &x, &pr.class, mode.reborrow(), keep)
        .await?;
    keep.extend(columns.into_buffers());
    // The chunks' column sums into one row (`f1_merge`, a level per binding's worth of rows).
    let what = "macro F1's column sums (2·C floats), twice in one storage binding";
    while parts.dim().0 > 1 {
        let job = ColumnPass::new(ctx, Entry::F1Merge, 2 * cols, None)?;
        parts = merge_level(ctx, &parts, 2 * cols, &job, what, mode.reborrow(), keep).await?;
        keep.extend(job.into_buffers());
    }
    let mut count = vec![0u32; cols];
    for &y in &pr.class {
        count[y as usize] += 1;
    }
    // [h, v interleaved per class (2C) | F1_c (C)]
    let coef = GpuMatrix::new_typed(ctx, 1, 3 * cols, DType::F32)?;
    let counts = ctx.upload_small(U::STORAGE, bytemuck::cast_slice(&count))?;
    let classes = ColumnPass::new(ctx, Entry::F1Classes, cols, Some(counts))?;
    let inputs = [Input {
        source: Source::Device(&parts),
        layout: Layout::Strided,
    }];
    let mut outputs = [Output {
        sink: Sink::Device(&coef),
        layout: Layout::Packed,
    }];
    let stride = parts.dim().1;
    keep.extend(
        launch(
            ctx,
            &classes,
            1,
            stride,
            &inputs,
            &mut outputs,
            mode.reborrow(),
        )
        .await?,
    );
    keep.extend(classes.into_buffers());
    let f1s = GpuMatrix::from_buffer(coef.buffer().clone(), (8 * cols) as u64, 1, cols, cols)?;
    let sums = device_sums(ctx, &f1s, None, mode.reborrow(), keep).await?;
    let sp = SParams {
        kappa: 1.0,
        sign: 1.0,
        u: 1.0,
        ..Default::default()
    };
    let job = RowJob::weighted(
        ctx,
        SurrogateOp::F1Grad,
        sp,
        Kappa::Temperature(t),
        cols,
        None,
    )?
    .with_device(coef.buffer(), sums.0.buffer());
    let mut values = Out::new(ctx, Place::Device, rows, 1, f32::NAN)?;
    keep.extend(
        job.run(ctx, &x, Some(&pr.class), &mut grad, &mut values, mode)
            .await?,
    );
    keep.extend(job.into_buffers());
    Ok(Raw {
        value: RawValue::Summed(sums, Finish::F1Macro(cols)),
        grad,
        grad_b: None,
    })
}

/// A pass of one invocation per column over a chunk's rows of column sums (`f1_merge`: `cols`
/// = `2C` sums merged; `f1_classes`: `cols` = `C` classes, with their counts).
struct ColumnPass {
    entry: Entry,
    cols: usize,
    sp: PooledBuffer,
    counts: Option<PooledBuffer>,
}

impl ColumnPass {
    fn new(ctx: &Context, entry: Entry, cols: usize, counts: Option<PooledBuffer>) -> Result<Self> {
        // (The kernels read no `sp`; a uniform must be bound all the same.)
        let sp = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&SParams::default()))?;
        Ok(ColumnPass {
            entry,
            cols,
            sp,
            counts,
        })
    }

    /// Its buffers, kept until a recorded call's encoder is submitted.
    fn into_buffers(self) -> Vec<PooledBuffer> {
        std::iter::once(self.sp).chain(self.counts).collect()
    }
}

impl Job for ColumnPass {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let x = chunk.inputs[0];
        let kernel = Kernel {
            family: Family::SurrogateRows,
            entry: self.entry,
            spec: Spec {
                op: Some(SurrogateOp::F1Columns),
                ..Spec::default()
            },
        };
        let mut b = vec![
            (Slot::X, x.slice.binding()),
            (Slot::RowOut, chunk.outputs[0].slice.binding()),
            (
                Slot::SParams,
                binding(self.sp.buffer(), std::mem::size_of::<SParams>() as u64),
            ),
        ];
        if let Some(c) = &self.counts {
            b.push((Slot::Targets, binding(c.buffer(), (self.cols * 4) as u64)));
        }
        let params =
            Params::new(chunk.rows, self.cols, 1, 1, 1.0).placed(x.slice.base, x.stride, 0);
        let pass = record_pass(ctx, encoder, kernel, self.cols.div_ceil(WG), params, b)?;
        Ok(vec![pass])
    }
}

/// Binary F1, all on the device: `σ(x)·y` and `σ(x) + y` summed per workgroup
/// (`F1Sigmoid` through `pointwise_sum`, nothing stored per element) and to the end, then the
/// gradient (`F1BinaryGrad`) from those sums where they lie. Host scores and labels are
/// uploaded once for both passes.
pub(super) async fn binary_f1(
    ctx: &Context,
    x: &In<'_>,
    pr: &Prepared,
    place: Place,
    mut mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Raw> {
    let (rows, cols) = (pr.rows, pr.cols);
    let labels = pr.labels.as_deref().unwrap_or(&[]);
    let y = ArrayView2::from_shape((rows, cols), labels)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let y = GpuMatrix::upload(ctx, y)?;
    let mut store = None;
    let x = on_device(ctx, x, &mut store)?;
    let y = In::Device(&y);
    let first = PointJob::new(ctx, SurrogateOp::F1Sigmoid, SParams::default(), cols, None)?;
    let sums = first
        .run_summed(ctx, (&x, &y), None, None, mode.reborrow(), keep)
        .await?;
    let mut grad = Out::new(ctx, place, rows, cols, 0.0)?;
    let second = PointJob::new(
        ctx,
        SurrogateOp::F1BinaryGrad,
        SParams::default(),
        cols,
        None,
    )?
    .with_sums(sums.0.buffer());
    let outs = (None, Some(&mut grad), None);
    keep.extend(second.run(ctx, &x, &y, None, outs, mode).await?);
    Ok(Raw {
        value: RawValue::Summed(sums, Finish::F1Binary),
        grad,
        grad_b: None,
    })
}

/// `x` on the device: host scores (f32, as the surrogate kernels read them) uploaded once
/// into `store`, for ops that read them in more than one pass.
fn on_device<'a>(ctx: &Context, x: &'a In<'a>, store: &'a mut Option<GpuMatrix>) -> Result<In<'a>> {
    match x {
        In::Host { data, dim, .. } => {
            let floats: Vec<f32> = bytemuck::pod_collect_to_vec(data);
            let view = ArrayView2::from_shape(*dim, &floats)
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            Ok(In::Device(store.insert(GpuMatrix::upload(ctx, view)?)))
        }
        In::Device(m) => Ok(In::Device(m)),
    }
}

/// Sets every element of an output that no kernel writes.
fn fill(ctx: &Context, out: &mut Out, v: f32) -> Result<()> {
    match out {
        Out::Host {
            data: HostRows::F32(data),
            ..
        } => {
            data.iter_mut().for_each(|d| *d = v);
            Ok(())
        }
        Out::Host { .. } => Err(Error::InvalidInput(
            "internal: a half surrogate output".into(),
        )),
        Out::Device(m) => m.fill(ctx, v),
    }
}
