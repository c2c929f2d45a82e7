//! Error scopes: how every piece of the engine's device work gets its validation and
//! out-of-memory errors back as values instead of through the device's default handler.

use crate::error::{Error, Result};

/// Error scopes around one submission: validation and out-of-memory errors come back as
/// [`Error`] instead of reaching wgpu's default handler (which panics).
pub(crate) struct Scopes {
    // Field order matters: fields drop in declaration order, and scopes must be popped
    // innermost first. A `?` between push and pop drops this struct without `pop`; with the
    // outer scope first, wgpu panics ("error scopes must be popped in reverse order").
    validation: wgpu::ErrorScopeGuard,
    oom: wgpu::ErrorScopeGuard,
}

impl Scopes {
    pub fn push(device: &wgpu::Device) -> Self {
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        Scopes { oom, validation }
    }

    /// Pops both scopes (innermost first) and reports what they caught.
    pub fn pop(self) -> Result<()> {
        let v = pollster::block_on(self.validation.pop());
        let o = pollster::block_on(self.oom.pop());
        if let Some(e) = v {
            return Err(Error::Validation(e.to_string()));
        }
        if let Some(e) = o {
            return Err(Error::OutOfMemory(e.to_string()));
        }
        Ok(())
    }
}
