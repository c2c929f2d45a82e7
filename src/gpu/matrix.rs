//! Device-resident matrices: data that stays on the GPU between ops, and an application's own
//! buffers used in place (offset, shape and row stride checked against the buffer).

use super::ce::{ce_params, record_ce, row_inputs, CeBufs};
use super::encode::{Scopes, Slice};
use super::readback::{read_f32, read_f32_parts};
use super::rows::record_rows;
use super::Gpu;
use crate::cross_entropy::{prepare, reduce, CrossEntropyOptions, Loss, Targets};
use crate::error::{Error, Result};
use crate::ops::{check_temperature, RowOp};
use ndarray::{Array1, Array2, ArrayView2};
use wgpu::BufferUsages as U;

/// A `[rows, cols]` f32 matrix in a wgpu buffer: row `r` starts `offset + 4·r·row_stride`
/// bytes in. Cheap to clone (the buffer handle is shared).
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
        if offset % 4 != 0 {
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
    fn new_matrix(&self, rows: usize, cols: usize) -> GpuMatrix {
        let bytes = ((rows * cols * 4) as u64).max(16).next_multiple_of(16);
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smoothmax/matrix"),
            size: bytes,
            usage: U::STORAGE | U::COPY_SRC | U::COPY_DST,
            mapped_at_creation: false,
        });
        GpuMatrix {
            buffer,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
        }
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
        let m = self.new_matrix(rows, cols);
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
        read_f32(&self.ctx, staging.buffer(), &mut raw)?;
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
        Ok(((room / row.max(4)) as usize).clamp(1, m.rows.max(1)))
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
        let out_cols = if op == RowOp::LogSumExp { 1 } else { cols };
        let out = self.new_matrix(rows, out_cols);
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
        let align = self.ctx.limits.min_storage_buffer_offset_alignment as u64;
        let chunk = self.device_chunk(x, out_cols)?;
        let dev = &self.ctx.device;
        let scopes = Scopes::push(dev);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("smoothmax/rows-device"),
        });
        let mut keep = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk.min(rows - r0);
            let xs = x.rows_slice(r0, n, align);
            let ys = Slice::new(
                &out.buffer,
                (r0 * out_cols * 4) as u64,
                (n * out_cols * 4) as u64,
                align,
            );
            keep.extend(record_rows(
                &self.ctx,
                &mut enc,
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
        self.ctx.queue.submit([enc.finish()]);
        scopes.pop()?;
        drop(keep); // queue order protects pooled buffers from here on
        Ok(out)
    }

    /// Cross-entropy of device-resident logits; targets, weights and options come from the
    /// host (they are small). The gradient, when asked for, stays on the device; the loss
    /// and lse are read back.
    pub fn cross_entropy_on_device(
        &self,
        logits: &GpuMatrix,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<DeviceCrossEntropy> {
        let (rows, cols) = logits.dim();
        let p = prepare((rows, cols), &targets, options)?;
        self.ctx.check_alive()?;
        let grad = options.gradient.then(|| self.new_matrix(rows, cols));
        let mut ce = vec![0.0f32; rows];
        let mut lse = vec![f32::NEG_INFINITY; rows];
        if rows > 0 && cols > 0 {
            let ctx = &self.ctx;
            let dev = &ctx.device;
            let cap = ctx.max_binding();
            let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
            let chunk = self.device_chunk(logits, cols)?;
            let params = ce_params(&p, options);
            let row_in = row_inputs(&p);
            let qs = p.probs.as_ref().and_then(|q| q.as_slice());
            let scopes = Scopes::push(dev);
            let cp = ctx.pool.acquire(dev, U::UNIFORM | U::COPY_DST, 32, cap);
            ctx.queue
                .write_buffer(cp.buffer(), 0, bytemuck::bytes_of(&params));
            let wb = match &options.weight {
                Some(w) => {
                    let b = ctx
                        .pool
                        .acquire(dev, U::STORAGE | U::COPY_DST, (cols * 4) as u64, cap);
                    ctx.queue
                        .write_buffer(b.buffer(), 0, bytemuck::cast_slice(&w.to_vec()));
                    Some(b)
                }
                None => None,
            };
            let staging = ctx.pool.acquire(
                dev,
                U::MAP_READ | U::COPY_DST,
                (rows * 8) as u64,
                cap.max((rows * 8) as u64),
            );
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("smoothmax/ce-device"),
            });
            let mut keep = Vec::new();
            let mut r0 = 0;
            while r0 < rows {
                let n = chunk.min(rows - r0);
                let ib = ctx
                    .pool
                    .acquire(dev, U::STORAGE | U::COPY_DST, (n * 8) as u64, cap);
                ctx.queue.write_buffer(
                    ib.buffer(),
                    0,
                    bytemuck::cast_slice(&row_in[2 * r0..2 * (r0 + n)]),
                );
                let ob = ctx
                    .pool
                    .acquire(dev, U::STORAGE | U::COPY_SRC, (n * 8) as u64, cap);
                let qb = qs.map(|q| {
                    let b =
                        ctx.pool
                            .acquire(dev, U::STORAGE | U::COPY_DST, (n * cols * 4) as u64, cap);
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
                    grad: grad.as_ref().map(|g| {
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
                };
                keep.extend(record_ce(ctx, &mut enc, &b, n, cols, params.flags)?);
                enc.copy_buffer_to_buffer(
                    ob.buffer(),
                    0,
                    staging.buffer(),
                    (r0 * 8) as u64,
                    (n * 8) as u64,
                );
                keep.extend([ib, ob]);
                keep.extend(qb);
                r0 += n;
            }
            ctx.queue.submit([enc.finish()]);
            scopes.pop()?;
            let mut row_out = vec![0.0f32; 2 * rows];
            read_f32_parts(ctx, staging.buffer(), &mut [&mut row_out])?;
            for i in 0..rows {
                ce[i] = row_out[2 * i];
                lse[i] = row_out[2 * i + 1];
            }
            drop(keep);
        }
        Ok(DeviceCrossEntropy {
            loss: reduce(&p, options, &ce, &lse),
            lse: Array1::from_vec(lse),
            grad,
        })
    }
}
