//! What every launch mode shares: the launch's plan, a chunk's buffer set, and binding a
//! chunk's streams (device matrices where they lie, or through a packed copy).

use super::streams::{Bound, Chunk, Extent, Input, Layout, Output, Sink, Source};
use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::Slice;
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use wgpu::BufferUsages as U;

/// Buffers of one of the two chunk sets of a streamed launch.
#[derive(Default)]
pub(super) struct Set {
    /// Per input: (MAP_WRITE staging, storage) for host rows, a packed copy for a device
    /// matrix that cannot be bound where it lies, or nothing.
    pub(super) inputs: Vec<(Option<PooledBuffer>, Option<PooledBuffer>)>,
    /// Per output: the storage it is written to, unless bound in a device matrix.
    pub(super) outputs: Vec<Option<PooledBuffer>>,
    /// Every host output of a chunk, back to back.
    pub(super) readback: Option<PooledBuffer>,
    /// The last submission that used this set.
    pub(super) submitted: Option<wgpu::SubmissionIndex>,
    /// A submitted chunk whose host outputs are not read back yet: (r0, rows).
    pub(super) pending: Option<(usize, usize)>,
}

impl Set {
    pub(super) fn discard(&mut self) {
        for (a, b) in &mut self.inputs {
            a.iter_mut()
                .chain(b.iter_mut())
                .for_each(PooledBuffer::discard);
        }
        self.outputs
            .iter_mut()
            .flatten()
            .for_each(PooledBuffer::discard);
        self.readback.iter_mut().for_each(PooledBuffer::discard);
    }
}

/// A launch's streams and chunking, fixed before the loop.
pub(super) struct Plan<'a, 'b> {
    pub(super) ctx: &'a Context,
    pub(super) inputs: &'a [Input<'b>],
    pub(super) outputs: &'a mut [Output<'b>],
    pub(super) chunk: usize,
    pub(super) align: u64,
}

impl Plan<'_, '_> {
    pub(super) fn acquire(&self, usage: U, bytes: u64) -> PooledBuffer {
        let cap = self.ctx.max_binding();
        self.ctx
            .pool
            .acquire(&self.ctx.device, usage, bytes.max(4), cap)
    }

    /// A packed copy of a device input that its kernel cannot read where it lies.
    pub(super) fn packed_buffer_in(
        &self,
        m: &GpuMatrix,
        layout: Layout,
        n: usize,
    ) -> Option<PooledBuffer> {
        (!binds_in_place(m, layout, 0, self.align, false))
            .then(|| self.acquire(U::STORAGE | U::COPY_DST, (n * m.dim().1 * 4) as u64))
    }

    pub(super) fn packed_copy_in(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        m: &GpuMatrix,
        layout: Layout,
        r0: usize,
        n: usize,
    ) -> Result<Option<PooledBuffer>> {
        if binds_in_place(m, layout, r0, self.align, true) {
            return Ok(None);
        }
        let b = self.acquire(U::STORAGE | U::COPY_DST, (n * m.dim().1 * 4) as u64);
        copy_rows_packed(encoder, m, r0, n, b.buffer());
        Ok(Some(b))
    }

    /// Scratch for a device output its kernel cannot write where it lies (copied there after
    /// the job, see `copy_out`), else nothing.
    pub(super) fn packed_out(
        &self,
        m: &GpuMatrix,
        layout: Layout,
        r0: usize,
        n: usize,
    ) -> Option<PooledBuffer> {
        // A streamed set is reused for every chunk: decide for any chunk start.
        let any_start = r0 == 0 && n == self.chunk;
        (!binds_in_place(m, layout, r0, self.align, !any_start))
            .then(|| self.acquire(U::STORAGE | U::COPY_SRC, (n * m.dim().1 * 4) as u64))
    }

    /// The chunk's streams as bindings.
    pub(super) fn bind<'s>(&'s self, set: &'s Set, r0: usize, n: usize) -> Chunk<'s> {
        let inputs = self
            .inputs
            .iter()
            .zip(&set.inputs)
            .map(|(input, (_, storage))| match (&input.source, storage) {
                (Source::Host { row_bytes, .. }, Some(b)) => Bound {
                    slice: Slice::at0(b.buffer(), (n * row_bytes) as u64),
                    stride: row_bytes / 4,
                },
                (Source::Device(m), Some(b)) => Bound {
                    slice: Slice::at0(b.buffer(), (n * m.dim().1 * 4) as u64),
                    stride: m.dim().1,
                },
                (Source::Device(m), None) => Bound {
                    slice: m.rows_slice(r0, n, self.align),
                    stride: m.row_stride(),
                },
                (Source::Host { .. }, None) => unreachable!("host inputs always get storage"),
            })
            .collect();
        let outputs = self
            .outputs
            .iter()
            .zip(&set.outputs)
            .map(|(o, b)| match (&o.sink, b) {
                (Sink::Device(m), None) => Bound {
                    slice: m.rows_slice(r0, n, self.align),
                    stride: m.row_stride(),
                },
                (Sink::Device(m), Some(b)) => Bound {
                    slice: Slice::at0(b.buffer(), (n * m.dim().1 * 4) as u64),
                    stride: m.dim().1,
                },
                (sink, Some(b)) => {
                    let extent = sink.host_extent().or(match sink {
                        Sink::Scratch(e) => Some(*e),
                        _ => None,
                    });
                    let extent = extent.unwrap_or(Extent::PerRow(0));
                    Bound {
                        slice: Slice::at0(b.buffer(), extent.bytes(n)),
                        stride: extent.per_row() / 4,
                    }
                }
                (_, None) => unreachable!("host and scratch outputs always get storage"),
            })
            .collect();
        Chunk {
            rows: n,
            inputs,
            outputs,
        }
    }

    /// Copies packed scratch of device outputs to where they belong in their matrices.
    pub(super) fn copy_out(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        set: &Set,
        r0: usize,
        n: usize,
    ) {
        for (o, b) in self.outputs.iter().zip(&set.outputs) {
            if let (Sink::Device(m), Some(b)) = (&o.sink, b) {
                let (_, cols) = m.dim();
                let row = (cols * 4) as u64;
                if m.row_stride() == cols || n == 1 {
                    encoder.copy_buffer_to_buffer(
                        b.buffer(),
                        0,
                        m.buffer(),
                        m.row_offset(r0),
                        n as u64 * row,
                    );
                } else {
                    for i in 0..n {
                        encoder.copy_buffer_to_buffer(
                            b.buffer(),
                            i as u64 * row,
                            m.buffer(),
                            m.row_offset(r0 + i),
                            row,
                        );
                    }
                }
            }
        }
    }
}

/// Whether rows `[r0, ..)` of `m` can be bound where they lie for a kernel of this layout.
/// `exact`: decide for this `r0`; else for every chunk start (a reused streamed set).
pub(super) fn binds_in_place(
    m: &GpuMatrix,
    layout: Layout,
    r0: usize,
    align: u64,
    exact: bool,
) -> bool {
    let (rows, cols) = m.dim();
    let packed = m.row_stride() == cols || rows <= 1;
    match layout {
        Layout::Strided => true,
        Layout::Based => packed,
        Layout::Packed => packed && exact && m.row_offset(r0).is_multiple_of(align),
    }
}

/// Copies rows `[r0, r0 + n)` of `m` into `dst`, packed.
pub(super) fn copy_rows_packed(
    encoder: &mut wgpu::CommandEncoder,
    m: &GpuMatrix,
    r0: usize,
    n: usize,
    dst: &wgpu::Buffer,
) {
    let (_, cols) = m.dim();
    let row = (cols * 4) as u64;
    if m.row_stride() == cols || n == 1 {
        encoder.copy_buffer_to_buffer(m.buffer(), m.row_offset(r0), dst, 0, n as u64 * row);
    } else {
        for i in 0..n {
            encoder.copy_buffer_to_buffer(
                m.buffer(),
                m.row_offset(r0 + i),
                dst,
                i as u64 * row,
                row,
            );
        }
    }
}
