//! Mapping a buffer for the host, in the one order that works everywhere: `map_async` with a
//! callback, poll the device until the callback ran, use the mapped view, drop it, unmap.
//! `map_async` only completes while the device is polled, hence the poll.
//!
//! Blocking callers poll inline (`Wait::Inline`, under pollster); async callers hand the
//! polling to a short-lived OS thread (`Wait::Thread`), so the executor thread only awaits the
//! callback's channel: no busy loop, no blocked executor.

use super::context::Context;
use super::scopes::Scopes;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How the device gets polled while a mapping is awaited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Poll on the calling thread (blocking API).
    Inline,
    /// Poll on a helper thread; the calling task only awaits (async API).
    Thread,
}

/// Polls until a map callback has run. `after` is the last submission that uses the buffer:
/// waiting for it alone (not for everything submitted since) is what lets the next chunk keep
/// computing while this one is mapped. A buffer no submission used maps at the first poll.
fn drive(device: &wgpu::Device, after: Option<wgpu::SubmissionIndex>, fired: &AtomicBool) {
    let first = match after {
        Some(i) => wgpu::PollType::Wait {
            submission_index: Some(i),
            timeout: None,
        },
        None => wgpu::PollType::Poll,
    };
    // Errors (a lost device) surface through the callback, or through the wait below.
    let _ = device.poll(first);
    if !fired.load(Ordering::Acquire) {
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
    }
}

/// Unmaps its buffer when dropped: after the view is used, and also when the awaiting future
/// is dropped mid-map or the caller's closure panics (unmapping cancels a pending map), so
/// no buffer goes back to the pool mapped or with a map pending.
struct Unmap<'a>(Option<&'a wgpu::Buffer>);

impl Drop for Unmap<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.unmap();
        }
    }
}

/// Maps `buffer[..bytes]` for `mode`, waiting for submission `after` (the last one that uses
/// the buffer). The returned guard unmaps it.
async fn map<'a>(
    ctx: &Context,
    buffer: &'a wgpu::Buffer,
    bytes: u64,
    mode: wgpu::MapMode,
    after: Option<wgpu::SubmissionIndex>,
    wait: Wait,
) -> Result<Unmap<'a>> {
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    // Scoped on its own, with no await inside: a refused map (a lost device) is an error
    // here, not a call of the device's default handler (which panics on an application's).
    let scopes = Scopes::push(&ctx.device);
    buffer.slice(0..bytes).map_async(mode, move |r| {
        flag.store(true, Ordering::Release);
        // The receiver lives until this function returns; a send error cannot be acted on.
        let _ = tx.send(r);
    });
    if let Err(e) = scopes.pop() {
        ctx.check_alive()?;
        return Err(e);
    }
    let mut guard = Unmap(Some(buffer));
    match wait {
        Wait::Inline => drive(&ctx.device, after, &fired),
        Wait::Thread => {
            let device = ctx.device.clone();
            std::thread::spawn(move || drive(&device, after, &fired));
        }
    }
    match rx.receive().await {
        Some(Ok(())) => Ok(guard),
        Some(Err(e)) => {
            guard.0 = None; // never mapped
            ctx.check_alive()?;
            Err(Error::Readback(format!("map_async: {e}")))
        }
        None => {
            guard.0 = None;
            Err(Error::Readback("map_async callback never ran".into()))
        }
    }
}

/// Maps the first `bytes` of a `MAP_READ` buffer once submission `after` is done and hands
/// the bytes to `read`.
pub(crate) async fn read_mapped<R>(
    ctx: &Context,
    buffer: &wgpu::Buffer,
    bytes: u64,
    after: Option<wgpu::SubmissionIndex>,
    wait: Wait,
    read: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let _unmap = map(ctx, buffer, bytes, wgpu::MapMode::Read, after, wait).await?;
    let view = buffer
        .slice(0..bytes)
        .get_mapped_range()
        .map_err(|e| Error::Readback(format!("get_mapped_range: {e}")))?;
    Ok(read(&view))
}

/// Copies `data` into the start of a `MAP_WRITE` buffer, mapped once submission `after` is
/// done. The mapping covers whole words (half-precision data may end mid-word): the padding
/// bytes are zeroed.
pub(crate) async fn write_mapped(
    ctx: &Context,
    buffer: &wgpu::Buffer,
    data: &[u8],
    after: Option<wgpu::SubmissionIndex>,
    wait: Wait,
) -> Result<()> {
    let bytes = (data.len() as u64).next_multiple_of(4);
    let _unmap = map(ctx, buffer, bytes, wgpu::MapMode::Write, after, wait).await?;
    let mut view = buffer
        .slice(0..bytes)
        .get_mapped_range_mut()
        .map_err(|e| Error::Readback(format!("get_mapped_range_mut: {e}")))?;
    view.slice(..data.len()).copy_from_slice(data);
    let pad = [0u8; 4];
    let rest = view.len() - data.len();
    view.slice(data.len()..).copy_from_slice(&pad[..rest]);
    Ok(())
}

/// Copies the first `dst.len()` floats of `staging` (filled by a submitted copy) into `dst`,
/// blocking.
pub(crate) fn read_f32(ctx: &Context, staging: &wgpu::Buffer, dst: &mut [f32]) -> Result<()> {
    let bytes = std::mem::size_of_val(dst) as u64;
    pollster::block_on(read_mapped(
        ctx,
        staging,
        bytes,
        None,
        Wait::Inline,
        |view| bytemuck::cast_slice_mut::<f32, u8>(dst).copy_from_slice(view),
    ))
}
