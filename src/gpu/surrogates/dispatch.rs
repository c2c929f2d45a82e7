//! One surrogate call on the GPU: inputs checked on the host (shared with the other
//! backends), then each op's kernels through the one launch path.

use super::f1::{binary_f1, macro_f1};
use super::output::{Finish, Fold, Raw, RawValue};
use super::params::{binary_op, pairwise_op, Kappa};
use super::points::PointJob;
use super::rows::RowJob;
use super::sums::device_sums;
use crate::cross_entropy::Reduction;
use crate::element::DType;
use crate::error::{Error, Result};
use crate::gpu::context::Context;
use crate::gpu::convert::convert;
use crate::gpu::io::{GpuInput, In, Matrix, Out, Place};
use crate::gpu::kernel::uniforms::SParams;
use crate::gpu::kernel::{Entry, SpFlags, SurrogateOp};
use crate::gpu::launch::Mode;
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use crate::surrogates::{check_power_input, grad_scale, prepare, ElementSmoothing, Surrogate};

/// A score matrix widened to f32 for the surrogate kernels.
enum Wide {
    Host(ndarray::Array2<f32>),
    Device(GpuMatrix),
}

/// Runs one surrogate call: its outputs go to `place` (in a recorded `mode`, to the device).
/// The surrogate kernels read f32, so f16 / bf16 scores are widened first: host data on the
/// host, device matrices on the device (recorded in the same `mode`).
pub(crate) async fn surrogate<M>(
    ctx: &Context,
    call: &Surrogate<'_, M>,
    place: Place,
    mut mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Raw>
where
    M: GpuInput,
{
    prepare(call)?; // every check before any work
    let scores = call.map(|m| m.matrix());
    let mut order = Vec::new();
    let _ = scores.map(|m| order.push(m.clone()));
    let mut wide = Vec::with_capacity(order.len());
    for m in &order {
        wide.push(match m {
            Matrix::Host(v) if v.dtype() != DType::F32 => Some(Wide::Host(v.to_f32().into_owned())),
            Matrix::Device(d) if d.dtype() != DType::F32 => Some(Wide::Device(
                convert(ctx, d, DType::F32, mode.reborrow(), keep).await?,
            )),
            _ => None,
        });
    }
    if wide.iter().all(Option::is_none) {
        return surrogate_f32(ctx, call, place, mode, keep).await;
    }
    let mut k = 0;
    let f32_call = scores.map(|m| {
        let w = &wide[k];
        k += 1;
        match w {
            Some(Wide::Host(a)) => Matrix::Host(a.view().into()),
            Some(Wide::Device(g)) => Matrix::Device(g),
            None => m.clone(),
        }
    });
    surrogate_f32(ctx, &f32_call, place, mode, keep).await
}

/// [`surrogate`] on f32 scores.
async fn surrogate_f32<M>(
    ctx: &Context,
    call: &Surrogate<'_, M>,
    place: Place,
    mut mode: Mode<'_>,
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
    let staged = match call {
        &Surrogate::BoltzmannMax { ref x, beta } => {
            let sp = SParams {
                kappa: beta.abs(),
                sign: if beta < 0.0 { -1.0 } else { 1.0 },
                a: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = weighted(SurrogateOp::Boltzmann, sp, Kappa::Beta(beta.abs()))?;
            Staged::Rows(job, x.matrix(), None, Fold::Keep)
        }
        &Surrogate::SoftArgmax { ref x, temperature } => {
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = weighted(SurrogateOp::SoftArgmax, sp, Kappa::Temperature(temperature))?;
            Staged::Rows(job, x.matrix(), None, Fold::Keep)
        }
        &Surrogate::SmoothAccuracy {
            ref logits,
            temperature,
            ..
        } => {
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0 / rows as f32,
                ..Default::default()
            };
            let job = weighted(SurrogateOp::Accuracy, sp, Kappa::Temperature(temperature))?;
            let fold = Fold::Reduce(Reduction::Mean);
            Staged::Rows(job, logits.matrix(), Some(&pr.class[..]), fold)
        }
        Surrogate::MultiMargin {
            logits, options, ..
        } => {
            let flags = SpFlags::default().with(SpFlags::WEIGHT, pr.weight.is_some());
            let sp = SParams {
                margin: options.margin,
                p: options.p,
                u: grad_scale(options.reduction, rows),
                flags: flags.bits(),
                ..Default::default()
            };
            let (op, kappa) = (SurrogateOp::Margin, Kappa::Temperature(1.0));
            let w = pr.weight.as_deref();
            let job = RowJob::new(ctx, Entry::Margin, op, kappa, cols, sp, w)?;
            let fold = Fold::Reduce(options.reduction);
            Staged::Rows(job, logits.matrix(), Some(&pr.class[..]), fold)
        }
        &Surrogate::PowerMax { ref x, p } => {
            if let Matrix::Host(v) = x.matrix() {
                check_power_input(v.to_f32().view())?;
            }
            let sp = SParams {
                kappa: p,
                a: p - 1.0,
                inv_p: (1.0 / p as f64) as f32,
                lo_p: (-200.0 / p as f64) as f32,
                lo_pm1: if p > 1.0 {
                    (-200.0 / (p as f64 - 1.0)) as f32
                } else {
                    0.0
                },
                q_p: ((p as f64 - 1.0) / p as f64) as f32,
                ..Default::default()
            };
            let kappa = Kappa::Temperature(1.0); // (the kernel forms no exponent of κ·x)
            let job = RowJob::new(
                ctx,
                Entry::Power,
                SurrogateOp::PowerMax,
                kappa,
                cols,
                sp,
                None,
            )?;
            Staged::Rows(job, x.matrix(), None, Fold::Keep)
        }
        &Surrogate::SmoothF1Macro {
            ref logits,
            temperature,
            ..
        } => {
            let x = In::new(logits.matrix());
            Staged::Done(macro_f1(ctx, &x, &pr, temperature, place, mode.reborrow(), keep).await?)
        }
        Surrogate::SmoothF1Binary { logits, .. } => {
            let x = In::new(logits.matrix());
            Staged::Done(binary_f1(ctx, &x, &pr, place, mode.reborrow(), keep).await?)
        }
        &Surrogate::Smoothing { ref x, op } => {
            let (code, kappa) = match op {
                ElementSmoothing::Abs { k } => (SurrogateOp::SmoothAbs, k),
                ElementSmoothing::Floor { t } => (SurrogateOp::SmoothFloor, t),
            };
            let sp = SParams {
                kappa,
                ..Default::default()
            };
            // One input: bound as the second argument too (the kernel does not read it).
            let x = In::new(x.matrix());
            let job = PointJob::new(ctx, code, sp, cols, None)?;
            let (mut v, mut g) = (new(cols)?, new(cols)?);
            let outs = (Some(&mut v), Some(&mut g), None);
            keep.extend(job.run(ctx, &x, &x, None, outs, mode.reborrow()).await?);
            Staged::Done(Raw {
                value: RawValue::Elements(v, Fold::Keep),
                grad: g,
                grad_b: None,
            })
        }
        &Surrogate::PairwiseMax { ref a, ref b, form } => {
            let sp = SParams {
                kappa: form.parameter(),
                ..Default::default()
            };
            let (a, b) = (In::new(a.matrix()), In::new(b.matrix()));
            let job = PointJob::new(ctx, pairwise_op(form), sp, cols, None)?;
            let (mut v, mut ga, mut gb) = (new(cols)?, new(cols)?, new(cols)?);
            let outs = (Some(&mut v), Some(&mut ga), Some(&mut gb));
            keep.extend(job.run(ctx, &a, &b, None, outs, mode.reborrow()).await?);
            Staged::Done(Raw {
                value: RawValue::Elements(v, Fold::Keep),
                grad: ga,
                grad_b: Some(gb),
            })
        }
        &Surrogate::Binary {
            ref logits,
            loss,
            ref options,
            ..
        } => {
            let flags = SpFlags::default()
                .with(SpFlags::WEIGHT, pr.weight.is_some())
                .with(SpFlags::POS_WEIGHT, pr.pos_weight.is_some());
            let sp = SParams {
                flags: flags.bits(),
                u: grad_scale(options.reduction, rows * cols),
                ..Default::default()
            };
            let labels = pr.labels.as_deref().unwrap_or(&[]);
            let labels = ndarray::ArrayView2::from_shape((rows, cols), labels)
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            let (x, y) = (In::new(logits.matrix()), In::new(labels.into()));
            let job = PointJob::new(ctx, binary_op(loss), sp, cols, pr.pos_weight.as_deref())?;
            let mut g = new(cols)?;
            let w = pr.weight.as_deref();
            let r = options.reduction;
            let value = if r == Reduction::None {
                let mut v = new(cols)?;
                let outs = (Some(&mut v), Some(&mut g), None);
                keep.extend(job.run(ctx, &x, &y, w, outs, mode.reborrow()).await?);
                RawValue::Elements(v, Fold::Reduce(r))
            } else {
                // Summed per workgroup on the device, never stored: only the sum comes back.
                let grad = Some(&mut g);
                let sums = job
                    .run_summed(ctx, (&x, &y), w, grad, mode.reborrow(), keep)
                    .await?;
                RawValue::Summed(sums, Finish::Reduce(rows * cols, r))
            };
            Staged::Done(Raw {
                value,
                grad: g,
                grad_b: None,
            })
        }
    };
    match staged {
        Staged::Done(raw) => Ok(raw),
        Staged::Rows(job, x, classes, fold) => {
            let grad = new(cols)?;
            // An empty row's value: the power-mean max of nothing is 0; the others have no
            // finite value (targets cannot exist when C = 0).
            let empty = match call {
                Surrogate::PowerMax { .. } => 0.0,
                _ => f32::NAN,
            };
            // A mean or sum of the rows' values is summed on the device.
            let reduced = matches!(fold, Fold::Reduce(Reduction::Mean | Reduction::Sum));
            let values_place = if reduced { Place::Device } else { row_place };
            let values = Out::new(ctx, values_place, rows, 1, empty)?;
            let fold_empty = (fold, empty);
            let raw = row_values(
                ctx,
                job,
                x,
                classes,
                grad,
                values,
                fold_empty,
                mode.reborrow(),
                keep,
            )
            .await?;
            Ok(Raw {
                value: sum_on_device(ctx, raw.value, mode, keep).await?,
                ..raw
            })
        }
    }
}

/// A mean or sum of per-row values on the device, summed there (the values never come back);
/// every other value as it is.
async fn sum_on_device(
    ctx: &Context,
    value: RawValue,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<RawValue> {
    match value {
        RawValue::Rows(Out::Device(m), Fold::Reduce(r)) if r != Reduction::None => {
            let (rows, cols) = m.dim();
            let sums = device_sums(ctx, &m, None, mode, keep).await?;
            Ok(RawValue::Summed(sums, Finish::Reduce(rows * cols, r)))
        }
        other => Ok(other),
    }
}

/// A surrogate's kernels: run already (the multi-pass and element-wise ops), or a row job to
/// run on `x` with a class per row and a fold of its per-row values.
enum Staged<'a> {
    Done(Raw),
    Rows(RowJob, Matrix<'a>, Option<&'a [u32]>, Fold),
}

/// Runs a row job: the gradient into `grad`, one value per row into `values` (`empty` for
/// rows of no columns).
#[allow(clippy::too_many_arguments)]
async fn row_values(
    ctx: &Context,
    job: RowJob,
    x: Matrix<'_>,
    classes: Option<&[u32]>,
    mut grad: Out,
    mut values: Out,
    (fold, empty): (Fold, f32),
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Raw> {
    let (rows, cols) = x.dim();
    if rows > 0 && cols > 0 {
        let x = In::new(x);
        keep.extend(
            job.run(ctx, &x, classes, &mut grad, &mut values, mode)
                .await?,
        );
    }
    // Recorded, the job's uniform and weights must outlive the caller's submission too.
    keep.extend(job.into_buffers());
    if let (0, Out::Device(m)) = (cols, &values) {
        m.fill(ctx, empty)?; // no kernel writes the values of empty rows
    }
    Ok(Raw {
        value: RawValue::Rows(values, fold),
        grad,
        grad_b: None,
    })
}
