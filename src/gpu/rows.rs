//! The dispatcher for the row ops (logsumexp, softmax, log-softmax): chunks rows to the
//! binding limit, picks the split and the shader variants, records the passes, reads back.

use super::context::Context;
use super::pipelines::PipelineKey;
use super::plan::{chunk_rows, fold_grid, RowSplit, WG};
use super::pool::PooledBuffer;
use super::readback::read_f32;
use super::shaders::{Family, ShaderKey};
use crate::error::{Error, Result};
use crate::ops::{check_temperature, RowOp, RowOutput};
use ndarray::{Array1, Array2, ArrayView2};
use std::num::NonZeroU64;
use wgpu::BufferUsages as U;

/// Mirrors `struct Params` in shaders/prelude.wgsl (48 bytes, all 4-byte fields).
#[repr(C)]
#[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    cols_v: u32,
    segs: u32,
    seg_len: u32,
    groups_x: u32,
    temperature: f32,
    inv_temperature: f32,
    neg_inf: f32,
    pos_inf: f32,
    nan: f32,
    _pad: u32,
}

/// What the outputs of an empty matrix are, with no device work: `C = 0` rows have
/// logsumexp −inf (the empty sum is 0) and empty (log-)softmax rows.
fn empty_output(op: RowOp, rows: usize, cols: usize) -> RowOutput {
    match op {
        RowOp::LogSumExp => RowOutput::PerRow(Array1::from_elem(rows, f32::NEG_INFINITY)),
        _ => RowOutput::Matrix(Array2::zeros((rows, cols))),
    }
}

fn binding(buf: &wgpu::Buffer, bytes: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset: 0,
        size: NonZeroU64::new(bytes.max(4)),
    })
}

/// Runs one row op on the GPU and reads the result back.
pub(crate) fn row_op(ctx: &Context, op: RowOp, x: ArrayView2<f32>, t: f32) -> Result<RowOutput> {
    check_temperature(t)?;
    ctx.check_alive()?;
    let (rows, cols) = x.dim();
    if rows == 0 || cols == 0 {
        return Ok(empty_output(op, rows, cols));
    }
    let x = x.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
    let cap = ctx.max_binding();
    let chunk = chunk_rows(rows, cols, cap, max_dim)?;
    let out_cols = if op == RowOp::LogSumExp { 1 } else { cols };
    let mut out = vec![0.0f32; rows * out_cols];

    let pool = &ctx.pool;
    let dev = &ctx.device;
    let xbuf = pool.acquire(
        dev,
        U::STORAGE | U::COPY_DST,
        (chunk * cols * 4) as u64,
        cap,
    );
    let ybuf = pool.acquire(
        dev,
        U::STORAGE | U::COPY_SRC,
        (chunk * out_cols * 4) as u64,
        cap,
    );
    let staging = pool.acquire(
        dev,
        U::MAP_READ | U::COPY_DST,
        (chunk * out_cols * 4) as u64,
        cap,
    );
    let mut loans = vec![xbuf, ybuf, staging];

    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = run_chunk(
            ctx,
            op,
            &xs[r0 * cols..(r0 + n) * cols],
            &mut out[r0 * out_cols..(r0 + n) * out_cols],
            n,
            cols,
            t,
            &loans,
        );
        if let Err(e) = res {
            // State of these buffers is unknown after a failure: do not reuse them.
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    ctx.check_uncaptured()?;
    Ok(match op {
        RowOp::LogSumExp => RowOutput::PerRow(Array1::from_vec(out)),
        _ => RowOutput::Matrix(
            Array2::from_shape_vec((rows, cols), out)
                .map_err(|e| Error::InvalidInput(e.to_string()))?,
        ),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_chunk(
    ctx: &Context,
    op: RowOp,
    x: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    t: f32,
    loans: &[PooledBuffer],
) -> Result<()> {
    let (xbuf, ybuf, staging) = (loans[0].buffer(), loans[1].buffer(), loans[2].buffer());
    let dev = &ctx.device;
    let cap = ctx.max_binding();
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
    let vec4 = cols % 4 == 0;
    let cols_v = cols.div_ceil(4);
    let split = RowSplit::new(rows, cols_v);
    let in_bytes = (rows * cols * 4) as u64;
    let out_bytes = (out.len() * 4) as u64;

    let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = dev.push_error_scope(wgpu::ErrorFilter::Validation);

    let part_bytes = (rows * split.segs as usize * 16) as u64;
    let partials = (split.segs > 1).then(|| ctx.pool.acquire(dev, U::STORAGE, part_bytes, cap));
    let part_buf = partials.as_ref().map(|p| p.buffer()).unwrap_or(&ctx.dummy);

    ctx.queue.write_buffer(xbuf, 0, bytemuck::cast_slice(x));

    // Passes: (family, entry, row_threads, log_output, workgroups). The first pass of a split
    // row is always the logsumexp family's `stats`.
    let log = op == RowOp::LogSoftmax;
    let rt = split.row_threads;
    let main_wgs = split.workgroups(rows);
    let merge_wgs = rows.div_ceil(WG);
    let passes: Vec<(Family, &'static str, u32, usize)> = match (op, split.segs) {
        (RowOp::LogSumExp, 1) => vec![(Family::LogSumExp, "stats", rt, main_wgs)],
        (RowOp::LogSumExp, _) => vec![
            (Family::LogSumExp, "stats", rt, main_wgs),
            (Family::LogSumExp, "lse_merge", 1, merge_wgs),
        ],
        (_, 1) => vec![(Family::Softmax, "fused", rt, main_wgs)],
        (_, _) => vec![
            (Family::LogSumExp, "stats", rt, main_wgs),
            (Family::Softmax, "write", rt, main_wgs),
        ],
    };

    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/rows"),
    });
    let mut param_loans = Vec::new();
    for &(family, entry, row_threads, wgs) in &passes {
        let (gx, gy) = fold_grid(wgs, max_dim).ok_or(Error::ShapeTooLarge {
            rows,
            cols,
            what: "workgroup grid",
            limit: (max_dim as u64) * (max_dim as u64),
        })?;
        let params = Params {
            rows: rows as u32,
            cols: cols as u32,
            cols_v: cols_v as u32,
            segs: split.segs,
            seg_len: split.seg_len,
            groups_x: gx,
            temperature: t,
            inv_temperature: 1.0 / t,
            neg_inf: f32::NEG_INFINITY,
            pos_inf: f32::INFINITY,
            nan: f32::NAN,
            _pad: 0,
        };
        let pbuf = ctx.pool.acquire(dev, U::UNIFORM | U::COPY_DST, 48, cap);
        ctx.queue
            .write_buffer(pbuf.buffer(), 0, bytemuck::bytes_of(&params));
        let key = ShaderKey {
            family,
            vec4,
            row_threads,
            log_output: log,
        };
        let pipeline = ctx.pipelines.get(dev, PipelineKey { shader: key, entry })?;
        let lse_out = op == RowOp::LogSumExp;
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: binding(pbuf.buffer(), 48),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: binding(xbuf, in_bytes),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: if lse_out {
                    ctx.dummy.as_entire_binding()
                } else {
                    binding(ybuf, out_bytes)
                },
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: if split.segs > 1 {
                    binding(part_buf, part_bytes)
                } else {
                    ctx.dummy.as_entire_binding()
                },
            },
        ];
        if family == Family::LogSumExp {
            entries.push(wgpu::BindGroupEntry {
                binding: 4,
                resource: if lse_out {
                    binding(ybuf, out_bytes)
                } else {
                    ctx.dummy.as_entire_binding()
                },
            });
        }
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("smoothmax/rows"),
            layout: ctx.pipelines.bind_group_layout(family),
            entries: &entries,
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        param_loans.push(pbuf);
    }
    encoder.copy_buffer_to_buffer(ybuf, 0, staging, 0, out_bytes);
    ctx.queue.submit([encoder.finish()]);

    let v = pollster::block_on(validation.pop());
    let o = pollster::block_on(oom.pop());
    if let Some(e) = v {
        return Err(Error::Validation(e.to_string()));
    }
    if let Some(e) = o {
        return Err(Error::OutOfMemory(e.to_string()));
    }
    read_f32(ctx, staging, out)
}
