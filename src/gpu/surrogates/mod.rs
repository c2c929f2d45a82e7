//! The surrogates on the GPU: inputs checked on the host (shared with the other backends),
//! the kernels run through the one launch path (`rows`: the row family; `points`: the
//! pointwise family; `f1`: the two-pass F1 scores), and the batch reductions done in f64 on
//! the host from what the kernels leave ([`Raw`], finished by `finish_host` or
//! `finish_device`).

mod f1;
mod params;
mod points;
mod rows;

use super::call::GpuInput;
use super::context::Context;
use super::io::{In, Matrix, Out, Place};
use super::kernel::uniforms::SParams;
use super::kernel::{sp_flag, SurrogateOp};
use super::launch::Mode;
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::Wait;
use super::Gpu;
use crate::cross_entropy::Reduction;
use crate::error::{Error, Result};
use crate::surrogates::{grad_scale, prepare, reduce, Surrogate, SurrogateOutput, Value};
use f1::{binary_f1, macro_f1};
use ndarray::{Array1, Array2};
use params::{binary_op, pairwise_op, Kappa};
use points::PointJob;
use rows::RowJob;

/// How a surrogate's value is made from what its kernels wrote.
#[derive(Copy, Clone, Debug)]
enum Fold {
    /// Kept as written (one per row or per element).
    Keep,
    /// Reduced on the host in f64.
    Reduce(Reduction),
}

/// What the kernels leave: the value (computed on the host already, or per row / per element
/// to fold) and the gradients, each on the host or the device.
pub struct Raw {
    value: RawValue,
    grad: Out,
    grad_b: Option<Out>,
}

enum RawValue {
    Done(Value),
    /// `[B, 1]` per-row values.
    Rows(Out, Fold),
    /// `[B, C]` per-element values.
    Elements(Out, Fold),
}

impl Raw {
    fn done(value: Value, grad: Out) -> Self {
        Raw {
            value: RawValue::Done(value),
            grad,
            grad_b: None,
        }
    }
}

/// A surrogate's results with the gradients (and per-element values) left on the device.
#[derive(Clone, Debug)]
pub struct DeviceSurrogateOutput {
    /// The value: a scalar or one per row (read back), or one per element (on the device).
    pub value: DeviceValue,
    /// The gradient with respect to the (first) input, `[B, C]`.
    pub grad: GpuMatrix,
    /// The pairwise max's gradient with respect to `b`.
    pub grad_b: Option<GpuMatrix>,
}

/// A surrogate's value when its outputs stay on the device.
#[derive(Clone, Debug)]
pub enum DeviceValue {
    /// A reduced value (read back).
    Scalar(f32),
    /// One value per row (read back).
    PerRow(Array1<f32>),
    /// One value per element, on the device.
    Matrix(GpuMatrix),
}

/// Runs one surrogate call: its outputs go to `place` (in a recorded `mode`, to the device).
pub(crate) async fn surrogate<M>(
    ctx: &Context,
    call: &Surrogate<'_, M>,
    place: Place,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Raw>
where
    M: GpuInput,
{
    let pr = prepare(call)?;
    ctx.check_alive()?;
    let place = mode.place(place);
    let (rows, cols) = (pr.rows, pr.cols);
    // Per-row values are small: read back when the call streams, whatever `place` says.
    let row_place = mode.place(Place::Host);
    let new = |cols| Out::new(ctx, place, rows, cols, f32::NAN);
    let weighted = |op, sp, kappa| RowJob::weighted(ctx, op, sp, kappa, cols, None);
    let res = match *call {
        Surrogate::BoltzmannMax { x, beta } => {
            let sp = SParams {
                kappa: beta.abs(),
                sign: if beta < 0.0 { -1.0 } else { 1.0 },
                a: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = weighted(SurrogateOp::Boltzmann, sp, Kappa::Beta(beta.abs()));
            row_values(
                ctx,
                &job,
                x.matrix(),
                None,
                new(cols)?,
                row_place,
                Fold::Keep,
                mode,
                keep,
            )
            .await?
        }
        Surrogate::SoftArgmax { x, temperature } => {
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = weighted(SurrogateOp::SoftArgmax, sp, Kappa::Temperature(temperature));
            row_values(
                ctx,
                &job,
                x.matrix(),
                None,
                new(cols)?,
                row_place,
                Fold::Keep,
                mode,
                keep,
            )
            .await?
        }
        Surrogate::SmoothAccuracy {
            logits,
            temperature,
            ..
        } => {
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0 / rows as f32,
                ..Default::default()
            };
            let job = weighted(SurrogateOp::Accuracy, sp, Kappa::Temperature(temperature));
            let fold = Fold::Reduce(Reduction::Mean);
            let classes = Some(&pr.class[..]);
            row_values(
                ctx,
                &job,
                logits.matrix(),
                classes,
                new(cols)?,
                row_place,
                fold,
                mode,
                keep,
            )
            .await?
        }
        Surrogate::SmoothF1Macro {
            logits,
            temperature,
            ..
        } => {
            macro_f1(
                ctx,
                &In::new(logits.matrix()),
                &pr,
                temperature,
                place,
                mode,
            )
            .await?
        }
        Surrogate::SmoothF1Binary { logits, .. } => {
            binary_f1(ctx, &In::new(logits.matrix()), &pr, place, mode).await?
        }
        Surrogate::MultiMargin {
            logits,
            ref options,
            ..
        } => {
            let sp = SParams {
                margin: options.margin,
                p: options.p,
                u: grad_scale(options.reduction, rows),
                flags: if pr.weight.is_some() {
                    sp_flag::WEIGHT
                } else {
                    0
                },
                ..Default::default()
            };
            let job = RowJob::new(
                ctx,
                super::kernel::Entry::Margin,
                SurrogateOp::Margin,
                Kappa::Temperature(1.0),
                cols,
                sp,
                pr.weight.as_deref(),
            );
            let fold = Fold::Reduce(options.reduction);
            let classes = Some(&pr.class[..]);
            row_values(
                ctx,
                &job,
                logits.matrix(),
                classes,
                new(cols)?,
                row_place,
                fold,
                mode,
                keep,
            )
            .await?
        }
        Surrogate::PairwiseMax { a, b, form } => {
            let sp = SParams {
                kappa: form.parameter(),
                ..Default::default()
            };
            let (a, b) = (In::new(a.matrix()), In::new(b.matrix()));
            let job = PointJob::new(ctx, pairwise_op(form), sp, cols, None);
            let (mut v, mut ga, mut gb) = (new(cols)?, new(cols)?, new(cols)?);
            let k = job
                .run(
                    ctx,
                    &a,
                    &b,
                    None,
                    Some(&mut v),
                    Some(&mut ga),
                    Some(&mut gb),
                    mode,
                )
                .await?;
            keep.extend(k);
            Raw {
                value: RawValue::Elements(v, Fold::Keep),
                grad: ga,
                grad_b: Some(gb),
            }
        }
        Surrogate::Binary {
            logits,
            loss,
            ref options,
            ..
        } => {
            let mut flags = 0;
            if pr.weight.is_some() {
                flags |= sp_flag::WEIGHT;
            }
            if pr.pos_weight.is_some() {
                flags |= sp_flag::POS_WEIGHT;
            }
            let sp = SParams {
                flags,
                u: grad_scale(options.reduction, rows * cols),
                ..Default::default()
            };
            let labels = pr.labels.as_deref().unwrap_or(&[]);
            let labels = ndarray::ArrayView2::from_shape((rows, cols), labels)
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            let (x, y) = (In::new(logits.matrix()), In::new(labels.into()));
            let job = PointJob::new(ctx, binary_op(loss), sp, cols, pr.pos_weight.as_deref());
            // Reduced values are summed on the host: they come back whatever `place` says.
            let value_place = match options.reduction {
                Reduction::None => place,
                _ => mode.place(Place::Host),
            };
            let mut v = Out::new(ctx, value_place, rows, cols, f32::NAN)?;
            let mut g = new(cols)?;
            let w = pr.weight.as_deref();
            let k = job
                .run(ctx, &x, &y, w, Some(&mut v), Some(&mut g), None, mode)
                .await?;
            keep.extend(k);
            Raw {
                value: RawValue::Elements(v, Fold::Reduce(options.reduction)),
                grad: g,
                grad_b: None,
            }
        }
    };
    Ok(res)
}

/// Runs a row job: the gradient into `grad`, one value per row to `row_place`.
#[allow(clippy::too_many_arguments)]
async fn row_values(
    ctx: &Context,
    job: &RowJob,
    x: Matrix<'_>,
    classes: Option<&[u32]>,
    mut grad: Out,
    row_place: Place,
    fold: Fold,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Raw> {
    let (rows, cols) = x.dim();
    // No finite value in an empty row: NaN (targets cannot exist when C = 0).
    let mut values = Out::new(ctx, row_place, rows, 1, f32::NAN)?;
    if rows > 0 && cols > 0 {
        let x = In::new(x);
        keep.extend(
            job.run(ctx, &x, classes, &mut grad, &mut values, mode)
                .await?,
        );
    } else if let Out::Host { data, .. } = &mut grad {
        data.iter_mut().for_each(|d| *d = 0.0);
    }
    Ok(Raw {
        value: RawValue::Rows(values, fold),
        grad,
        grad_b: None,
    })
}

/// Host values of an output, downloading a device one.
async fn host_values(gpu: &Gpu, out: Out, rows: usize, wait: Wait) -> Result<Array2<f32>> {
    match out {
        Out::Device(m) => gpu.download_with(&m, wait).await,
        host => host.into_host(rows),
    }
}

/// The folded value on the host.
fn fold_value(v: Array2<f32>, per_row: bool, fold: Fold) -> Value {
    let flat: Vec<f32> = v.iter().copied().collect();
    if let Fold::Reduce(r) = fold {
        if let Some(s) = reduce(&flat, r) {
            return Value::Scalar(s);
        }
    }
    if per_row {
        Value::PerRow(Array1::from(flat))
    } else {
        Value::Matrix(v)
    }
}

/// The result with every output on the host.
pub(crate) async fn finish_host(
    gpu: &Gpu,
    raw: Raw,
    rows: usize,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let value = match raw.value {
        RawValue::Done(v) => v,
        RawValue::Rows(o, f) => fold_value(host_values(gpu, o, rows, wait).await?, true, f),
        RawValue::Elements(o, f) => fold_value(host_values(gpu, o, rows, wait).await?, false, f),
    };
    let grad = host_values(gpu, raw.grad, rows, wait).await?;
    let grad_b = match raw.grad_b {
        Some(g) => Some(host_values(gpu, g, rows, wait).await?),
        None => None,
    };
    Ok(SurrogateOutput {
        value,
        grad,
        grad_b,
    })
}

/// The result with the gradients (and per-element values) on the device.
pub(crate) async fn finish_device(
    gpu: &Gpu,
    raw: Raw,
    rows: usize,
    wait: Wait,
) -> Result<DeviceSurrogateOutput> {
    let on_device = |o: Out| {
        o.into_device()
            .ok_or_else(|| Error::InvalidInput("a device output was left on the host".into()))
    };
    let value = match raw.value {
        RawValue::Elements(Out::Device(m), Fold::Keep) => DeviceValue::Matrix(m),
        RawValue::Elements(Out::Device(m), Fold::Reduce(Reduction::None)) => DeviceValue::Matrix(m),
        other => {
            let v = match other {
                RawValue::Done(v) => v,
                RawValue::Rows(o, f) => fold_value(host_values(gpu, o, rows, wait).await?, true, f),
                RawValue::Elements(o, f) => {
                    fold_value(host_values(gpu, o, rows, wait).await?, false, f)
                }
            };
            match v {
                Value::Scalar(s) => DeviceValue::Scalar(s),
                Value::PerRow(r) => DeviceValue::PerRow(r),
                Value::Matrix(m) => DeviceValue::Matrix(gpu.upload(m.view())?),
            }
        }
    };
    Ok(DeviceSurrogateOutput {
        value,
        grad: on_device(raw.grad)?,
        grad_b: raw.grad_b.map(on_device).transpose()?,
    })
}
