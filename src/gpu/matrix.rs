//! Device-resident matrices: data that stays on the GPU between ops, and an application's own
//! buffers used in place (offset, shape and row stride checked against the buffer).

use super::ce::{ce_params, record_ce, CeBufs, ROW_STATS_BYTES};
use super::encode::{Scopes, Slice};
use super::plan::even_chunks;
use super::pool::PooledBuffer;
use super::readback::{read_f32_parts, Wait};
use super::rows::record_rows;
use super::Gpu;
use crate::cross_entropy::fast::{fast_inputs, row_losses, FastInputs, RowStats};
use crate::cross_entropy::{prepare, reduce, CrossEntropyOptions, Loss, Prepared, Targets};
use crate::error::{Error, Result};
use crate::ops::{check_temperature, RowOp};
use ndarray::{Array1, Array2, ArrayView2};
use wgpu::BufferUsages as U;

/// A `[rows, cols]` f32 matrix in a wgpu buffer: row `r` starts `offset + 4·r·row_stride`
/// bytes in. Cheap to clone (the buffer handle is shared).
///
/// Ops on device matrices leave their results on the device, so a chain of ops never touches
/// the host until [`Gpu::download`]:
///
/// ```
/// # let Ok(gpu) = smoothmax::Gpu::new() else { return Ok(()) };
/// use smoothmax::RowOp;
/// let x = gpu.upload(ndarray::array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]].view())?;
/// let logp = gpu.row_op_on_device(RowOp::LogSoftmax, &x, 1.0)?; // on the device
/// let lse = gpu.row_op_on_device(RowOp::LogSumExp, &logp, 1.0)?; // still on the device
/// let host = gpu.download(&lse)?;                                 // [2, 1], both ≈ 0
/// assert!(host.iter().all(|v| v.abs() < 1e-6));
/// # Ok::<(), smoothmax::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GpuMatrix {
    buffer: wgpu::Buffer,
    offset: u64,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl GpuMatrix {
    /// Wraps part of an existing buffer without copying. Checks: `offset` is a multiple of 4,
    /// `row_stride ≥ cols`, the buffer has `STORAGE` usage and holds the last row.
    /// (Downloading also needs `COPY_SRC`.)
    pub fn from_buffer(
        buffer: wgpu::Buffer,
        offset: u64,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if !offset.is_multiple_of(4) {
            return bad(format!("offset {offset} is not a multiple of 4 bytes"));
        }
        if rows > 1 && row_stride < cols {
            return bad(format!(
                "row stride {row_stride} is less than the {cols} columns"
            ));
        }
        if !buffer.usage().contains(U::STORAGE) {
            return bad(format!(
                "the buffer's usage {:?} lacks STORAGE",
                buffer.usage()
            ));
        }
        let m = GpuMatrix {
            buffer,
            offset,
            rows,
            cols,
            row_stride,
        };
        if m.end() > m.buffer.size() {
            return bad(format!(
                "[{rows}, {cols}] with row stride {row_stride} at offset {offset} needs {} bytes; the buffer has {}",
                m.end(),
                m.buffer.size()
            ));
        }
        Ok(m)
    }

    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Elements between the starts of consecutive rows.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// Byte offset of the first element.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// One past the last byte of the last row.
    fn end(&self) -> u64 {
        if self.rows == 0 || self.cols == 0 {
            self.offset
        } else {
            self.offset + (((self.rows - 1) * self.row_stride + self.cols) * 4) as u64
        }
    }

    /// Rows `[r0, r0 + n)` as a kernel binding.
    fn rows_slice(&self, r0: usize, n: usize, align: u64) -> Slice<'_> {
        let start = self.offset + (r0 * self.row_stride * 4) as u64;
        Slice::new(
            &self.buffer,
            start,
            (((n - 1) * self.row_stride + self.cols) * 4) as u64,
            align,
        )
    }
}

/// Scratch buffers of work recorded into an application's encoder: keep it until the encoder
/// has been submitted (see [`Gpu::record_row_op`]).
#[must_use = "keep this until the encoder is submitted"]
pub struct Recorded {
    _keep: Vec<PooledBuffer>,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("scratch_buffers", &self._keep.len())
            .finish()
    }
}

/// Cross-entropy recorded into an application's encoder: per-row statistics and the gradient
/// on the device; [`RecordedCrossEntropy::loss`] reads back the statistics (`B` rows of 24
/// bytes, after the encoder was submitted) and finishes and reduces the loss in f64.
#[must_use = "keep this until the encoder is submitted, then read the loss"]
pub struct RecordedCrossEntropy {
    /// `[B, 6]`: each row's statistics (see `cross_entropy::fast::RowStats`).
    per_row: GpuMatrix,
    /// The gradient `[B, C]`, when asked for.
    pub grad: Option<GpuMatrix>,
    prepared: crate::cross_entropy::Prepared,
    fast: FastInputs,
    reduction: crate::cross_entropy::Reduction,
    z_loss: f32,
    _keep: Vec<PooledBuffer>,
}

impl std::fmt::Debug for RecordedCrossEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedCrossEntropy")
            .field("per_row", &self.per_row)
            .field("grad", &self.grad)
            .finish()
    }
}

impl RecordedCrossEntropy {
    /// Downloads the per-row values (call after submitting the encoder) and returns the
    /// reduced loss and the per-row lse.
    pub fn loss(&self, gpu: &Gpu) -> Result<(Loss, Array1<f32>)> {
        pollster::block_on(self.loss_with(gpu, Wait::Inline))
    }

    /// [`RecordedCrossEntropy::loss`], async: awaits the readback without blocking the
    /// executor thread.
    pub async fn loss_async(&self, gpu: &Gpu) -> Result<(Loss, Array1<f32>)> {
        self.loss_with(gpu, Wait::Thread).await
    }

    async fn loss_with(&self, gpu: &Gpu, wait: Wait) -> Result<(Loss, Array1<f32>)> {
        let rows = gpu.download_with(&self.per_row, wait).await?;
        let words = rows
            .as_slice()
            .ok_or_else(|| Error::InvalidInput("statistics not contiguous".into()))?;
        let stats: &[RowStats] = bytemuck::cast_slice(words);
        let (ce, lse) = row_losses(&self.prepared, &self.fast, stats);
        let o = CrossEntropyOptions {
            reduction: self.reduction,
            z_loss: self.z_loss,
            ..Default::default()
        };
        Ok((reduce(&self.prepared, &o, &ce, &lse), Array1::from_vec(lse)))
    }
}

impl RecordedCrossEntropy {
    /// The submitted call's result: the read-back `(loss, lse)` and the device gradient.
    fn device_output(&self, (loss, lse): (Loss, Array1<f32>)) -> DeviceCrossEntropy {
        DeviceCrossEntropy {
            loss,
            lse,
            grad: self.grad.clone(),
        }
    }
}

/// Cross-entropy with the gradient left on the device.
#[derive(Clone, Debug)]
pub struct DeviceCrossEntropy {
    /// The loss (read back: it is `B` floats at most).
    pub loss: Loss,
    /// Per-row logsumexp of the logits used.
    pub lse: Array1<f32>,
    /// The gradient, `[B, C]` contiguous, when asked for.
    pub grad: Option<GpuMatrix>,
}

impl Gpu {
    /// A new contiguous device matrix. Its allocation is error-scoped: a buffer the device
    /// refuses (too large, out of memory) is an error here, never wgpu's panicking default
    /// handler (which an application's device may still have).
    fn new_matrix(&self, rows: usize, cols: usize) -> Result<GpuMatrix> {
        let bytes = ((rows * cols * 4) as u64).max(16).next_multiple_of(16);
        let scopes = Scopes::push(&self.ctx.device);
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smoothmax/matrix"),
            size: bytes,
            usage: U::STORAGE | U::COPY_SRC | U::COPY_DST,
            mapped_at_creation: false,
        });
        scopes.pop()?;
        Ok(GpuMatrix {
            buffer,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
        })
    }

    /// Copies a host matrix into a new device buffer.
    pub fn upload(&self, x: ArrayView2<f32>) -> Result<GpuMatrix> {
        self.ctx.check_alive()?;
        let (rows, cols) = x.dim();
        let x = x.as_standard_layout();
        let data = x
            .as_slice()
            .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
        let scopes = Scopes::push(&self.ctx.device);
        let m = self.new_matrix(rows, cols)?;
        if !data.is_empty() {
            self.ctx
                .queue
                .write_buffer(&m.buffer, 0, bytemuck::cast_slice(data));
        }
        scopes.pop()?;
        Ok(m)
    }

    /// Copies a device matrix back to the host (its buffer needs `COPY_SRC`).
    pub fn download(&self, m: &GpuMatrix) -> Result<Array2<f32>> {
        pollster::block_on(self.download_with(m, Wait::Inline))
    }

    /// [`Gpu::download`], async: awaits the readback without blocking the executor thread.
    pub async fn download_async(&self, m: &GpuMatrix) -> Result<Array2<f32>> {
        self.download_with(m, Wait::Thread).await
    }

    async fn download_with(&self, m: &GpuMatrix, wait: Wait) -> Result<Array2<f32>> {
        self.ctx.check_alive()?;
        if m.rows == 0 || m.cols == 0 {
            return Ok(Array2::zeros((m.rows, m.cols)));
        }
        if !m.buffer.usage().contains(U::COPY_SRC) {
            return Err(Error::InvalidInput(
                "downloading needs a buffer with COPY_SRC usage".into(),
            ));
        }
        let span = m.end() - m.offset;
        let dev = &self.ctx.device;
        let scopes = Scopes::push(dev);
        let staging = self.ctx.pool.acquire(
            dev,
            U::MAP_READ | U::COPY_DST,
            span,
            self.ctx.max_binding().max(span),
        );
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("smoothmax/download"),
        });
        enc.copy_buffer_to_buffer(&m.buffer, m.offset, staging.buffer(), 0, span);
        self.ctx.queue.submit([enc.finish()]);
        scopes.pop()?;
        let mut raw = vec![0.0f32; (span / 4) as usize];
        read_f32_parts(&self.ctx, staging.buffer(), &mut [&mut raw], wait).await?;
        Ok(Array2::from_shape_fn((m.rows, m.cols), |(r, c)| {
            raw[r * m.row_stride + c]
        }))
    }

    /// Rows per chunk for a device matrix: each chunk's input and output fit one binding
    /// (with room for the alignment slack).
    fn device_chunk(&self, m: &GpuMatrix, out_cols: usize) -> Result<usize> {
        let room = self.ctx.max_binding().saturating_sub(512);
        let row = (m.row_stride.max(m.cols).max(out_cols) * 4) as u64;
        if (m.cols * 4) as u64 > room {
            return Err(Error::ShapeTooLarge {
                rows: m.rows,
                cols: m.cols,
                what: "one row is larger than the device's largest storage binding",
                limit: self.ctx.max_binding(),
            });
        }
        Ok(even_chunks(m.rows, (room / row.max(4)) as usize))
    }

    /// Records a row op over device matrices into `encoder` (the chunk loop).
    fn record_rows_device(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        op: RowOp,
        x: &GpuMatrix,
        temperature: f32,
        out: &GpuMatrix,
    ) -> Result<Vec<PooledBuffer>> {
        let (rows, cols) = x.dim();
        let out_cols = if op == RowOp::LogSumExp { 1 } else { cols };
        let align = self.ctx.limits.min_storage_buffer_offset_alignment as u64;
        let chunk = self.device_chunk(x, out_cols)?;
        let mut keep = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk.min(rows - r0);
            let xs = x.rows_slice(r0, n, align);
            let start = out.offset + (r0 * out_cols * 4) as u64;
            let ys = Slice::new(&out.buffer, start, (n * out_cols * 4) as u64, align);
            keep.extend(record_rows(
                &self.ctx,
                encoder,
                op,
                temperature,
                xs,
                x.row_stride,
                ys,
                n,
                cols,
            )?);
            r0 += n;
        }
        Ok(keep)
    }

    /// Runs a row op on a device matrix; the result stays on the device (`[B, 1]` for
    /// logsumexp, `[B, C]` otherwise). The work is submitted, not waited for: later device
    /// work and downloads see the result in queue order.
    pub fn row_op_on_device(
        &self,
        op: RowOp,
        x: &GpuMatrix,
        temperature: f32,
    ) -> Result<GpuMatrix> {
        check_temperature(temperature)?;
        self.ctx.check_alive()?;
        let (rows, cols) = x.dim();
        let out = self.new_matrix(rows, if op == RowOp::LogSumExp { 1 } else { cols })?;
        if rows == 0 {
            return Ok(out);
        }
        if cols == 0 {
            if op == RowOp::LogSumExp {
                let v = vec![f32::NEG_INFINITY; rows];
                self.ctx
                    .queue
                    .write_buffer(&out.buffer, 0, bytemuck::cast_slice(&v));
            }
            return Ok(out);
        }
        let dev = &self.ctx.device;
        let scopes = Scopes::push(dev);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("smoothmax/rows-device"),
        });
        let keep = self.record_rows_device(&mut enc, op, x, temperature, &out);
        self.ctx.queue.submit([enc.finish()]);
        let popped = scopes.pop();
        drop(keep?); // queue order protects pooled buffers once submitted
        popped?;
        Ok(out)
    }

    /// Records a row op into the application's `encoder` without submitting: `out` must be a
    /// contiguous `[B, 1]` (logsumexp) or `[B, C]` device matrix. Keep the returned
    /// [`Recorded`] until `encoder` has been submitted (it holds the engine's scratch buffers;
    /// dropping it earlier lets another call reuse them before this work runs).
    pub fn record_row_op(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        op: RowOp,
        x: &GpuMatrix,
        temperature: f32,
        out: &GpuMatrix,
    ) -> Result<Recorded> {
        check_temperature(temperature)?;
        self.ctx.check_alive()?;
        let (rows, cols) = x.dim();
        let want = (rows, if op == RowOp::LogSumExp { 1 } else { cols });
        if out.dim() != want || (out.rows > 1 && out.row_stride != out.cols) {
            return Err(Error::InvalidInput(format!(
                "output must be a contiguous [{}, {}] matrix, got [{}, {}] with row stride {}",
                want.0, want.1, out.rows, out.cols, out.row_stride
            )));
        }
        if rows == 0 || cols == 0 {
            return Ok(Recorded { _keep: Vec::new() });
        }
        let scopes = Scopes::push(&self.ctx.device);
        let keep = self.record_rows_device(encoder, op, x, temperature, out);
        scopes.pop()?;
        Ok(Recorded { _keep: keep? })
    }

    /// Records cross-entropy of device-resident logits into the application's `encoder`
    /// without submitting. Targets, weights and options come from the host (they are small)
    /// and are checked first. The per-row losses and the gradient are written on the device;
    /// after submitting, [`RecordedCrossEntropy::loss`] reads back only the per-row values.
    pub fn record_cross_entropy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        logits: &GpuMatrix,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<RecordedCrossEntropy> {
        self.record_ce_device(encoder, logits, targets, options, false)
    }

    /// [`Gpu::record_cross_entropy`] with the gradient written over the logits (Liger-Kernel's
    /// in-place trick: no second `[B, C]` buffer). Needs `options.gradient`; afterwards
    /// `logits` holds the gradient, and the returned `grad` is that same matrix.
    pub fn record_cross_entropy_in_place(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        logits: &GpuMatrix,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<RecordedCrossEntropy> {
        if !options.gradient {
            return Err(Error::InvalidInput(
                "an in-place cross-entropy writes the gradient: set options.gradient".into(),
            ));
        }
        self.record_ce_device(encoder, logits, targets, options, true)
    }

    /// Cross-entropy with the gradient written over the device-resident logits, submitted at
    /// once (see [`Gpu::record_cross_entropy_in_place`]).
    pub fn cross_entropy_in_place(
        &self,
        logits: &GpuMatrix,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<DeviceCrossEntropy> {
        let r = self.submit_ce(logits, targets, options, true)?;
        Ok(r.device_output(r.loss(self)?))
    }

    /// [`Gpu::cross_entropy_on_device`], async: the loss readback is awaited without blocking
    /// the executor thread.
    pub async fn cross_entropy_on_device_async(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        options: &CrossEntropyOptions<'_>,
    ) -> Result<DeviceCrossEntropy> {
        let r = self.submit_ce(logits, targets, options, false)?;
        Ok(r.device_output(r.loss_async(self).await?))
    }

    /// [`Gpu::cross_entropy_in_place`], async.
    pub async fn cross_entropy_in_place_async(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        options: &CrossEntropyOptions<'_>,
    ) -> Result<DeviceCrossEntropy> {
        let r = self.submit_ce(logits, targets, options, true)?;
        Ok(r.device_output(r.loss_async(self).await?))
    }

    /// Records cross-entropy into an encoder of the engine's own and submits it.
    fn submit_ce(
        &self,
        logits: &GpuMatrix,
        targets: Targets<'_>,
        options: &CrossEntropyOptions<'_>,
        in_place: bool,
    ) -> Result<RecordedCrossEntropy> {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("smoothmax/ce-device"),
            });
        let r = if in_place {
            self.record_cross_entropy_in_place(&mut enc, logits, targets, options)?
        } else {
            self.record_cross_entropy(&mut enc, logits, targets, options)?
        };
        self.ctx.queue.submit([enc.finish()]);
        Ok(r)
    }

    fn record_ce_device(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        logits: &GpuMatrix,
        targets: Targets,
        options: &CrossEntropyOptions,
        in_place: bool,
    ) -> Result<RecordedCrossEntropy> {
        let (rows, cols) = logits.dim();
        let p = prepare((rows, cols), &targets, options)?;
        let fi = fast_inputs(&p, options);
        self.ctx.check_alive()?;
        let stat_words = ROW_STATS_BYTES / 4;
        let per_row = self.new_matrix(rows, stat_words)?;
        let grad = if in_place {
            Some(logits.clone())
        } else {
            options
                .gradient
                .then(|| self.new_matrix(rows, cols))
                .transpose()?
        };
        let mut keep = Vec::new();
        if rows > 0 && cols == 0 {
            // No classes: zeroed statistics (`row_losses` gives such rows loss 0, lse −inf).
            let v = vec![RowStats::default(); rows];
            self.ctx
                .queue
                .write_buffer(&per_row.buffer, 0, bytemuck::cast_slice(&v));
        }
        if rows > 0 && cols > 0 {
            let ctx = &self.ctx;
            let dev = &ctx.device;
            let cap = ctx.max_binding();
            let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
            let chunk = self.device_chunk(logits, cols)?;
            let params = ce_params(&p, &fi, options);
            let qs = fi.probs_slice()?;
            let scopes = Scopes::push(dev);
            let recorded = (|| -> Result<()> {
                let cp = ctx.pool.acquire(dev, U::UNIFORM | U::COPY_DST, 32, cap);
                ctx.queue
                    .write_buffer(cp.buffer(), 0, bytemuck::bytes_of(&params));
                let wb = fi.weight.as_ref().map(|w| {
                    let b = ctx
                        .pool
                        .acquire(dev, U::STORAGE | U::COPY_DST, (cols * 4) as u64, cap);
                    ctx.queue
                        .write_buffer(b.buffer(), 0, bytemuck::cast_slice(w));
                    b
                });
                let mut r0 = 0;
                while r0 < rows {
                    let n = chunk.min(rows - r0);
                    let coef = &fi.coef[r0..r0 + n];
                    let ib = ctx.pool.acquire(
                        dev,
                        U::STORAGE | U::COPY_DST,
                        std::mem::size_of_val(coef) as u64,
                        cap,
                    );
                    ctx.queue
                        .write_buffer(ib.buffer(), 0, bytemuck::cast_slice(coef));
                    let out_bytes = (n * ROW_STATS_BYTES) as u64;
                    let ob = ctx
                        .pool
                        .acquire(dev, U::STORAGE | U::COPY_SRC, out_bytes, cap);
                    let qb = qs.map(|q| {
                        let b = ctx.pool.acquire(
                            dev,
                            U::STORAGE | U::COPY_DST,
                            (n * cols * 4) as u64,
                            cap,
                        );
                        ctx.queue.write_buffer(
                            b.buffer(),
                            0,
                            bytemuck::cast_slice(&q[r0 * cols..(r0 + n) * cols]),
                        );
                        b
                    });
                    let b = CeBufs {
                        x: logits.rows_slice(r0, n, align),
                        x_stride: logits.row_stride,
                        grad: grad.as_ref().filter(|_| !in_place).map(|g| {
                            Slice::new(
                                &g.buffer,
                                (r0 * cols * 4) as u64,
                                (n * cols * 4) as u64,
                                align,
                            )
                        }),
                        row_out: ob.buffer(),
                        row_in: ib.buffer(),
                        ce_params: cp.buffer(),
                        weight: wb.as_ref().map(|w| w.buffer()),
                        probs: qb.as_ref().map(|q| q.buffer()),
                        in_place,
                    };
                    keep.extend(record_ce(ctx, encoder, &b, n, cols, params.flags)?);
                    encoder.copy_buffer_to_buffer(
                        ob.buffer(),
                        0,
                        &per_row.buffer,
                        (r0 * ROW_STATS_BYTES) as u64,
                        out_bytes,
                    );
                    keep.extend([ib, ob]);
                    keep.extend(qb);
                    r0 += n;
                }
                keep.push(cp);
                keep.extend(wb);
                Ok(())
            })();
            let popped = scopes.pop();
            recorded?;
            popped?;
        }
        Ok(RecordedCrossEntropy {
            per_row,
            grad,
            // Only the class list and the denominators are needed to reduce; not a copy of
            // the probability targets.
            prepared: Prepared { probs: None, ..p },
            fast: fi.without_probs(),
            reduction: options.reduction,
            z_loss: options.z_loss,
            _keep: keep,
        })
    }

    /// Cross-entropy of device-resident logits: [`Gpu::record_cross_entropy`] into an encoder
    /// of its own, submitted at once. The gradient, when asked for, stays on the device; the
    /// loss and lse are read back.
    pub fn cross_entropy_on_device(
        &self,
        logits: &GpuMatrix,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<DeviceCrossEntropy> {
        let r = self.submit_ce(logits, targets, options, false)?;
        Ok(r.device_output(r.loss(self)?))
    }
}
