//! What a launch moves: where each input comes from and each output goes, how its kernel
//! addresses it, and the job that records one chunk's passes.

use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::Slice;
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::readback::Wait;

/// How a kernel addresses a stream, which decides whether a device matrix can be bound where
/// it lies or goes through a packed scratch copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Rows start `base + r·stride` elements into the binding (`x_base`, `x_stride`).
    Strided,
    /// Rows are packed, starting `base` elements in (`y_base`).
    Based,
    /// Rows are packed from the binding's start.
    Packed,
}

/// How much a stream holds per chunk.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    /// This many bytes per row.
    PerRow(usize),
}

impl Extent {
    pub(super) fn bytes(self, rows: usize) -> u64 {
        match self {
            Extent::PerRow(b) => (b * rows) as u64,
        }
    }

    /// [`Extent::bytes`] rounded up to whole words, as buffer copies move them (a chunk of
    /// half-precision rows may end mid-word).
    pub(super) fn words_bytes(self, rows: usize) -> u64 {
        self.bytes(rows).next_multiple_of(4)
    }

    pub(super) fn per_row(self) -> usize {
        match self {
            Extent::PerRow(b) => b,
        }
    }
}

/// Where a job's input rows come from.
pub(crate) enum Source<'a> {
    /// Host rows, `row_bytes` each, of `elem`-byte elements.
    Host {
        data: &'a [u8],
        row_bytes: usize,
        elem: usize,
    },
    /// A device matrix.
    Device(&'a GpuMatrix),
}

/// Where a job's output rows go.
pub(crate) enum Sink<'a> {
    /// Read back to the host, into `data` (row `r` at `r·row_bytes`), of `elem`-byte
    /// elements.
    Host {
        row_bytes: usize,
        data: &'a mut [u8],
        elem: usize,
    },
    /// Written into a device matrix.
    Device(&'a GpuMatrix),
    /// One row of this device matrix per chunk, whatever the chunk's rows: chunk `k` writes
    /// row `k` (per-chunk partial sums). Its rows must start at bindable offsets (see
    /// [`super::chunk_outputs`], which makes such a matrix).
    DeviceChunks(&'a GpuMatrix),
    /// Written to scratch that nobody reads (kernel timing), of elements of this many bytes.
    Scratch(Extent, usize),
}

impl Sink<'_> {
    /// Bytes per element as the kernel writes them (statistics and scratch are words).
    pub(super) fn elem(&self) -> usize {
        match self {
            Sink::Host { elem, .. } => *elem,
            Sink::Device(m) | Sink::DeviceChunks(m) => m.elem(),
            Sink::Scratch(_, elem) => *elem,
        }
    }

    /// What a host output holds per chunk.
    pub(super) fn host_extent(&self) -> Option<Extent> {
        match self {
            Sink::Host { row_bytes, .. } => Some(Extent::PerRow(*row_bytes)),
            Sink::Device(_) | Sink::DeviceChunks(_) | Sink::Scratch(..) => None,
        }
    }
}

/// `data` as a host output of rows of `row_len` elements.
pub(crate) fn to_host<T: bytemuck::Pod>(data: &mut [T], row_len: usize) -> Sink<'_> {
    Sink::Host {
        row_bytes: row_len * std::mem::size_of::<T>(),
        data: bytemuck::cast_slice_mut(data),
        elem: std::mem::size_of::<T>(),
    }
}

/// An input with the layout its kernel reads it in.
pub(crate) struct Input<'a> {
    pub source: Source<'a>,
    pub layout: Layout,
}

/// An output with the layout its kernel writes it in.
pub(crate) struct Output<'a> {
    pub sink: Sink<'a>,
    pub layout: Layout,
}

/// One stream of one chunk as the kernel sees it: the bound region and, for
/// [`Layout::Strided`], the elements between row starts.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Bound<'a> {
    pub slice: Slice<'a>,
    pub stride: usize,
}

/// One chunk of rows: its inputs and outputs in the order the launch got them.
pub(crate) struct Chunk<'a> {
    pub rows: usize,
    pub inputs: Vec<Bound<'a>>,
    pub outputs: Vec<Bound<'a>>,
}

/// An op's passes over one chunk.
pub(crate) trait Job: Sync {
    /// Records the passes of `chunk`; returns the scratch buffers they use (kept until the
    /// work is submitted).
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>>;
}

/// Where an op's matrix outputs go.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Host,
    Device,
}

/// How a launch runs.
pub(crate) enum Mode<'e> {
    /// Submit chunk by chunk, overlapped, and read host outputs back.
    Stream(Wait),
    /// Record every chunk into this encoder; nothing is submitted or read back.
    Record(&'e mut wgpu::CommandEncoder),
}

impl Mode<'_> {
    /// The same mode for one more launch of a multi-launch op.
    pub fn reborrow(&mut self) -> Mode<'_> {
        match self {
            Mode::Stream(w) => Mode::Stream(*w),
            Mode::Record(e) => Mode::Record(e),
        }
    }

    /// Where outputs can go in this mode: a recorded launch cannot read back.
    pub fn place(&self, wanted: Place) -> Place {
        match self {
            Mode::Stream(_) => wanted,
            Mode::Record(_) => Place::Device,
        }
    }
}

/// `data` as a host source of rows of `row_len` elements.
pub(crate) fn host<T: bytemuck::Pod>(data: &[T], row_len: usize) -> Source<'_> {
    Source::Host {
        data: bytemuck::cast_slice(data),
        row_bytes: row_len * std::mem::size_of::<T>(),
        elem: std::mem::size_of::<T>(),
    }
}
