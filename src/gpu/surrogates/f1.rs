//! The smooth F1 scores: macro F1's column sums and binary F1's sums on the host in f64
//! between two device passes.

use super::params::{op, Kappa, SParams};
use super::points::{run_pointwise, PointJob};
use super::rows::{run_rows, write_chunk, RowJob};
use super::uniform;
use crate::error::Result;
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params, Scopes, Slice};
use crate::gpu::plan::{chunk_rows, WG};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::readback::{read_f32_parts, Wait};
use crate::gpu::rows::record_rows;
use crate::gpu::shaders::{Family, ShaderKey};
use crate::ops::RowOp;
use crate::scale::ExpForm;
use crate::surrogates::{macro_f1_from_columns, matrix, output, Prepared, SurrogateOutput, Value};
use ndarray::Array2;
use wgpu::BufferUsages as U;

/// Macro F1: per chunk, softmax on the device then its column sums (`f1_columns`); the
/// per-class coefficients on the host in f64; then the gradient through `weighted` (OP 4).
pub(super) async fn macro_f1(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    t: f32,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let (rows, cols) = (pr.rows, pr.cols);
    let (mut tp, mut pred, mut count) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for &y in &pr.class {
        count[y as usize] += 1.0;
    }
    if rows > 0 && cols > 0 {
        let cap = ctx.max_binding();
        let chunk = chunk_rows(
            rows,
            cols,
            cap,
            ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        let dev = &ctx.device;
        let block = (chunk * cols * 4) as u64;
        let col_bytes = (2 * cols * 4) as u64;
        let scopes = Scopes::push(dev);
        let mut loans = vec![
            ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
            ctx.pool.acquire(dev, U::STORAGE, block, cap),               // p
            ctx.pool
                .acquire(dev, U::STORAGE | U::COPY_SRC, col_bytes, cap), // column sums
            ctx.pool
                .acquire(dev, U::STORAGE | U::COPY_DST, (chunk * 4) as u64, cap), // targets
            ctx.pool
                .acquire(dev, U::MAP_READ | U::COPY_DST, col_bytes, cap), // staging
            uniform(ctx, &SParams::default()),
        ];
        scopes.pop()?;
        let mut sums = vec![0.0f32; 2 * cols];
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk.min(rows - r0);
            let res = f1_columns_chunk(ctx, x, pr, t, r0, n, &loans, &mut sums, wait).await;
            if let Err(e) = res {
                loans.iter_mut().for_each(PooledBuffer::discard);
                return Err(e);
            }
            for k in 0..cols {
                pred[k] += sums[k] as f64;
                tp[k] += sums[cols + k] as f64;
            }
            r0 += n;
        }
    }
    let (f, coef) = macro_f1_from_columns(&tp, &pred, &count);
    if f.is_nan() {
        return Ok(output(
            Value::Scalar(f32::NAN),
            Array2::from_elem((rows, cols), f32::NAN),
        ));
    }
    let weight: Vec<f32> = coef
        .iter()
        .flat_map(|&(h, v)| [h as f32, v as f32])
        .collect();
    let sp = SParams {
        kappa: 1.0,
        sign: 1.0,
        u: 1.0,
        ..Default::default()
    };
    let mut job = RowJob::weighted(op::F1_GRAD, sp, Kappa::Temperature(t));
    job.class = true;
    job.weight = Some(weight);
    let (_, g) = run_rows(ctx, x, pr, &job, wait).await?;
    Ok(output(Value::Scalar(f as f32), matrix(g, rows, cols)?))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn f1_columns_chunk(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    t: f32,
    r0: usize,
    n: usize,
    loans: &[PooledBuffer],
    sums: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = pr.cols;
    let (xb, pb, cb, tb, staging, ub) = (
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
    write_chunk(ctx, x, pr, r0, n, xb, Some(tb));
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/f1-columns"),
    });
    let _soft = record_rows(
        ctx,
        &mut encoder,
        RowOp::Softmax,
        t,
        Slice::at0(xb, bytes),
        cols,
        Slice::at0(pb, bytes),
        n,
        cols,
    )?;
    let key = ShaderKey {
        family: Family::SurrogateRows,
        vec4: false,
        row_threads: 1,
        log_output: false,
        prob_targets: false,
        ce_bits: op::F1_COLUMNS,
        exp_form: ExpForm::Unit,
    };
    let col_bytes = (2 * cols * 4) as u64;
    let _p = record_pass(
        ctx,
        &mut encoder,
        key,
        "f1_columns",
        cols.div_ceil(WG),
        Params::new(n, cols, 1, cols.div_ceil(4) as u32, 1.0),
        vec![
            (1, binding(pb, bytes)),
            (2, ctx.dummy.as_entire_binding()),
            (3, ctx.dummy.as_entire_binding()),
            (4, binding(cb, col_bytes)),
            (5, binding(tb, (n * 4) as u64)),
            (6, ctx.dummy_ro.as_entire_binding()),
            (7, ctx.dummy_ro.as_entire_binding()),
            (8, binding(ub, std::mem::size_of::<SParams>() as u64)),
        ],
    )?;
    encoder.copy_buffer_to_buffer(cb, 0, staging, 0, col_bytes);
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    read_f32_parts(ctx, staging, &mut [sums], wait).await
}

/// Binary F1: `σ(x)` on the device (OP 30), the sums on the host in f64, then the gradient
/// on the device (OP 31).
pub(super) async fn binary_f1(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let (rows, cols) = (pr.rows, pr.cols);
    let labels = pr.labels.as_deref().unwrap_or(&[]);
    let first = PointJob {
        op: op::F1_SIGMOID,
        sp: SParams::default(),
        pairwise: false,
        values: true,
        grad: false,
    };
    let (p, _) = run_pointwise(ctx, x, labels, pr, &first, wait).await?;
    let tp: f64 = p
        .iter()
        .zip(labels)
        .map(|(&p, &y)| p as f64 * y as f64)
        .sum();
    let d: f64 =
        p.iter().map(|&p| p as f64).sum::<f64>() + labels.iter().map(|&y| y as f64).sum::<f64>();
    if d.is_nan() {
        return Ok(output(
            Value::Scalar(f32::NAN),
            Array2::from_elem((rows, cols), f32::NAN),
        ));
    }
    if d == 0.0 {
        return Ok(output(Value::Scalar(0.0), Array2::zeros((rows, cols))));
    }
    let f = 2.0 * tp / d;
    let second = PointJob {
        op: op::F1_BINARY_GRAD,
        sp: SParams {
            f1: f as f32,
            inv_d: (1.0 / d) as f32,
            ..Default::default()
        },
        pairwise: false,
        values: false,
        grad: true,
    };
    let (_, g) = run_pointwise(ctx, x, labels, pr, &second, wait).await?;
    Ok(output(Value::Scalar(f as f32), matrix(g, rows, cols)?))
}
