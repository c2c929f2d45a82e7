//! Recording one compute pass: its params uniform, pipeline, bind group and folded grid.
//! Shared by every dispatcher.

use super::context::Context;
use super::pipelines::PipelineKey;
use super::plan::fold_grid;
use super::pool::PooledBuffer;
use super::shaders::ShaderKey;
use crate::error::{Error, Result};
use std::num::NonZeroU64;
use wgpu::BufferUsages as U;

/// Mirrors `struct Params` in shaders/prelude.wgsl (48 bytes, all 4-byte fields).
#[repr(C)]
#[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub rows: u32,
    pub cols: u32,
    pub cols_v: u32,
    pub segs: u32,
    pub seg_len: u32,
    pub groups_x: u32,
    pub temperature: f32,
    pub inv_temperature: f32,
    pub neg_inf: f32,
    pub pos_inf: f32,
    pub nan: f32,
    pub _pad: u32,
}

impl Params {
    pub fn new(rows: usize, cols: usize, segs: u32, seg_len: u32, temperature: f32) -> Self {
        Params {
            rows: rows as u32,
            cols: cols as u32,
            cols_v: cols.div_ceil(4) as u32,
            segs,
            seg_len,
            groups_x: 0,
            temperature,
            inv_temperature: 1.0 / temperature,
            neg_inf: f32::NEG_INFINITY,
            pos_inf: f32::INFINITY,
            nan: f32::NAN,
            _pad: 0,
        }
    }
}

/// A binding of the first `bytes` of `buf` (at least 4, as wgpu requires non-zero sizes).
pub(crate) fn binding(buf: &wgpu::Buffer, bytes: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset: 0,
        size: NonZeroU64::new(bytes.max(4)),
    })
}

/// Records one dispatch of `entry` over `workgroups` workgroups. `bindings` are the family's
/// bindings from 1 up; binding 0 (params, with `groups_x` filled in) is added here. Returns the
/// params buffer, which must outlive the submission.
pub(crate) fn record_pass(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    key: ShaderKey,
    entry: &'static str,
    workgroups: usize,
    mut params: Params,
    bindings: Vec<(u32, wgpu::BindingResource<'_>)>,
) -> Result<PooledBuffer> {
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
    let (gx, gy) = fold_grid(workgroups, max_dim).ok_or(Error::ShapeTooLarge {
        rows: params.rows as usize,
        cols: params.cols as usize,
        what: "workgroup grid",
        limit: (max_dim as u64) * (max_dim as u64),
    })?;
    params.groups_x = gx;
    let dev = &ctx.device;
    let pbuf = ctx
        .pool
        .acquire(dev, U::UNIFORM | U::COPY_DST, 48, ctx.max_binding());
    ctx.queue
        .write_buffer(pbuf.buffer(), 0, bytemuck::bytes_of(&params));
    let pipeline = ctx.pipelines.get(dev, PipelineKey { shader: key, entry })?;
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: binding(pbuf.buffer(), 48),
    }];
    entries.extend(
        bindings
            .into_iter()
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }),
    );
    let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(entry),
        layout: ctx.pipelines.bind_group_layout(key.family),
        entries: &entries,
    });
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(entry),
        timestamp_writes: None,
    });
    pass.set_pipeline(&pipeline);
    pass.set_bind_group(0, &bg, &[]);
    pass.dispatch_workgroups(gx, gy, 1);
    drop(pass);
    Ok(pbuf)
}

/// Error scopes around one submission: validation and out-of-memory errors come back as
/// [`Error`] instead of reaching wgpu's default handler (which panics).
pub(crate) struct Scopes {
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
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
