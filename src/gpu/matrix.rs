//! Device-resident matrices: data that stays on the GPU between ops, and an application's own
//! buffers used in place (offset, shape and row stride checked against the buffer).

use super::context::Context;
use super::encode::Slice;
use super::readback::{read_mapped, Wait};
use super::scopes::Scopes;
use super::Gpu;
use crate::element::{DType, Element};
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use wgpu::BufferUsages as U;

/// A `[rows, cols]` matrix of f32, f16 or bf16 elements in a wgpu buffer: row `r` starts
/// `offset + size·r·row_stride` bytes in (`size` = 4 or 2 bytes per element; a half row may
/// start in the middle of a 4-byte word). Cheap to clone (the buffer handle is shared).
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
    dtype: DType,
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
        Self::from_buffer_typed(buffer, offset, rows, cols, row_stride, DType::F32)
    }

    /// [`GpuMatrix::from_buffer`] for elements of type `dtype`: `offset` a multiple of the
    /// element's size (2 bytes for f16 / bf16, whose rows may start mid-word).
    pub fn from_buffer_typed(
        buffer: wgpu::Buffer,
        offset: u64,
        rows: usize,
        cols: usize,
        row_stride: usize,
        dtype: DType,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        let size = dtype.size() as u64;
        if !offset.is_multiple_of(size) {
            return bad(format!(
                "offset {offset} is not a multiple of {size} bytes ({dtype})"
            ));
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
            .and_then(|e| e.checked_mul(size))
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
            dtype,
        };
        // Kernels bind whole words: the word holding the last element must be in the buffer.
        if m.end().next_multiple_of(4) > m.buffer.size() {
            return bad(format!(
                "[{rows}, {cols}] with row stride {row_stride} at offset {offset} needs {} bytes; \
                 the buffer has {}",
                m.end().next_multiple_of(4),
                m.buffer.size()
            ));
        }
        Ok(m)
    }

    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes per element.
    pub(crate) fn elem(&self) -> usize {
        self.dtype.size()
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

    /// A new contiguous device matrix of `dtype` elements. Its allocation is error-scoped: a buffer the device
    /// refuses (too large, out of memory) is an error here, never wgpu's panicking default
    /// handler (which an application's device may still have).
    pub(crate) fn new_typed(ctx: &Context, rows: usize, cols: usize, dtype: DType) -> Result<Self> {
        let bytes = ((rows * cols * dtype.size()) as u64)
            .max(16)
            .next_multiple_of(16);
        let scopes = Scopes::push(&ctx.device);
        ctx.pool.note_created(bytes);
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
            dtype,
        })
    }

    /// [`Gpu::upload`] on an engine's context (queued: the data reach the device before the
    /// next submission).
    pub(crate) fn upload<E: Element>(ctx: &Context, x: ArrayView2<E>) -> Result<GpuMatrix> {
        ctx.check_alive()?;
        let (rows, cols) = x.dim();
        let x = x.as_standard_layout();
        let data = x
            .as_slice()
            .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
        let scopes = Scopes::push(&ctx.device);
        let m = GpuMatrix::new_typed(ctx, rows, cols, E::DTYPE)?;
        let mut bytes: Vec<u8> = bytemuck::cast_slice(data).to_vec();
        // Writes are whole words (the buffer is rounded up to 16 bytes).
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        if !bytes.is_empty() {
            ctx.queue.write_buffer(&m.buffer, 0, &bytes);
        }
        scopes.pop()?;
        Ok(m)
    }

    /// One past the last byte of the last row.
    fn end(&self) -> u64 {
        if self.rows == 0 || self.cols == 0 {
            self.offset
        } else {
            self.offset + (((self.rows - 1) * self.row_stride + self.cols) * self.elem()) as u64
        }
    }

    /// Sets every element to `v` (queued: it reaches the device before the next submission),
    /// row by row where the rows are not contiguous.
    pub(crate) fn fill(&self, ctx: &Context, v: f32) -> Result<()> {
        let (rows, cols) = self.dim();
        if self.dtype != DType::F32 {
            // Only f32 outputs are filled (an empty row's logsumexp, empty statistics).
            return Err(Error::InvalidInput(format!(
                "internal: fill of a {} matrix",
                self.dtype
            )));
        }
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
        self.offset + (r * self.row_stride * self.elem()) as u64
    }

    /// Rows `[r0, r0 + n)` as a kernel binding.
    pub(crate) fn rows_slice(&self, r0: usize, n: usize, align: u64) -> Slice<'_> {
        let start = self.row_offset(r0);
        Slice::new(
            &self.buffer,
            start,
            (((n - 1) * self.row_stride + self.cols) * self.elem()) as u64,
            align,
            self.elem(),
        )
    }
}

impl Gpu {
    /// Copies a host matrix (f32, f16 or bf16) into a new device buffer of that type.
    pub fn upload<E: Element>(&self, x: ArrayView2<E>) -> Result<GpuMatrix> {
        GpuMatrix::upload(&self.ctx, x)
    }

    /// Copies a device matrix back to the host as f32 (f16 / bf16 elements widened exactly;
    /// its buffer needs `COPY_SRC`).
    pub fn download(&self, m: &GpuMatrix) -> Result<Array2<f32>> {
        pollster::block_on(self.download_with(m, Wait::Inline))
    }

    /// [`Gpu::download`], async: awaits the readback without blocking the executor thread.
    pub async fn download_async(&self, m: &GpuMatrix) -> Result<Array2<f32>> {
        self.download_with(m, Wait::Thread).await
    }

    /// Copies a device matrix of element type `E` back to the host as it is (an error when
    /// the matrix holds another type).
    pub fn download_typed<E: Element>(&self, m: &GpuMatrix) -> Result<Array2<E>> {
        if m.dtype != E::DTYPE {
            return Err(Error::InvalidInput(format!(
                "the matrix holds {}, not {}",
                m.dtype,
                E::DTYPE
            )));
        }
        pollster::block_on(self.download_elems(m, Wait::Inline))
    }

    pub(crate) async fn download_with(&self, m: &GpuMatrix, wait: Wait) -> Result<Array2<f32>> {
        Ok(match m.dtype {
            DType::F32 => self.download_elems::<f32>(m, wait).await?,
            DType::F16 => self
                .download_elems::<half::f16>(m, wait)
                .await?
                .mapv(|v| v.to_f32()),
            DType::BF16 => self
                .download_elems::<half::bf16>(m, wait)
                .await?
                .mapv(|v| v.to_f32()),
        })
    }

    /// The matrix's elements, read as `E` (which the caller has matched to its type).
    async fn download_elems<E: Element>(&self, m: &GpuMatrix, wait: Wait) -> Result<Array2<E>> {
        self.ctx.check_alive()?;
        if m.rows == 0 || m.cols == 0 {
            return Ok(Array2::from_elem((m.rows, m.cols), E::default()));
        }
        if !m.buffer.usage().contains(U::COPY_SRC) {
            return Err(Error::InvalidInput(
                "downloading needs a buffer with COPY_SRC usage".into(),
            ));
        }
        // Copies move whole words: from the word holding the first element to the one
        // holding the last (a half matrix may start and end mid-word; `from_buffer_typed`
        // checked that the last word is in the buffer).
        let start = m.offset / 4 * 4;
        let span = (m.end() - start).next_multiple_of(4);
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
        enc.copy_buffer_to_buffer(&m.buffer, start, staging.buffer(), 0, span);
        self.ctx.queue.submit([enc.finish()]);
        scopes.pop()?;
        let skip = (m.offset - start) as usize / m.elem();
        let mut raw = vec![E::default(); span as usize / m.elem()];
        read_mapped(&self.ctx, staging.buffer(), span, None, wait, |v| {
            bytemuck::cast_slice_mut::<E, u8>(&mut raw).copy_from_slice(v)
        })
        .await?;
        Ok(Array2::from_shape_fn((m.rows, m.cols), |(r, c)| {
            raw[skip + r * m.row_stride + c]
        }))
    }
}
