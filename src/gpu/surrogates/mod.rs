//! The dispatcher for the surrogates: checks inputs on the host (shared with the other
//! backends), chunks rows to the binding limit, records `weighted` / `margin` / `f1_columns`
//! (shaders/surrogate_rows.wgsl) or `pointwise` (shaders/pointwise.wgsl), reads back, and
//! does the batch reductions in f64 on the host. `rows` and `points` run the two kernel
//! families over chunks of rows, `f1` the two-pass F1 scores, `params` holds what the kernels
//! are told.

use super::context::Context;
use super::pool::PooledBuffer;
use super::readback::Wait;
use crate::error::Result;
use crate::surrogates::{
    flat, grad_scale, matrix, output, prepare, reduce, Surrogate, SurrogateOutput, Value,
};
use ndarray::Array1;
use wgpu::BufferUsages as U;

mod f1;
mod params;
mod points;
mod rows;

use f1::{binary_f1, macro_f1};
use params::{binary_op, op, pairwise_op, Kappa, SParams, FLAG_POS_WEIGHT, FLAG_WEIGHT};
use points::{run_pointwise, PointJob};
use rows::{run_rows, RowJob};

/// Runs one surrogate call on the GPU.
pub(crate) async fn surrogate(
    ctx: &Context,
    call: &Surrogate<'_>,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let pr = prepare(call)?;
    ctx.check_alive()?;
    let (rows, cols) = (pr.rows, pr.cols);
    let res = match call {
        Surrogate::BoltzmannMax { x, beta } => {
            let c = x.as_standard_layout();
            let sp = SParams {
                kappa: beta.abs(),
                sign: if *beta < 0.0 { -1.0 } else { 1.0 },
                a: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = RowJob::weighted(op::BOLTZMANN, sp, Kappa::Beta(beta.abs()));
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            output(Value::PerRow(Array1::from(v)), matrix(g, rows, cols)?)
        }
        Surrogate::SoftArgmax { x, temperature } => {
            let c = x.as_standard_layout();
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = RowJob::weighted(op::SOFT_ARGMAX, sp, Kappa::Temperature(*temperature));
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            output(Value::PerRow(Array1::from(v)), matrix(g, rows, cols)?)
        }
        Surrogate::SmoothAccuracy {
            logits,
            temperature,
            ..
        } => {
            let c = logits.as_standard_layout();
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0 / rows as f32,
                ..Default::default()
            };
            let mut job = RowJob::weighted(op::ACCURACY, sp, Kappa::Temperature(*temperature));
            job.class = true;
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            let a = reduce(&v, crate::Reduction::Mean).unwrap_or(f32::NAN);
            output(Value::Scalar(a), matrix(g, rows, cols)?)
        }
        Surrogate::SmoothF1Macro {
            logits,
            temperature,
            ..
        } => {
            let c = logits.as_standard_layout();
            macro_f1(ctx, flat(&c)?, &pr, *temperature, wait).await?
        }
        Surrogate::SmoothF1Binary { logits, .. } => {
            let c = logits.as_standard_layout();
            binary_f1(ctx, flat(&c)?, &pr, wait).await?
        }
        Surrogate::MultiMargin {
            logits, options, ..
        } => {
            let c = logits.as_standard_layout();
            let sp = SParams {
                margin: options.margin,
                p: options.p,
                u: grad_scale(options.reduction, rows),
                flags: if pr.weight.is_some() { FLAG_WEIGHT } else { 0 },
                ..Default::default()
            };
            let job = RowJob {
                entry: "margin",
                op: op::MARGIN,
                sp,
                kappa: Kappa::Temperature(1.0),
                class: true,
                weight: pr.weight.clone(),
            };
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            let value = match reduce(&v, options.reduction) {
                Some(s) => Value::Scalar(s),
                None => Value::PerRow(Array1::from(v)),
            };
            output(value, matrix(g, rows, cols)?)
        }
        Surrogate::PairwiseMax { a, b, form } => {
            let (ca, cb) = (a.as_standard_layout(), b.as_standard_layout());
            let sp = SParams {
                kappa: form.parameter(),
                ..Default::default()
            };
            let job = PointJob {
                op: pairwise_op(*form),
                sp,
                pairwise: true,
                values: true,
                grad: true,
            };
            let (v, g) = run_pointwise(ctx, flat(&ca)?, flat(&cb)?, &pr, &job, wait).await?;
            let n = rows * cols;
            let (ga, gb) = g.split_at(n);
            SurrogateOutput {
                value: Value::Matrix(matrix(v, rows, cols)?),
                grad: matrix(ga.to_vec(), rows, cols)?,
                grad_b: Some(matrix(gb.to_vec(), rows, cols)?),
            }
        }
        Surrogate::Binary {
            logits,
            loss,
            options,
            ..
        } => {
            let c = logits.as_standard_layout();
            let mut flags = 0;
            if pr.weight.is_some() {
                flags |= FLAG_WEIGHT;
            }
            if pr.pos_weight.is_some() {
                flags |= FLAG_POS_WEIGHT;
            }
            let sp = SParams {
                flags,
                u: grad_scale(options.reduction, rows * cols),
                ..Default::default()
            };
            let job = PointJob {
                op: binary_op(*loss),
                sp,
                pairwise: false,
                values: true,
                grad: true,
            };
            let labels = pr.labels.as_deref().unwrap_or(&[]);
            let (l, g) = run_pointwise(ctx, flat(&c)?, labels, &pr, &job, wait).await?;
            let value = match reduce(&l, options.reduction) {
                Some(s) => Value::Scalar(s),
                None => Value::Matrix(matrix(l, rows, cols)?),
            };
            output(value, matrix(g, rows, cols)?)
        }
    };
    ctx.check_uncaptured()?;
    Ok(res)
}

fn upload(ctx: &Context, data: &[f32]) -> PooledBuffer {
    let b = ctx.pool.acquire(
        &ctx.device,
        U::STORAGE | U::COPY_DST,
        (data.len().max(1) * 4) as u64,
        ctx.max_binding(),
    );
    ctx.queue
        .write_buffer(b.buffer(), 0, bytemuck::cast_slice(data));
    b
}

fn uniform(ctx: &Context, sp: &SParams) -> PooledBuffer {
    let b = ctx.pool.acquire(
        &ctx.device,
        U::UNIFORM | U::COPY_DST,
        std::mem::size_of::<SParams>() as u64,
        ctx.max_binding(),
    );
    ctx.queue
        .write_buffer(b.buffer(), 0, bytemuck::bytes_of(sp));
    b
}
