//! What every launch mode shares: the launch's plan, a chunk's buffer set, and binding a
//! chunk's streams (device matrices where they lie, or through a packed copy).

use super::streams::{Bound, Chunk, Extent, Input, Layout, Output, Sink, Source};
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

    /// A packed copy of device matrix `m` for `n` rows, unless its kernel can bind it where it
    /// lies (`start`: the chunk's first row, or `None` for a streamed set reused by every
    /// chunk). `usage` is the copy's direction: `COPY_DST` in, `COPY_SRC` out.
    pub(super) fn packed(
        &self,
        m: &GpuMatrix,
        layout: Layout,
        start: Option<usize>,
        n: usize,
        usage: U,
    ) -> Option<PooledBuffer> {
        (!binds_in_place(m, layout, start, self.align))
            .then(|| self.acquire(U::STORAGE | usage, (n * m.dim().1 * m.elem()) as u64))
    }

    /// The chunk's streams as bindings.
    pub(super) fn bind<'s>(&'s self, set: &'s Set, r0: usize, n: usize) -> Chunk<'s> {
        let inputs = self
            .inputs
            .iter()
            .zip(&set.inputs)
            .map(|(input, (_, storage))| match (&input.source, storage) {
                (
                    Source::Host {
                        row_bytes, elem, ..
                    },
                    Some(b),
                ) => Bound {
                    slice: Slice::at0(b.buffer(), ((n * row_bytes) as u64).next_multiple_of(4)),
                    stride: row_bytes / elem,
                },
                (Source::Device(m), Some(b)) => Bound {
                    slice: Slice::at0(b.buffer(), (n * m.dim().1 * m.elem()) as u64),
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
                    slice: Slice::at0(b.buffer(), (n * m.dim().1 * m.elem()) as u64),
                    stride: m.dim().1,
                },
                // Chunk k's row (every chunk but the last has `chunk` rows).
                (Sink::DeviceChunks(m), _) => Bound {
                    slice: m.rows_slice(r0 / self.chunk, 1, self.align),
                    stride: m.row_stride(),
                },
                (sink, Some(b)) => {
                    let extent = sink.host_extent().or(match sink {
                        Sink::Scratch(e, _) => Some(*e),
                        _ => None,
                    });
                    let extent = extent.unwrap_or(Extent::PerRow(0));
                    Bound {
                        slice: Slice::at0(b.buffer(), extent.words_bytes(n)),
                        stride: extent.per_row() / sink.elem(),
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
                copy_rows(encoder, m, r0, n, b.buffer(), Direction::IntoMatrix);
            }
        }
    }
}

/// Whether the rows of `m` from `start` can be bound where they lie for a kernel of this
/// layout; `start = None`: for any chunk start (a streamed set, reused by every chunk).
pub(super) fn binds_in_place(
    m: &GpuMatrix,
    layout: Layout,
    start: Option<usize>,
    align: u64,
) -> bool {
    let (rows, cols) = m.dim();
    let packed = m.row_stride() == cols || rows <= 1;
    match layout {
        Layout::Strided => true,
        Layout::Based => packed,
        Layout::Packed => packed && start.is_some_and(|r0| m.row_offset(r0).is_multiple_of(align)),
    }
}

/// Which way [`copy_rows`] copies.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(super) enum Direction {
    /// From the matrix's rows into packed scratch.
    FromMatrix,
    /// From packed scratch into the matrix's rows.
    IntoMatrix,
}

/// Copies rows `[r0, r0 + n)` of `m` between the matrix and packed `scratch`: one copy where
/// the rows are contiguous, one per row otherwise.
pub(super) fn copy_rows(
    encoder: &mut wgpu::CommandEncoder,
    m: &GpuMatrix,
    r0: usize,
    n: usize,
    scratch: &wgpu::Buffer,
    direction: Direction,
) {
    let row = (m.dim().1 * m.elem()) as u64;
    let runs = if m.row_stride() == m.dim().1 || n == 1 {
        vec![(0, n)]
    } else {
        (0..n).map(|i| (i, 1)).collect()
    };
    for (i, count) in runs {
        let (at, bytes) = (m.row_offset(r0 + i), count as u64 * row);
        match direction {
            Direction::FromMatrix => {
                encoder.copy_buffer_to_buffer(m.buffer(), at, scratch, i as u64 * row, bytes)
            }
            Direction::IntoMatrix => {
                encoder.copy_buffer_to_buffer(scratch, i as u64 * row, m.buffer(), at, bytes)
            }
        }
    }
}
