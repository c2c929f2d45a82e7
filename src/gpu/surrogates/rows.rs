//! Jobs of the row family (shaders/surrogate_rows.wgsl): one value and one gradient row per
//! row, chunked to the binding limit.

use super::params::{op, Kappa, SParams};
use super::{uniform, upload};
use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Scopes};
use crate::gpu::plan::{chunk_rows, RowSplit};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::readback::{read_f32_parts, Wait};
use crate::gpu::shaders::{Family, ShaderKey};
use crate::surrogates::Prepared;
use wgpu::BufferUsages as U;

/// A job of the row family.
pub(super) struct RowJob {
    pub(super) entry: &'static str,
    pub(super) op: u32,
    pub(super) sp: SParams,
    pub(super) kappa: Kappa,
    /// Bind the class per row.
    pub(super) class: bool,
    /// Bound as `weight`: class weights (margin) or F1's interleaved `(h, v)`.
    pub(super) weight: Option<Vec<f32>>,
}

impl RowJob {
    pub(super) fn weighted(op: u32, sp: SParams, kappa: Kappa) -> Self {
        let (s, r) = kappa.split();
        // Boltzmann's (g − f) is in quarters: the 4 goes into kappa_r (see `kappa_times`).
        let r = if op == op::BOLTZMANN { 4.0 * r } else { r };
        RowJob {
            entry: "weighted",
            op,
            sp: SParams {
                kappa: s,
                kappa_r: r,
                ..sp
            },
            kappa,
            class: false,
            weight: None,
        }
    }
}

/// Runs a row job over every chunk of rows: returns (one value per row, gradient `[B, C]`).
pub(super) async fn run_rows(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    job: &RowJob,
    wait: Wait,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (rows, cols) = (pr.rows, pr.cols);
    let mut values = vec![f32::NAN; rows];
    let mut grad = vec![0.0f32; rows * cols];
    if rows == 0 || cols == 0 {
        // No finite value in an empty row: NaN (targets cannot exist when C = 0).
        return Ok((values, grad));
    }
    let cap = ctx.max_binding();
    let chunk = chunk_rows(
        rows,
        cols,
        cap,
        ctx.limits.max_compute_workgroups_per_dimension,
    )?;
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    let block = (chunk * cols * 4) as u64;
    let mut loans = vec![
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_SRC, block, cap), // grad
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_SRC, (chunk * 4) as u64, cap), // row_out
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_DST, (chunk * 4) as u64, cap), // targets
        ctx.pool.acquire(
            dev,
            U::MAP_READ | U::COPY_DST,
            block + (chunk * 4) as u64,
            cap,
        ),
        uniform(ctx, &job.sp),
    ];
    if let Some(w) = &job.weight {
        loans.push(upload(ctx, w));
    }
    scopes.pop()?;
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = rows_chunk(ctx, x, pr, job, r0, n, &loans, &mut values, &mut grad, wait).await;
        if let Err(e) = res {
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    Ok((values, grad))
}

/// Queues the upload of rows `[r0, r0 + n)` of `x` and, when `classes` is given, of their
/// classes, to the chunk's buffers.
pub(super) fn write_chunk(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    r0: usize,
    n: usize,
    xb: &wgpu::Buffer,
    classes: Option<&wgpu::Buffer>,
) {
    let cols = pr.cols;
    ctx.queue
        .write_buffer(xb, 0, bytemuck::cast_slice(&x[r0 * cols..(r0 + n) * cols]));
    if let Some(tb) = classes {
        ctx.queue
            .write_buffer(tb, 0, bytemuck::cast_slice(&pr.class[r0..r0 + n]));
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn rows_chunk(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    job: &RowJob,
    r0: usize,
    n: usize,
    loans: &[PooledBuffer],
    values: &mut [f32],
    grad: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = pr.cols;
    let (xb, gb, rb, tb, staging, ub) = (
        loans[0].buffer(),
        loans[1].buffer(),
        loans[2].buffer(),
        loans[3].buffer(),
        loans[4].buffer(),
        loans[5].buffer(),
    );
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    let bytes = (n * cols * 4) as u64;
    write_chunk(ctx, x, pr, r0, n, xb, job.class.then_some(tb));
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/surrogate-rows"),
    });
    let split = RowSplit::whole_rows(n, cols.div_ceil(4), ctx.policy());
    let key = ShaderKey {
        family: Family::SurrogateRows,
        vec4: false,
        row_threads: split.row_threads,
        log_output: false,
        prob_targets: false,
        ce_bits: job.op,
        exp_form: job.kappa.form(),
    };
    let weight = match loans.get(6) {
        Some(w) => binding(w.buffer(), w.buffer().size()),
        None => ctx.dummy_ro.as_entire_binding(),
    };
    let params = job.kappa.params(n, cols, split.seg_len);
    let _p = record_pass(
        ctx,
        &mut encoder,
        key,
        job.entry,
        split.workgroups(n),
        params,
        vec![
            (1, binding(xb, bytes)),
            (2, binding(gb, bytes)),
            (3, ctx.dummy.as_entire_binding()),
            (4, binding(rb, (n * 4) as u64)),
            (5, binding(tb, (n * 4) as u64)),
            (6, weight),
            (7, ctx.dummy_ro.as_entire_binding()),
            (8, binding(ub, std::mem::size_of::<SParams>() as u64)),
        ],
    )?;
    encoder.copy_buffer_to_buffer(gb, 0, staging, 0, bytes);
    encoder.copy_buffer_to_buffer(rb, 0, staging, bytes, (n * 4) as u64);
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    read_f32_parts(
        ctx,
        staging,
        &mut [
            &mut grad[r0 * cols..(r0 + n) * cols],
            &mut values[r0..r0 + n],
        ],
        wait,
    )
    .await
}
