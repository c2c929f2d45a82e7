//! The smooth F1 scores: two device passes with sums on the host in f64 between them (macro
//! F1's column sums, binary F1's `Σ p·y` and `Σ (p + y)`).

use super::output::Raw;
use super::params::Kappa;
use super::points::PointJob;
use super::rows::RowJob;
use crate::error::{Error, Result};
use crate::gpu::context::Context;
use crate::gpu::io::{HostRows, In, Out, Place};
use crate::gpu::kernel::uniforms::SParams;
use crate::gpu::kernel::{Entry, SurrogateOp};
use crate::gpu::launch::Mode;
use crate::surrogates::{macro_f1_from_columns, Prepared, Value};
use ndarray::ArrayView2;

/// The host sums between the passes cannot be recorded into an encoder.
fn streamed_only(mode: &Mode) -> Result<()> {
    match mode {
        Mode::Stream(_) => Ok(()),
        Mode::Record(_) => Err(Error::InvalidInput(
            "smooth F1 reads its sums back between its two passes: run it, it cannot be \
             recorded into an encoder"
                .into(),
        )),
    }
}

/// Macro F1: per chunk, softmax on the device then its column sums (`f1_columns`); the
/// per-class coefficients on the host in f64; then the gradient through `weighted`
/// (`F1Grad`).
pub(super) async fn macro_f1(
    ctx: &Context,
    x: &In<'_>,
    pr: &Prepared,
    t: f32,
    place: Place,
    mut mode: Mode<'_>,
) -> Result<Raw> {
    streamed_only(&mode)?;
    let (rows, cols) = (pr.rows, pr.cols);
    let mut count = vec![0.0; cols];
    for &y in &pr.class {
        count[y as usize] += 1.0;
    }
    let (mut pred, mut tp) = (vec![0.0; cols], vec![0.0; cols]);
    if rows > 0 && cols > 0 {
        let job = RowJob::new(
            ctx,
            Entry::F1Columns,
            SurrogateOp::F1Columns,
            Kappa::Temperature(t),
            cols,
            SParams::default(),
            None,
        )?;
        (pred, tp) = job.column_sums(ctx, x, &pr.class, mode.reborrow()).await?;
    }
    let (f, coef) = macro_f1_from_columns(&tp, &pred, &count);
    let mut grad = Out::new(ctx, place, rows, cols, f32::NAN)?;
    if f.is_nan() || rows == 0 || cols == 0 {
        // NaN everywhere (a NaN row reached the sums), or nothing to compute.
        fill(ctx, &mut grad, f32::NAN)?;
        return Ok(Raw::done(Value::Scalar(f as f32), grad));
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
    let job = RowJob::weighted(
        ctx,
        SurrogateOp::F1Grad,
        sp,
        Kappa::Temperature(t),
        cols,
        Some(&weight),
    )?;
    let mut values = Out::new(ctx, Place::Host, rows, 1, f32::NAN)?;
    job.run(ctx, x, Some(&pr.class), &mut grad, &mut values, mode)
        .await?;
    Ok(Raw::done(Value::Scalar(f as f32), grad))
}

/// Binary F1: `σ(x)` on the device (`F1Sigmoid`), the sums on the host in f64, then the
/// gradient on the device (`F1BinaryGrad`).
pub(super) async fn binary_f1(
    ctx: &Context,
    x: &In<'_>,
    pr: &Prepared,
    place: Place,
    mut mode: Mode<'_>,
) -> Result<Raw> {
    streamed_only(&mode)?;
    let (rows, cols) = (pr.rows, pr.cols);
    let labels = pr.labels.as_deref().unwrap_or(&[]);
    let y = ArrayView2::from_shape((rows, cols), labels)
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let y = In::new(y.into());
    let mut p = Out::new(ctx, Place::Host, rows, cols, 0.0)?;
    let first = PointJob::new(ctx, SurrogateOp::F1Sigmoid, SParams::default(), cols, None)?;
    first
        .run(
            ctx,
            x,
            &y,
            None,
            (Some(&mut p), None, None),
            mode.reborrow(),
        )
        .await?;
    let p = p.host_data();
    let tp: f64 = p
        .iter()
        .zip(labels)
        .map(|(&p, &y)| p as f64 * y as f64)
        .sum();
    let d: f64 =
        p.iter().map(|&p| p as f64).sum::<f64>() + labels.iter().map(|&y| y as f64).sum::<f64>();
    let mut grad = Out::new(ctx, place, rows, cols, 0.0)?;
    if d.is_nan() {
        fill(ctx, &mut grad, f32::NAN)?;
        return Ok(Raw::done(Value::Scalar(f32::NAN), grad));
    }
    if d == 0.0 {
        fill(ctx, &mut grad, 0.0)?;
        return Ok(Raw::done(Value::Scalar(0.0), grad));
    }
    let f = 2.0 * tp / d;
    let sp = SParams {
        f1: f as f32,
        inv_d: (1.0 / d) as f32,
        ..Default::default()
    };
    let second = PointJob::new(ctx, SurrogateOp::F1BinaryGrad, sp, cols, None)?;
    second
        .run(ctx, x, &y, None, (None, Some(&mut grad), None), mode)
        .await?;
    Ok(Raw::done(Value::Scalar(f as f32), grad))
}

/// Sets every element of an output that no kernel writes.
fn fill(ctx: &Context, out: &mut Out, v: f32) -> Result<()> {
    match out {
        Out::Host {
            data: HostRows::F32(data),
            ..
        } => {
            data.iter_mut().for_each(|d| *d = v);
            Ok(())
        }
        Out::Host { .. } => Err(Error::InvalidInput(
            "internal: a half surrogate output".into(),
        )),
        Out::Device(m) => m.fill(ctx, v),
    }
}
