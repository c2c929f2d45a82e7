//! Recording a chunk into the caller's encoder (device-resident calls, recording into an
//! application's encoder, kernel timing).

use super::bind::{copy_rows, Direction, Plan, Set};
use super::streams::{Job, Sink, Source};
use crate::error::{Error, Result};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::scopes::Scopes;
use wgpu::BufferUsages as U;

impl Plan<'_, '_> {
    /// Records rows `[r0, r0 + n)` into `encoder`. Host inputs are queued with `write_buffer`
    /// into buffers of their own (they reach the device before the encoder's work, whenever it
    /// is submitted); returns every buffer the chunk uses.
    pub(super) fn record_chunk(
        &self,
        job: &dyn Job,
        encoder: &mut wgpu::CommandEncoder,
        r0: usize,
        n: usize,
    ) -> Result<Vec<PooledBuffer>> {
        let scopes = Scopes::push(&self.ctx.device);
        let mut keep = Vec::new();
        let mut set = Set::default();
        let recorded = (|| -> Result<()> {
            for input in self.inputs {
                let bufs = match input.source {
                    Source::Host {
                        data, row_bytes, ..
                    } => {
                        let bytes = ((n * row_bytes) as u64).next_multiple_of(4);
                        let b = self.acquire(U::STORAGE | U::COPY_DST, bytes);
                        let part = &data[r0 * row_bytes..(r0 + n) * row_bytes];
                        // Whole words: a half-precision chunk may end mid-word.
                        let mut words = part.to_vec();
                        words.resize(bytes as usize, 0);
                        self.ctx.queue.write_buffer(b.buffer(), 0, &words);
                        (None, Some(b))
                    }
                    Source::Device(m) => {
                        let b = self.packed(m, input.layout, Some(r0), n, U::COPY_DST);
                        if let Some(b) = &b {
                            copy_rows(encoder, m, r0, n, b.buffer(), Direction::FromMatrix);
                        }
                        (None, b)
                    }
                };
                set.inputs.push(bufs);
            }
            for o in self.outputs.iter() {
                let b = match &o.sink {
                    Sink::Host { .. } => {
                        return Err(Error::InvalidInput(
                            "a recorded call cannot read outputs back to the host".into(),
                        ))
                    }
                    Sink::Scratch(e, _) => Some(self.acquire(U::STORAGE, e.words_bytes(n))),
                    Sink::Device(m) => self.packed(m, o.layout, Some(r0), n, U::COPY_SRC),
                    Sink::DeviceChunks(_) => None,
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
            Ok(())
        })();
        let popped = scopes.pop();
        match recorded.and(popped) {
            Ok(()) => Ok(keep),
            Err(e) => {
                // The state of these buffers is unknown after a failure: do not reuse them.
                keep.iter_mut().for_each(PooledBuffer::discard);
                set.discard();
                Err(e)
            }
        }
    }
}
