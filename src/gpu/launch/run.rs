//! The entry point: plan a launch and run it in its mode.

use super::bind::{Plan, Set};
use super::rule::chunk_rows;
use super::streams::{Input, Job, Layout, Mode, Output, Sink, Source};
use crate::error::{Error, Result};
use crate::gpu::context::Context;
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::scopes::Scopes;
use wgpu::BufferUsages as U;

/// Runs `job` over `rows` rows. In [`Mode::Record`] the returned buffers must live until the
/// encoder is submitted; in [`Mode::Stream`] the work is done when this returns.
pub(crate) async fn launch<'s>(
    ctx: &Context,
    job: &dyn Job,
    rows: usize,
    cols: usize,
    inputs: &[Input<'s>],
    outputs: &mut [Output<'s>],
    mode: Mode<'_>,
) -> Result<Vec<PooledBuffer>> {
    ctx.check_alive()?;
    if rows == 0 {
        return Ok(Vec::new());
    }
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    check_usages(inputs, outputs)?;
    let host = has_host(inputs, outputs);
    let streamed = matches!(mode, Mode::Stream(_)) && host;
    let chunk = chunk_of(ctx, rows, cols, inputs, outputs, streamed)?;
    for o in outputs.iter() {
        if let Sink::DeviceChunks(m) = o.sink {
            if m.dim().0 < rows.div_ceil(chunk) {
                return Err(Error::InvalidInput(format!(
                    "internal: {} rows of per-chunk output for {} chunks",
                    m.dim().0,
                    rows.div_ceil(chunk)
                )));
            }
        }
    }
    let mut plan = Plan {
        ctx,
        inputs,
        outputs,
        chunk,
        align,
    };
    let mut keep = Vec::new();
    let mut sets = [Set::default(), Set::default()];
    let res = match mode {
        // Device data only: every chunk into one encoder of the engine's own, submitted once
        // (nothing to transfer, so nothing to overlap and no second set of buffers).
        Mode::Stream(_) if !host => {
            let dev = &ctx.device;
            let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("smoothmax/device"),
            });
            let recorded = plan
                .each_chunk(job, rows, Mode::Record(&mut encoder), &mut sets, &mut keep)
                .await;
            recorded.and_then(|()| {
                let scopes = Scopes::push(dev);
                ctx.queue.submit([encoder.finish()]);
                scopes.pop()
            })
        }
        mode => plan.each_chunk(job, rows, mode, &mut sets, &mut keep).await,
    };
    if res.is_err() {
        // The state of these buffers is unknown after a failure: do not reuse them.
        sets.iter_mut().for_each(Set::discard);
        keep.iter_mut().for_each(PooledBuffer::discard);
    }
    res.map(|()| keep)
}

/// Whether a launch moves host data (so that, streamed, its chunks overlap transfers).
fn has_host(inputs: &[Input], outputs: &[Output]) -> bool {
    inputs
        .iter()
        .any(|i| matches!(i.source, Source::Host { .. }))
        || outputs.iter().any(|o| matches!(o.sink, Sink::Host { .. }))
}

/// The rows per chunk of a launch over these streams (the one rule, [`chunk_rows`], on the
/// widest row any stream holds).
fn chunk_of(
    ctx: &Context,
    rows: usize,
    cols: usize,
    inputs: &[Input],
    outputs: &[Output],
    streamed: bool,
) -> Result<usize> {
    let widest = inputs
        .iter()
        .map(|i| match i.source {
            Source::Host { row_bytes, .. } => row_bytes,
            Source::Device(m) => m.row_stride().max(m.dim().1) * m.elem(),
        })
        .chain(outputs.iter().map(|o| match &o.sink {
            Sink::Host { row_bytes, .. } => *row_bytes,
            Sink::Scratch(extent, _) => extent.per_row(),
            Sink::Device(m) => m.row_stride().max(m.dim().1) * m.elem(),
            Sink::DeviceChunks(_) => 0,
        }))
        .max()
        .unwrap_or(4);
    chunk_rows(
        rows,
        cols,
        widest as u64,
        ctx.max_binding(),
        ctx.limits.min_storage_buffer_offset_alignment as u64,
        ctx.limits.max_compute_workgroups_per_dimension,
        streamed,
    )
}

/// A zeroed f32 matrix with a row for each chunk of a launch in `mode` over `rows` rows of
/// `inputs` with `outputs` besides it: the [`Sink::DeviceChunks`] of that launch. Each row
/// holds `floats` floats and starts at a bindable offset.
pub(crate) fn chunk_outputs(
    ctx: &Context,
    (rows, cols): (usize, usize),
    inputs: &[Input],
    outputs: &[Output],
    mode: &Mode,
    floats: usize,
) -> Result<GpuMatrix> {
    let streamed = matches!(mode, Mode::Stream(_)) && has_host(inputs, outputs);
    let chunk = chunk_of(ctx, rows, cols, inputs, outputs, streamed)?;
    let align = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let stride = floats.next_multiple_of(align);
    let m = GpuMatrix::new_typed(
        ctx,
        rows.div_ceil(chunk).max(1),
        stride,
        crate::element::DType::F32,
    )?;
    m.fill(ctx, 0.0)?;
    Ok(m)
}

/// A device matrix whose rows a launch may copy (packed inputs, and outputs its kernel
/// cannot write where they lie) needs the copy's usage on its buffer: checked here, before
/// anything is recorded, rather than failing inside an encoder.
fn check_usages(inputs: &[Input], outputs: &[Output]) -> Result<()> {
    let need = |m: &GpuMatrix, usage: U, why: &str| {
        if m.buffer().usage().contains(usage) {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "{why}: the device matrix's buffer needs {usage:?} usage, it has {:?}",
                m.buffer().usage()
            )))
        }
    };
    for i in inputs {
        if let (Source::Device(m), Layout::Packed) = (&i.source, i.layout) {
            need(
                m,
                U::COPY_SRC,
                "this op reads its input rows packed, through a copy",
            )?;
        }
    }
    for o in outputs {
        if let Sink::Device(m) = &o.sink {
            let strided = m.row_stride() != m.dim().1 && m.dim().0 > 1;
            if o.layout == Layout::Packed || (o.layout == Layout::Based && strided) {
                need(
                    m,
                    U::COPY_DST,
                    "this op writes its output rows packed, through a copy",
                )?;
            }
        }
    }
    Ok(())
}

impl Plan<'_, '_> {
    /// The one loop over chunks: each chunk recorded into the caller's encoder, or streamed
    /// (uploaded, submitted, read back) on two buffer sets.
    async fn each_chunk(
        &mut self,
        job: &dyn Job,
        rows: usize,
        mut mode: Mode<'_>,
        sets: &mut [Set; 2],
        keep: &mut Vec<PooledBuffer>,
    ) -> Result<()> {
        let (mut r0, mut k) = (0, 0);
        while r0 < rows {
            let n = self.chunk.min(rows - r0);
            match &mut mode {
                Mode::Record(encoder) => keep.extend(self.record_chunk(job, encoder, r0, n)?),
                Mode::Stream(wait) => self.stream_chunk(job, sets, k, r0, n, *wait).await?,
            }
            r0 += n;
            k += 1;
        }
        match mode {
            Mode::Stream(wait) => self.drain(sets, wait).await,
            Mode::Record(_) => Ok(()),
        }
    }
}
