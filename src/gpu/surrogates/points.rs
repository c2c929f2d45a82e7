//! Jobs of the pointwise family (shaders/pointwise.wgsl): one value and gradient per element
//! (two gradients for the pairwise max), chunked to the binding limit.

use super::params::{SParams, FLAG_POS_WEIGHT, FLAG_WEIGHT};
use super::{uniform, upload};
use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params, Scopes};
use crate::gpu::plan::{chunk_rows, WG};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::readback::{read_f32_parts, Wait};
use crate::gpu::shaders::{Family, ShaderKey};
use crate::scale::ExpForm;
use crate::surrogates::Prepared;
use wgpu::BufferUsages as U;

/// A job of the pointwise family.
pub(super) struct PointJob {
    pub(super) op: u32,
    pub(super) sp: SParams,
    /// Gradients for both inputs (`grad` holds `2n` floats).
    pub(super) pairwise: bool,
    /// Read back the per-element values.
    pub(super) values: bool,
    /// Read back the gradient.
    pub(super) grad: bool,
}

/// Runs a pointwise job over every chunk of rows: returns (values, gradient), each empty when
/// not asked for; for the pairwise max the gradient is `d/da` then `d/db`.
pub(super) async fn run_pointwise(
    ctx: &Context,
    x: &[f32],
    b: &[f32],
    pr: &Prepared,
    job: &PointJob,
    wait: Wait,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (rows, cols) = (pr.rows, pr.cols);
    let total = rows * cols;
    let gmul = if job.pairwise { 2 } else { 1 };
    let mut values = if job.values {
        vec![0.0f32; total]
    } else {
        vec![]
    };
    let mut grad = if job.grad {
        vec![0.0f32; total * gmul]
    } else {
        vec![]
    };
    if total == 0 {
        return Ok((values, grad));
    }
    let cap = ctx.max_binding();
    // The gradient buffer of a pairwise chunk holds two blocks: chunk against twice the row.
    let chunk = chunk_rows(
        rows,
        cols * gmul,
        cap,
        ctx.limits.max_compute_workgroups_per_dimension,
    )?;
    let dev = &ctx.device;
    let block = (chunk * cols * 4) as u64;
    let scopes = Scopes::push(dev);
    let mut loans = vec![
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // b
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_SRC, block, cap), // values
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_SRC, block * gmul as u64, cap), // grad
        ctx.pool.acquire(
            dev,
            U::MAP_READ | U::COPY_DST,
            block * (1 + gmul as u64),
            cap,
        ),
    ];
    let weight = pr
        .weight
        .as_ref()
        .filter(|_| job.sp.flags & FLAG_WEIGHT != 0)
        .map(|_| ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap));
    let pos_weight = pr
        .pos_weight
        .as_ref()
        .filter(|_| job.sp.flags & FLAG_POS_WEIGHT != 0)
        .map(|pw| upload(ctx, pw));
    scopes.pop()?;
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = point_chunk(
            ctx,
            x,
            b,
            pr,
            job,
            r0,
            n,
            &loans,
            weight.as_ref(),
            pos_weight.as_ref(),
            &mut values,
            &mut grad,
            wait,
        )
        .await;
        if let Err(e) = res {
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    Ok((values, grad))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn point_chunk(
    ctx: &Context,
    x: &[f32],
    b: &[f32],
    pr: &Prepared,
    job: &PointJob,
    r0: usize,
    rows: usize,
    loans: &[PooledBuffer],
    weight: Option<&PooledBuffer>,
    pos_weight: Option<&PooledBuffer>,
    values: &mut [f32],
    grad: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = pr.cols;
    let (e0, n) = (r0 * cols, rows * cols);
    let total = pr.rows * cols;
    let bytes = (n * 4) as u64;
    let (xb, bb, vb, gb, staging) = (
        loans[0].buffer(),
        loans[1].buffer(),
        loans[2].buffer(),
        loans[3].buffer(),
        loans[4].buffer(),
    );
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    ctx.queue
        .write_buffer(xb, 0, bytemuck::cast_slice(&x[e0..e0 + n]));
    ctx.queue
        .write_buffer(bb, 0, bytemuck::cast_slice(&b[e0..e0 + n]));
    if let (Some(wb), Some(w)) = (weight, pr.weight.as_ref()) {
        ctx.queue
            .write_buffer(wb.buffer(), 0, bytemuck::cast_slice(&w[e0..e0 + n]));
    }
    let sp = SParams {
        n: n as u32,
        ..job.sp
    };
    let ub = uniform(ctx, &sp);
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/pointwise"),
    });
    let key = ShaderKey {
        family: Family::Pointwise,
        vec4: false,
        row_threads: 1,
        log_output: false,
        prob_targets: false,
        ce_bits: job.op,
        exp_form: ExpForm::Unit,
    };
    let gmul = if job.pairwise { 2 } else { 1 };
    let _p = record_pass(
        ctx,
        &mut encoder,
        key,
        "pointwise",
        n.div_ceil(WG),
        Params::new(rows, cols, 1, 1, 1.0),
        vec![
            (1, binding(xb, bytes)),
            (2, binding(vb, bytes)),
            (3, ctx.dummy.as_entire_binding()),
            (4, binding(bb, bytes)),
            (5, binding(gb, bytes * gmul)),
            (
                6,
                weight.map_or(ctx.dummy_ro.as_entire_binding(), |w| {
                    binding(w.buffer(), bytes)
                }),
            ),
            (
                7,
                pos_weight.map_or(ctx.dummy_ro.as_entire_binding(), |p| {
                    binding(p.buffer(), (cols * 4) as u64)
                }),
            ),
            (
                8,
                binding(ub.buffer(), std::mem::size_of::<SParams>() as u64),
            ),
        ],
    )?;
    let mut at = 0;
    if job.values {
        encoder.copy_buffer_to_buffer(vb, 0, staging, 0, bytes);
        at += bytes;
    }
    if job.grad {
        encoder.copy_buffer_to_buffer(gb, 0, staging, at, bytes * gmul);
    }
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    let mut parts: Vec<&mut [f32]> = Vec::new();
    if job.values {
        parts.push(&mut values[e0..e0 + n]);
    }
    if job.grad {
        // Pairwise: d/da of this chunk, then d/db, to their places in [d/da | d/db].
        let (ga, gb) = grad.split_at_mut(total.min(grad.len()));
        parts.push(&mut ga[e0..e0 + n]);
        if job.pairwise {
            parts.push(&mut gb[e0..e0 + n]);
        }
    }
    read_f32_parts(ctx, staging, &mut parts, wait).await
}
