//! The one launch path. Every GPU op is a [`Job`] that records its passes over one chunk of
//! rows; [`launch`] is the only loop over chunks. It picks the chunk size (one rule,
//! [`chunk_rows`]), binds each chunk's inputs and outputs (host rows uploaded through pooled
//! staging, device matrices bound where they lie), owns the pooled buffers and error scopes,
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

mod bind;
mod record;
mod rule;
mod run;
mod stream;
mod streams;

pub(crate) use run::{chunk_outputs, launch};
pub(crate) use streams::{
    host, to_host, Chunk, Extent, Input, Job, Layout, Mode, Output, Place, Sink, Source,
};
