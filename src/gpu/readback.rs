//! Reading a buffer back to the host, in the one order that works everywhere:
//! copy to a MAP_READ staging buffer (done by the caller's encoder), `map_async` with a
//! channel, poll the device until the callback ran, copy out of the mapped view, drop the
//! view, unmap. `map_async` only completes while the device is polled, hence the poll.
//!
//! The core is async. Blocking callers poll inline (`Wait::Inline`, under pollster); async
//! callers hand the blocking `device.poll` to a short-lived OS thread (`Wait::Thread`), so the
//! executor thread only awaits the channel: no busy loop, no blocked executor.

use super::context::Context;
use crate::error::{Error, Result};

/// How the device gets polled while a readback is awaited.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Poll on the calling thread (blocking API).
    Inline,
    /// Poll on a helper thread; the calling task only awaits (async API).
    Thread,
}

/// Copies the first `dst.len()` floats of `staging` (already filled by a submitted copy) into
/// `dst`, blocking. The buffer is unmapped again on every path that mapped it.
pub(crate) fn read_f32(ctx: &Context, staging: &wgpu::Buffer, dst: &mut [f32]) -> Result<()> {
    pollster::block_on(read_f32_parts(ctx, staging, &mut [dst], Wait::Inline))
}

/// The staging buffer's leading floats split over several destinations in order (one map for
/// several outputs).
pub(crate) async fn read_f32_parts(
    ctx: &Context,
    staging: &wgpu::Buffer,
    parts: &mut [&mut [f32]],
    wait: Wait,
) -> Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total == 0 {
        return Ok(());
    }
    let bytes = (total * 4) as u64;
    let slice = staging.slice(0..bytes);
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        // The receiver lives until this function returns; a send error cannot be acted on.
        let _ = tx.send(r);
    });
    match wait {
        Wait::Inline => {
            if let Err(e) = ctx.device.poll(wgpu::PollType::wait_indefinitely()) {
                ctx.check_alive()?;
                return Err(Error::Readback(format!("waiting for the device: {e}")));
            }
        }
        Wait::Thread => {
            let device = ctx.device.clone();
            // The callback fires inside this poll; errors surface through the callback.
            std::thread::spawn(move || {
                let _ = device.poll(wgpu::PollType::wait_indefinitely());
            });
        }
    }
    match rx.receive().await {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            ctx.check_alive()?;
            return Err(Error::Readback(format!("map_async: {e}")));
        }
        None => return Err(Error::Readback("map_async callback never ran".into())),
    }
    let copied = match slice.get_mapped_range() {
        Ok(view) => {
            let mut at = 0;
            for p in parts.iter_mut() {
                let n = p.len() * 4;
                bytemuck::cast_slice_mut::<f32, u8>(p).copy_from_slice(&view[at..at + n]);
                at += n;
            }
            Ok(())
        }
        Err(e) => Err(Error::Readback(format!("get_mapped_range: {e}"))),
    };
    staging.unmap();
    copied
}
