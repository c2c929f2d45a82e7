//! Device-resident matrices: data that stays on the GPU between ops, and an application's own
//! buffers used in place (offset, shape and row stride checked against the buffer).

use super::context::Context;
use super::encode::Slice;
use super::readback::{read_mapped, Wait};
use super::scopes::Scopes;
use super::Gpu;
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use wgpu::BufferUsages as U;

/// A `[rows, cols]` f32 matrix in a wgpu buffer: row `r` starts `offset + 4·r·row_stride`
/// bytes in. Cheap to clone (the buffer handle is shared).
///
/// Every op reads device matrices where they lie, and with
/// [`on_device`](crate::gpu::Call::on_device) leaves its results on the device, so a chain of
/// ops never touches the host until [`Gpu::download`] (see [`crate::gpu::Call`]).
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
        // With one row the stride is never used: normalized, so that no size computed from
        // it can overflow.
        let row_stride = if rows <= 1 { cols } else { row_stride };
        let span = (rows.saturating_sub(1) as u64)
            .checked_mul(row_stride as u64)
            .and_then(|e| e.checked_add(cols as u64))
            .and_then(|e| e.checked_mul(4))
            .and_then(|b| b.checked_add(offset));
        if span.is_none() {
            return bad(format!(
                "[{rows}, {cols}] with row stride {row_stride} at offset {offset} is larger than \
                 any buffer"
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

    /// A new contiguous device matrix. Its allocation is error-scoped: a buffer the device
    /// refuses (too large, out of memory) is an error here, never wgpu's panicking default
    /// handler (which an application's device may still have).
    pub(crate) fn new(ctx: &Context, rows: usize, cols: usize) -> Result<Self> {
        let bytes = ((rows * cols * 4) as u64).max(16).next_multiple_of(16);
        let scopes = Scopes::push(&ctx.device);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
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

    /// One past the last byte of the last row.
    fn end(&self) -> u64 {
        if self.rows == 0 || self.cols == 0 {
            self.offset
        } else {
            self.offset + (((self.rows - 1) * self.row_stride + self.cols) * 4) as u64
        }
    }

    /// Sets every element to `v` (queued: it reaches the device before the next submission),
    /// row by row where the rows are not contiguous.
    pub(crate) fn fill(&self, ctx: &Context, v: f32) -> Result<()> {
        let (rows, cols) = self.dim();
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let scopes = Scopes::push(&ctx.device);
        if self.row_stride == cols || rows == 1 {
            let data = vec![v; rows * cols];
            ctx.queue
                .write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(&data));
        } else {
            let row = vec![v; cols];
            for r in 0..rows {
                ctx.queue.write_buffer(
                    &self.buffer,
                    self.row_offset(r),
                    bytemuck::cast_slice(&row),
                );
            }
        }
        scopes.pop()
    }

    /// Byte offset of row `r`.
    pub(crate) fn row_offset(&self, r: usize) -> u64 {
        self.offset + (r * self.row_stride * 4) as u64
    }

    /// Rows `[r0, r0 + n)` as a kernel binding.
    pub(crate) fn rows_slice(&self, r0: usize, n: usize, align: u64) -> Slice<'_> {
        let start = self.offset + (r0 * self.row_stride * 4) as u64;
        Slice::new(
            &self.buffer,
            start,
            (((n - 1) * self.row_stride + self.cols) * 4) as u64,
            align,
        )
    }
}

impl Gpu {
    /// Copies a host matrix into a new device buffer.
    pub fn upload(&self, x: ArrayView2<f32>) -> Result<GpuMatrix> {
        self.ctx.check_alive()?;
        let (rows, cols) = x.dim();
        let x = x.as_standard_layout();
        let data = x
            .as_slice()
            .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
        let scopes = Scopes::push(&self.ctx.device);
        let m = GpuMatrix::new(&self.ctx, rows, cols)?;
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

    pub(crate) async fn download_with(&self, m: &GpuMatrix, wait: Wait) -> Result<Array2<f32>> {
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
        read_mapped(&self.ctx, staging.buffer(), span, None, wait, |v| {
            bytemuck::cast_slice_mut::<f32, u8>(&mut raw).copy_from_slice(v)
        })
        .await?;
        Ok(Array2::from_shape_fn((m.rows, m.cols), |(r, c)| {
            raw[r * m.row_stride + c]
        }))
    }
}
