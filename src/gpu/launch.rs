//! The one launch path. Every GPU op is a [`Job`] that records its passes over one chunk of
//! rows; [`launch`] is the only loop over chunks. It picks the chunk size (one rule,
//! [`chunk_rows`]), binds each chunk's inputs and outputs (host rows uploaded through pooled
//! staging, device matrices bound where they lie), owns the buffer loans and error scopes,
//! submits, and reads host outputs back.
//!
//! With host data ([`Mode::Stream`]) consecutive chunks overlap on two buffer sets: chunk k+1
//! is uploaded and chunk k−1 read back while chunk k computes. Uploads go through the pool's
//! `MAP_WRITE` staging rather than `Queue::write_buffer`, whose staging is allocated per call:
//! fresh memory, page-faulted in on every upload once the allocator has handed it back to the
//! system (measured: cross-entropy forward end to end at [4096, 32000], 185 ms on its own,
//! 414 ms after the softmax benchmarks had run in the same process).
//! [`Mode::Record`] puts every chunk into the caller's encoder instead (device-resident calls,
//! recording into an application's encoder, kernel timing).

use super::context::Context;
use super::encode::{Scopes, Slice};
use super::matrix::GpuMatrix;
use super::plan::{even_chunks, WG};
use super::pool::PooledBuffer;
use super::readback::{read_mapped, write_mapped, Wait};
use crate::error::{Error, Result};
use wgpu::BufferUsages as U;

/// Bytes of one stream per chunk when host data is streamed: several chunks even where one
/// binding could take the whole input, so that transfers overlap compute, and two sets of
/// buffers cost a bounded amount of memory.
const STREAM_CHUNK_BYTES: u64 = 64 << 20;

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
    /// This many bytes per chunk, whatever its rows (e.g. per-class column sums).
    PerChunk(usize),
}

impl Extent {
    fn bytes(self, rows: usize) -> u64 {
        match self {
            Extent::PerRow(b) => (b * rows) as u64,
            Extent::PerChunk(b) => b as u64,
        }
    }

    fn per_row(self) -> usize {
        match self {
            Extent::PerRow(b) => b,
            Extent::PerChunk(_) => 0,
        }
    }
}

/// Where a job's input rows come from.
pub(crate) enum Source<'a> {
    /// Host rows, `row_bytes` each.
    Host { data: &'a [u8], row_bytes: usize },
    /// A device matrix.
    Device(&'a GpuMatrix),
}

/// Receives each chunk's bytes of a host output: `(first row, rows, bytes)`.
pub(crate) type Deliver<'a> = &'a mut (dyn FnMut(usize, usize, &[u8]) + Send);

/// Where a job's output rows go.
pub(crate) enum Sink<'a> {
    /// Read back to the host, into `data` (row `r` at `r·row_bytes`).
    Host {
        row_bytes: usize,
        data: &'a mut [u8],
    },
    /// Read back to the host, each chunk handed to `deliver`.
    HostChunks {
        extent: Extent,
        deliver: Deliver<'a>,
    },
    /// Written into a device matrix.
    Device(&'a GpuMatrix),
    /// Written to scratch that nobody reads (kernel timing).
    Scratch(Extent),
}

impl Sink<'_> {
    /// What a host output holds per chunk.
    fn host_extent(&self) -> Option<Extent> {
        match self {
            Sink::Host { row_bytes, .. } => Some(Extent::PerRow(*row_bytes)),
            Sink::HostChunks { extent, .. } => Some(*extent),
            Sink::Device(_) | Sink::Scratch(_) => None,
        }
    }
}

/// `data` as a host output of rows of `row_len` elements.
pub(crate) fn to_host<T: bytemuck::Pod>(data: &mut [T], row_len: usize) -> Sink<'_> {
    Sink::Host {
        row_bytes: row_len * std::mem::size_of::<T>(),
        data: bytemuck::cast_slice_mut(data),
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
    pub fn place(&self, wanted: super::io::Place) -> super::io::Place {
        match self {
            Mode::Stream(_) => wanted,
            Mode::Record(_) => super::io::Place::Device,
        }
    }
}

/// The one chunking rule: rows per chunk so that every stream's chunk fits one storage
/// binding (with room for the alignment slack of a matrix bound where it lies), the grid fits
/// `max_dim²` workgroups, and, when host data is streamed, no stream exceeds
/// `STREAM_CHUNK_BYTES`; then equal chunks. `row_bytes` is the widest stream's row.
pub(crate) fn chunk_rows(
    rows: usize,
    cols: usize,
    row_bytes: u64,
    max_binding: u64,
    align: u64,
    max_dim: u32,
    streamed: bool,
) -> Result<usize> {
    let room = max_binding.saturating_sub(align);
    if row_bytes > room {
        return Err(Error::ShapeTooLarge {
            rows,
            cols,
            what: "one row is larger than the device's largest storage binding",
            limit: max_binding,
        });
    }
    let cap = if streamed {
        room.min(STREAM_CHUNK_BYTES)
    } else {
        room
    };
    let by_bytes = (cap / row_bytes.max(4)).max(1) as usize;
    // 256 rows per workgroup at most, max_dim² workgroups: far above any real shape, but
    // checked so the fold in `record_pass` can never fail.
    let by_grid = (max_dim as usize)
        .saturating_mul(max_dim as usize)
        .saturating_mul(WG / 2);
    Ok(even_chunks(rows, rows.min(by_bytes).min(by_grid)))
}

/// Buffers of one of the two chunk sets of a streamed launch.
#[derive(Default)]
struct Set {
    /// Per input: (MAP_WRITE staging, storage) for host rows, a packed copy for a device
    /// matrix that cannot be bound where it lies, or nothing.
    inputs: Vec<(Option<PooledBuffer>, Option<PooledBuffer>)>,
    /// Per output: the storage it is written to, unless bound in a device matrix.
    outputs: Vec<Option<PooledBuffer>>,
    /// Every host output of a chunk, back to back.
    readback: Option<PooledBuffer>,
    /// The last submission that used this set.
    submitted: Option<wgpu::SubmissionIndex>,
    /// A submitted chunk whose host outputs are not read back yet: (r0, rows).
    pending: Option<(usize, usize)>,
}

impl Set {
    fn discard(&mut self) {
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
struct Plan<'a, 'b> {
    ctx: &'a Context,
    inputs: &'a [Input<'b>],
    outputs: &'a mut [Output<'b>],
    chunk: usize,
    align: u64,
}

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
    let streamed = matches!(mode, Mode::Stream(_))
        && inputs
            .iter()
            .any(|i| matches!(i.source, Source::Host { .. }));
    let widest = inputs
        .iter()
        .map(|i| match i.source {
            Source::Host { row_bytes, .. } => row_bytes,
            Source::Device(m) => m.row_stride().max(m.dim().1) * 4,
        })
        .chain(outputs.iter().map(|o| match &o.sink {
            Sink::Host { row_bytes, .. } => *row_bytes,
            Sink::HostChunks { extent, .. } | Sink::Scratch(extent) => extent.per_row(),
            Sink::Device(m) => m.row_stride().max(m.dim().1) * 4,
        }))
        .max()
        .unwrap_or(4);
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
    let chunk = chunk_rows(
        rows,
        cols,
        widest as u64,
        ctx.max_binding(),
        align,
        max_dim,
        streamed,
    )?;
    let mut plan = Plan {
        ctx,
        inputs,
        outputs,
        chunk,
        align,
    };
    match mode {
        Mode::Record(encoder) => plan.record_all(job, rows, encoder),
        Mode::Stream(wait) => plan.stream(job, rows, wait).await.map(|()| Vec::new()),
    }
}

impl Plan<'_, '_> {
    fn acquire(&self, usage: U, bytes: u64) -> PooledBuffer {
        let cap = self.ctx.max_binding();
        self.ctx
            .pool
            .acquire(&self.ctx.device, usage, bytes.max(4), cap)
    }

    /// Every chunk into `encoder`. Host inputs are queued with `write_buffer` into buffers of
    /// their own (they reach the device before the encoder's work, whenever it is submitted).
    fn record_all(
        &mut self,
        job: &dyn Job,
        rows: usize,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<Vec<PooledBuffer>> {
        let scopes = Scopes::push(&self.ctx.device);
        let mut keep = Vec::new();
        let recorded = (|| -> Result<()> {
            let mut r0 = 0;
            while r0 < rows {
                let n = self.chunk.min(rows - r0);
                let mut set = Set::default();
                for input in self.inputs {
                    let bufs = match input.source {
                        Source::Host { data, row_bytes } => {
                            let b = self.acquire(U::STORAGE | U::COPY_DST, (n * row_bytes) as u64);
                            let part = &data[r0 * row_bytes..(r0 + n) * row_bytes];
                            self.ctx.queue.write_buffer(b.buffer(), 0, part);
                            (None, Some(b))
                        }
                        Source::Device(m) => {
                            (None, self.packed_copy_in(encoder, m, input.layout, r0, n)?)
                        }
                    };
                    set.inputs.push(bufs);
                }
                for o in self.outputs.iter() {
                    let b = match &o.sink {
                        Sink::Host { .. } | Sink::HostChunks { .. } => {
                            return Err(Error::InvalidInput(
                                "a recorded call cannot read outputs back to the host".into(),
                            ))
                        }
                        Sink::Scratch(e) => Some(self.acquire(U::STORAGE, e.bytes(n))),
                        Sink::Device(m) => self.packed_out(m, o.layout, r0, n),
                    };
                    set.outputs.push(b);
                }
                let chunk = self.bind(&set, r0, n);
                keep.extend(job.record(self.ctx, encoder, &chunk)?);
                drop(chunk);
                self.copy_out(encoder, &set, r0, n);
                for (a, b) in set.inputs.drain(..) {
                    keep.extend(a.into_iter().chain(b));
                }
                keep.extend(set.outputs.drain(..).flatten());
                r0 += n;
            }
            Ok(())
        })();
        let popped = scopes.pop();
        recorded?;
        popped?;
        Ok(keep)
    }

    /// Chunk by chunk on two buffer sets: upload k, submit k, read back k−1 (which ran while
    /// k was uploaded), so transfers of one chunk overlap the compute of the next.
    async fn stream(&mut self, job: &dyn Job, rows: usize, wait: Wait) -> Result<()> {
        let mut sets = [Set::default(), Set::default()];
        let res = self.stream_sets(job, rows, wait, &mut sets).await;
        if res.is_err() {
            // The state of these buffers is unknown after a failure: do not reuse them.
            sets.iter_mut().for_each(Set::discard);
        }
        res?;
        self.ctx.check_uncaptured()
    }

    async fn stream_sets(
        &mut self,
        job: &dyn Job,
        rows: usize,
        wait: Wait,
        sets: &mut [Set; 2],
    ) -> Result<()> {
        let dev = &self.ctx.device;
        let mut k = 0;
        let mut r0 = 0;
        while r0 < rows {
            let n = self.chunk.min(rows - r0);
            let set = &mut sets[k % 2];
            self.fill_set(set);
            let scopes = Scopes::push(dev);
            let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("smoothmax/chunk"),
            });
            let recorded = self
                .upload_and_record(job, &mut encoder, set, r0, n, wait)
                .await;
            let keep = match recorded {
                Ok(keep) => keep,
                Err(e) => {
                    drop(scopes.pop());
                    return Err(e);
                }
            };
            set.submitted = Some(self.ctx.queue.submit([encoder.finish()]));
            drop(keep); // queue order protects pooled buffers once submitted
            scopes.pop()?;
            set.pending = Some((r0, n));
            // Chunk k computes while k−1 is read back (and, next turn, k+1 uploaded).
            let other = &mut sets[(k + 1) % 2];
            self.read_back(other, wait).await?;
            r0 += n;
            k += 1;
        }
        for set in sets.iter_mut() {
            self.read_back(set, wait).await?;
        }
        Ok(())
    }

    /// Acquires a set's buffers on its first use, sized for a full chunk.
    fn fill_set(&self, set: &mut Set) {
        if !set.inputs.is_empty() || !set.outputs.is_empty() || set.readback.is_some() {
            return;
        }
        let n = self.chunk;
        for input in self.inputs {
            set.inputs.push(match input.source {
                Source::Host { row_bytes, .. } => {
                    let bytes = (n * row_bytes) as u64;
                    (
                        Some(self.acquire(U::MAP_WRITE | U::COPY_SRC, bytes)),
                        Some(self.acquire(U::STORAGE | U::COPY_DST, bytes)),
                    )
                }
                Source::Device(m) => (None, self.packed_buffer_in(m, input.layout, n)),
            });
        }
        let mut host_bytes = 0;
        for o in self.outputs.iter() {
            set.outputs.push(match o.sink.host_extent() {
                Some(extent) => {
                    host_bytes += extent.bytes(n);
                    Some(self.acquire(U::STORAGE | U::COPY_SRC, extent.bytes(n)))
                }
                None => match &o.sink {
                    Sink::Scratch(e) => Some(self.acquire(U::STORAGE, e.bytes(n))),
                    Sink::Device(m) => self.packed_out(m, o.layout, 0, n),
                    Sink::Host { .. } | Sink::HostChunks { .. } => None,
                },
            });
        }
        if host_bytes > 0 {
            set.readback = Some(self.acquire(U::MAP_READ | U::COPY_DST, host_bytes));
        }
    }

    /// Writes chunk `[r0, r0 + n)` of every host input into the set's staging (mapped once the
    /// set's last submission is done), then records the staging copies and the job.
    async fn upload_and_record(
        &self,
        job: &dyn Job,
        encoder: &mut wgpu::CommandEncoder,
        set: &Set,
        r0: usize,
        n: usize,
        wait: Wait,
    ) -> Result<Vec<PooledBuffer>> {
        for (input, (staging, storage)) in self.inputs.iter().zip(&set.inputs) {
            match (&input.source, staging, storage) {
                (Source::Host { data, row_bytes }, Some(staging), Some(storage)) => {
                    let part = &data[r0 * row_bytes..(r0 + n) * row_bytes];
                    let bytes = part.len() as u64;
                    if bytes == 0 {
                        continue;
                    }
                    write_mapped(
                        self.ctx,
                        staging.buffer(),
                        part,
                        set.submitted.clone(),
                        wait,
                    )
                    .await?;
                    encoder.copy_buffer_to_buffer(staging.buffer(), 0, storage.buffer(), 0, bytes);
                }
                (Source::Device(m), None, Some(packed)) => {
                    copy_rows_packed(encoder, m, r0, n, packed.buffer());
                }
                _ => {}
            }
        }
        let chunk = self.bind(set, r0, n);
        let keep = job.record(self.ctx, encoder, &chunk)?;
        drop(chunk);
        self.copy_out(encoder, set, r0, n);
        let mut at = 0;
        if let Some(rb) = &set.readback {
            for (o, b) in self.outputs.iter().zip(&set.outputs) {
                if let (Some(extent), Some(b)) = (o.sink.host_extent(), b) {
                    let bytes = extent.bytes(n);
                    encoder.copy_buffer_to_buffer(b.buffer(), 0, rb.buffer(), at, bytes);
                    at += bytes;
                }
            }
        }
        Ok(keep)
    }

    /// Reads back a set's pending chunk, if any, and hands each host output its bytes.
    async fn read_back(&mut self, set: &mut Set, wait: Wait) -> Result<()> {
        let Some((r0, n)) = set.pending.take() else {
            return Ok(());
        };
        let Some(rb) = &set.readback else {
            return Ok(());
        };
        let sizes: Vec<u64> = self
            .outputs
            .iter()
            .map(|o| o.sink.host_extent().map_or(0, |e| e.bytes(n)))
            .collect();
        let total: u64 = sizes.iter().sum();
        let outputs = &mut *self.outputs;
        read_mapped(
            self.ctx,
            rb.buffer(),
            total,
            set.submitted.clone(),
            wait,
            |view| {
                let mut at = 0usize;
                for (o, &size) in outputs.iter_mut().zip(&sizes) {
                    let part = &view[at..at + size as usize];
                    match &mut o.sink {
                        Sink::Host { row_bytes, data } => {
                            data[r0 * *row_bytes..(r0 + n) * *row_bytes].copy_from_slice(part)
                        }
                        Sink::HostChunks { deliver, .. } => deliver(r0, n, part),
                        Sink::Device(_) | Sink::Scratch(_) => {}
                    }
                    at += size as usize;
                }
            },
        )
        .await
    }

    /// A packed copy of a device input that its kernel cannot read where it lies.
    fn packed_buffer_in(&self, m: &GpuMatrix, layout: Layout, n: usize) -> Option<PooledBuffer> {
        (!binds_in_place(m, layout, 0, self.align, false))
            .then(|| self.acquire(U::STORAGE | U::COPY_DST, (n * m.dim().1 * 4) as u64))
    }

    fn packed_copy_in(
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
    fn packed_out(
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
    fn bind<'s>(&'s self, set: &'s Set, r0: usize, n: usize) -> Chunk<'s> {
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
    fn copy_out(&self, encoder: &mut wgpu::CommandEncoder, set: &Set, r0: usize, n: usize) {
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
fn binds_in_place(m: &GpuMatrix, layout: Layout, r0: usize, align: u64, exact: bool) -> bool {
    let (rows, cols) = m.dim();
    let packed = m.row_stride() == cols || rows <= 1;
    match layout {
        Layout::Strided => true,
        Layout::Based => packed,
        Layout::Packed => packed && exact && m.row_offset(r0).is_multiple_of(align),
    }
}

/// Copies rows `[r0, r0 + n)` of `m` into `dst`, packed.
fn copy_rows_packed(
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

/// `data` as a host source of rows of `row_len` elements.
pub(crate) fn host<T: bytemuck::Pod>(data: &[T], row_len: usize) -> Source<'_> {
    Source::Host {
        data: bytemuck::cast_slice(data),
        row_bytes: row_len * std::mem::size_of::<T>(),
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_rows;

    #[test]
    fn chunks_fit_the_binding_and_streamed_chunks_stay_small() {
        let lim = 128 << 20;
        let row = |cols: usize| (cols * 4) as u64;
        let rule =
            |rows, cols, streamed| chunk_rows(rows, cols, row(cols), lim, 256, 65_535, streamed);
        // Device data: as large as a binding allows, in equal chunks.
        assert_eq!(rule(4096, 32_000, false).unwrap(), 1024); // 4 chunks
        assert_eq!(rule(512, 128_256, false).unwrap(), 256);
        assert_eq!(rule(1049, 32_000, false).unwrap(), 525);
        assert_eq!(rule(3, 7, false).unwrap(), 3);
        // Host data: at most 64 MiB per stream, so transfers overlap compute.
        assert_eq!(rule(4096, 32_000, true).unwrap(), 512); // 8 chunks of 65.5 MB
        assert_eq!(rule(65_536, 1000, true).unwrap(), 16_384); // 4 chunks
                                                               // A row larger than a binding (less the alignment slack) is an error.
        assert!(rule(1, 40 << 20, false).is_err());
        assert!(chunk_rows(1, 1, lim, lim, 256, 65_535, false).is_err());
    }
}
