//! Recording one compute pass: its params uniform, pipeline, bind group and folded grid.
//! Shared by every dispatcher.

use super::context::Context;
use super::pipelines::PipelineKey;
use super::plan::fold_grid;
use super::pool::PooledBuffer;
use super::shaders::ShaderKey;
use crate::error::{Error, Result};
use crate::scale::ExpScale;
use std::num::NonZeroU64;
use wgpu::BufferUsages as U;

/// Mirrors `struct Params` in shaders/prelude.wgsl (80 bytes, all 4-byte fields).
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
    /// `h` of the exponent `fma(x, h, −m·h)·c` (see `crate::scale`; 2⁶⁴ for tiny `T`).
    pub exp_h: f32,
    pub neg_inf: f32,
    pub pos_inf: f32,
    pub nan: f32,
    pub x_base: u32,
    pub x_stride: u32,
    pub y_base: u32,
    /// `c = κ·log₂e/h`: `exp(κ(x − m))` is evaluated as `exp2(fma(x, h, −m·h)·c)`.
    pub exp_c: f32,
    /// `κ/h`, for log-domain outputs.
    pub exp_c_log: f32,
    /// `h` again: a second uniform of the same value (see `shifted` in the prelude).
    pub exp_h2: f32,
    /// 0 (see `keep` in the prelude).
    pub zero: u32,
    pub _pad: [u32; 2],
}

/// Size of [`Params`] in bytes.
pub(crate) const PARAMS_BYTES: u64 = std::mem::size_of::<Params>() as u64;

impl Params {
    /// For temperature `T` (the exponent's scale is `1/T`).
    pub fn new(rows: usize, cols: usize, segs: u32, seg_len: u32, temperature: f32) -> Self {
        Params::with_scale(
            rows,
            cols,
            segs,
            seg_len,
            temperature,
            &ExpScale::temperature(temperature, std::f64::consts::LOG2_E),
        )
    }

    /// With the exponent's scale given (`κ` other than `1/T`, e.g. Boltzmann's `|β|`).
    pub fn with_scale(
        rows: usize,
        cols: usize,
        segs: u32,
        seg_len: u32,
        temperature: f32,
        es: &ExpScale,
    ) -> Self {
        Params {
            rows: rows as u32,
            cols: cols as u32,
            cols_v: cols.div_ceil(4) as u32,
            segs,
            seg_len,
            groups_x: 0,
            temperature,
            exp_h: es.h,
            neg_inf: f32::NEG_INFINITY,
            pos_inf: f32::INFINITY,
            nan: f32::NAN,
            x_base: 0,
            x_stride: cols as u32,
            y_base: 0,
            exp_c: es.c,
            exp_c_log: es.c_log,
            exp_h2: es.h,
            zero: 0,
            _pad: [0; 2],
        }
    }

    /// Places x and y inside their bindings (see [`Slice`]).
    pub fn placed(mut self, x_base: u32, x_stride: usize, y_base: u32) -> Self {
        self.x_base = x_base;
        self.x_stride = x_stride as u32;
        self.y_base = y_base;
        self
    }
}

/// A region of a buffer as a kernel sees it: bound from `aligned` (a multiple of the
/// device's storage-offset alignment) for `size` bytes, with the data starting `base` elements
/// in.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Slice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub aligned: u64,
    pub size: u64,
    pub base: u32,
}

impl<'a> Slice<'a> {
    /// The region `[offset, offset + bytes)` of `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64, bytes: u64, align: u64) -> Self {
        let aligned = offset / align * align;
        let base = ((offset - aligned) / 4) as u32;
        // Binding sizes are multiples of 4 and never reach past the buffer.
        let size = (offset - aligned + bytes).div_ceil(4) * 4;
        Slice {
            buffer,
            aligned,
            size: size.min(buffer.size() - aligned),
            base,
        }
    }

    /// A buffer prefix from offset 0.
    pub fn at0(buffer: &'a wgpu::Buffer, bytes: u64) -> Self {
        Slice {
            buffer,
            aligned: 0,
            size: bytes,
            base: 0,
        }
    }

    pub fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.aligned,
            size: NonZeroU64::new(self.size.max(4)),
        })
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
    let pbuf = ctx.pool.acquire(
        dev,
        U::UNIFORM | U::COPY_DST,
        PARAMS_BYTES,
        ctx.max_binding(),
    );
    ctx.queue
        .write_buffer(pbuf.buffer(), 0, bytemuck::bytes_of(&params));
    let pipeline = ctx.pipelines.get(dev, PipelineKey { shader: key, entry })?;
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: binding(pbuf.buffer(), PARAMS_BYTES),
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
