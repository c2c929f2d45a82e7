//! Recording one compute pass: its params uniform, pipeline, bind group and folded grid.
//! Shared by every dispatcher.

use super::context::Context;
pub(crate) use super::kernel::uniforms::Params;
use super::kernel::uniforms::PARAMS_BYTES;
use super::kernel::{BindingKind, Kernel, Slot};
use super::pool::PooledBuffer;
use super::split::fold_grid;
use crate::error::{Error, Result};
use std::num::NonZeroU64;
use wgpu::BufferUsages as U;

/// A region of a buffer as a kernel sees it: bound from `aligned` (a multiple of the
/// device's storage-offset alignment) for `size` bytes, with the data starting `base` elements
/// (of the region's element size) in.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Slice<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub aligned: u64,
    pub size: u64,
    pub base: u32,
}

impl<'a> Slice<'a> {
    /// The region `[offset, offset + bytes)` of `buffer`, of `elem`-byte elements.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64, bytes: u64, align: u64, elem: usize) -> Self {
        let aligned = offset / align * align;
        let base = ((offset - aligned) / elem as u64) as u32;
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

/// Records one dispatch of `kernel` over `workgroups` workgroups. `bindings` name the slots
/// the pass uses; `params` (with `groups_x` filled in here) is bound to [`Slot::Params`], and
/// every other slot of the family gets a dummy buffer of its kind. Returns the params buffer,
/// which must outlive the submission.
pub(crate) fn record_pass(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: Kernel,
    workgroups: usize,
    mut params: Params,
    bindings: Vec<(Slot, wgpu::BindingResource<'_>)>,
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
    let pbuf = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&params))?;
    let pipeline = ctx.pipelines.get(dev, kernel)?;
    let family = kernel.family;
    let mut given: Vec<(Slot, wgpu::BindingResource<'_>)> = bindings;
    given.push((Slot::Params, binding(pbuf.buffer(), PARAMS_BYTES)));
    let mut entries = Vec::with_capacity(family.slots().len());
    for &(slot, number, kind) in family.slots() {
        let resource = match given.iter().position(|(s, _)| *s == slot) {
            Some(i) => given.swap_remove(i).1,
            None => match kind {
                BindingKind::Storage => ctx.dummy.as_entire_binding(),
                BindingKind::ReadOnly => ctx.dummy_ro.as_entire_binding(),
                BindingKind::Uniform => {
                    return Err(Error::Validation(format!(
                        "{}: uniform slot {slot:?} not bound",
                        kernel.label()
                    )))
                }
            },
        };
        entries.push(wgpu::BindGroupEntry {
            binding: number,
            resource,
        });
    }
    if let Some((slot, _)) = given.first() {
        return Err(Error::Validation(format!(
            "{}: the family has no slot {slot:?}",
            kernel.label()
        )));
    }
    let label = kernel.entry.name();
    let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: ctx.pipelines.bind_group_layout(family),
        entries: &entries,
    });
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    pass.set_pipeline(&pipeline);
    pass.set_bind_group(0, &bg, &[]);
    pass.dispatch_workgroups(gx, gy, 1);
    drop(pass);
    Ok(pbuf)
}
