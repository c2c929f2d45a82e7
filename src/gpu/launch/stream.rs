//! Streaming a chunk of host data on one of two buffer sets, so that the transfers of one
//! chunk overlap the compute of the next.

use super::bind::{copy_rows, Direction, Plan, Set};
use super::streams::{Job, Sink, Source};
use crate::error::Result;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::readback::{read_mapped, write_mapped, Wait};
use crate::gpu::scopes::Scopes;
use wgpu::BufferUsages as U;

impl Plan<'_, '_> {
    /// Streams rows `[r0, r0 + n)`, the `k`-th chunk, on set `k mod 2`: upload, record,
    /// submit; then read back chunk k−1 (from the other set) while this one computes. The
    /// next chunk's upload follows, also while this one computes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stream_chunk(
        &mut self,
        job: &dyn Job,
        sets: &mut [Set; 2],
        k: usize,
        r0: usize,
        n: usize,
        wait: Wait,
    ) -> Result<()> {
        let dev = &self.ctx.device;
        let set = &mut sets[k % 2];
        let scopes = Scopes::push(dev);
        self.fill_set(set); // allocations the device may refuse: scoped too
        scopes.pop()?;
        // Every await (the staging maps) comes before the error scopes are pushed: scopes
        // belong to a thread and must be popped in order, and another task on this thread
        // may run at an await.
        self.upload(set, r0, n, wait).await?;
        let scopes = Scopes::push(dev);
        let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("smoothmax/chunk"),
        });
        let recorded = self.record_set(job, &mut encoder, set, r0, n);
        let submitted = recorded.map(|keep| (self.ctx.queue.submit([encoder.finish()]), keep));
        let popped = scopes.pop();
        let (index, mut keep) = submitted?;
        if let Err(e) = popped {
            // The state of these buffers is unknown after a failure: do not reuse them.
            keep.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        drop(keep); // queue order protects pooled buffers once submitted
        set.submitted = Some(index);
        set.pending = Some((r0, n));
        self.read_back(&mut sets[(k + 1) % 2], wait).await
    }

    /// Reads back whatever is still pending after the last chunk.
    pub(super) async fn drain(&mut self, sets: &mut [Set; 2], wait: Wait) -> Result<()> {
        for set in sets.iter_mut() {
            self.read_back(set, wait).await?;
        }
        self.ctx.check_uncaptured()
    }

    /// Acquires a set's buffers on its first use, sized for a full chunk.
    pub(super) fn fill_set(&self, set: &mut Set) {
        if !set.inputs.is_empty() || !set.outputs.is_empty() || set.readback.is_some() {
            return;
        }
        let n = self.chunk;
        for input in self.inputs {
            set.inputs.push(match input.source {
                Source::Host { row_bytes, .. } => {
                    let bytes = ((n * row_bytes) as u64).next_multiple_of(4);
                    (
                        Some(self.acquire(U::MAP_WRITE | U::COPY_SRC, bytes)),
                        Some(self.acquire(U::STORAGE | U::COPY_DST, bytes)),
                    )
                }
                Source::Device(m) => (None, self.packed(m, input.layout, None, n, U::COPY_DST)),
            });
        }
        let mut host_bytes = 0;
        for o in self.outputs.iter() {
            set.outputs.push(match o.sink.host_extent() {
                Some(extent) => {
                    host_bytes += extent.words_bytes(n);
                    Some(self.acquire(U::STORAGE | U::COPY_SRC, extent.words_bytes(n)))
                }
                None => match &o.sink {
                    Sink::Scratch(e, _) => Some(self.acquire(U::STORAGE, e.words_bytes(n))),
                    Sink::Device(m) => self.packed(m, o.layout, None, n, U::COPY_SRC),
                    Sink::DeviceChunks(_) | Sink::Host { .. } => None,
                },
            });
        }
        if host_bytes > 0 {
            set.readback = Some(self.acquire(U::MAP_READ | U::COPY_DST, host_bytes));
        }
    }

    /// Writes chunk `[r0, r0 + n)` of every host input into the set's staging, mapped once
    /// the set's last submission is done.
    async fn upload(&self, set: &Set, r0: usize, n: usize, wait: Wait) -> Result<()> {
        for (input, (staging, _)) in self.inputs.iter().zip(&set.inputs) {
            if let (
                Source::Host {
                    data, row_bytes, ..
                },
                Some(staging),
            ) = (&input.source, staging)
            {
                let part = &data[r0 * row_bytes..(r0 + n) * row_bytes];
                if !part.is_empty() {
                    let after = set.submitted.clone();
                    write_mapped(self.ctx, staging.buffer(), part, after, wait).await?;
                }
            }
        }
        Ok(())
    }

    /// Records the chunk's input copies (staging or packed), the job, the output copies and
    /// the copies to the readback buffer.
    fn record_set(
        &self,
        job: &dyn Job,
        encoder: &mut wgpu::CommandEncoder,
        set: &Set,
        r0: usize,
        n: usize,
    ) -> Result<Vec<PooledBuffer>> {
        for (input, (staging, storage)) in self.inputs.iter().zip(&set.inputs) {
            match (&input.source, staging, storage) {
                (Source::Host { row_bytes, .. }, Some(staging), Some(storage)) => {
                    // Whole words (write_mapped pads a half chunk's last one).
                    let bytes = ((n * row_bytes) as u64).next_multiple_of(4);
                    if bytes > 0 {
                        encoder.copy_buffer_to_buffer(
                            staging.buffer(),
                            0,
                            storage.buffer(),
                            0,
                            bytes,
                        );
                    }
                }
                (Source::Device(m), None, Some(packed)) => {
                    copy_rows(encoder, m, r0, n, packed.buffer(), Direction::FromMatrix);
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
                    let bytes = extent.words_bytes(n);
                    encoder.copy_buffer_to_buffer(b.buffer(), 0, rb.buffer(), at, bytes);
                    at += bytes;
                }
            }
        }
        Ok(keep)
    }

    /// Reads back a set's pending chunk, if any, and hands each host output its bytes.
    pub(super) async fn read_back(&mut self, set: &mut Set, wait: Wait) -> Result<()> {
        let Some((r0, n)) = set.pending.take() else {
            return Ok(());
        };
        let Some(rb) = &set.readback else {
            return Ok(());
        };
        // Each output's bytes, and the whole words the copies moved.
        let sizes: Vec<(u64, u64)> = self
            .outputs
            .iter()
            .map(|o| {
                o.sink
                    .host_extent()
                    .map_or((0, 0), |e| (e.bytes(n), e.words_bytes(n)))
            })
            .collect();
        let total: u64 = sizes.iter().map(|s| s.1).sum();
        let outputs = &mut *self.outputs;
        read_mapped(
            self.ctx,
            rb.buffer(),
            total,
            set.submitted.clone(),
            wait,
            |view| {
                let mut at = 0usize;
                for (o, &(size, words)) in outputs.iter_mut().zip(&sizes) {
                    let part = &view[at..at + size as usize];
                    match &mut o.sink {
                        Sink::Host {
                            row_bytes, data, ..
                        } => data[r0 * *row_bytes..(r0 + n) * *row_bytes].copy_from_slice(part),
                        Sink::Device(_) | Sink::DeviceChunks(_) | Sink::Scratch(..) => {}
                    }
                    at += words as usize;
                }
            },
        )
        .await
    }
}
