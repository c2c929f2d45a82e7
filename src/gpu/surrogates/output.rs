//! What the surrogate kernels leave ([`Raw`]: the value, computed already, summed on the
//! device, or per row or element to keep, and the gradients, each on the host or the device),
//! and how it becomes the output with every array on the host or the gradients on the
//! device.

use super::sums::{reduced, DeviceSums};
use crate::cross_entropy::{LossSums, Reduction};
use crate::error::{Error, Result};
use crate::gpu::engine::Gpu;
use crate::gpu::io::Out;
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::readback::Wait;
use crate::surrogates::{reduce, SurrogateOutput, Value};
use ndarray::{Array1, Array2};

/// How a surrogate's value is made from what its kernels wrote.
#[derive(Copy, Clone, Debug)]
pub(super) enum Fold {
    /// Kept as written (one per row or per element).
    Keep,
    /// Reduced: with `None`, kept with their [`LossSums`] made on the host in f64 (the
    /// values come back anyway); a mean or sum is summed on the device instead
    /// (`dispatch::sum_on_device`).
    Reduce(Reduction),
}

/// What the kernels leave: the value (computed on the host already, or per row / per element
/// to fold) and the gradients, each on the host or the device.
pub struct Raw {
    pub(super) value: RawValue,
    pub(super) grad: Out,
    pub(super) grad_b: Option<Out>,
}

pub(super) enum RawValue {
    Done(Value),
    /// `[B, 1]` per-row values.
    Rows(Out, Fold),
    /// `[B, C]` per-element values.
    Elements(Out, Fold),
    /// Sums made on the device, finished into the value once read back.
    Summed(DeviceSums, Finish),
}

/// How a value is made from its device sums `(Σa, Σb)`.
#[derive(Copy, Clone, Debug)]
pub(super) enum Finish {
    /// `Σa` over this many values, reduced (mean or sum), with its [`LossSums`].
    Reduce(usize, Reduction),
    /// Binary F1 `2·Σ p·y / Σ (p + y)` (0 for a zero denominator).
    F1Binary,
    /// Macro F1: `Σa` over the classes' F1, divided by their number (NaN for none).
    F1Macro(usize),
}

impl Finish {
    /// The value and, for a reduction, its sums.
    fn apply(self, [a, b]: [f64; 2]) -> (Value, Option<LossSums>) {
        match self {
            Finish::Reduce(count, r) => {
                let (v, sums) = reduced(a, count, r);
                (Value::Scalar(v.unwrap_or(f64::NAN) as f32), Some(sums))
            }
            Finish::F1Binary => {
                let f = if b.is_nan() || a.is_nan() {
                    f64::NAN
                } else if b == 0.0 {
                    0.0
                } else {
                    2.0 * a / b
                };
                (Value::Scalar(f as f32), None)
            }
            Finish::F1Macro(c) => (Value::Scalar((a / c as f64) as f32), None),
        }
    }
}

impl Raw {
    pub(super) fn done(value: Value, grad: Out) -> Self {
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
    /// The sums of a mean or sum over rows or elements (see [`SurrogateOutput::sums`]).
    pub sums: Option<LossSums>,
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

/// Host values of an output, downloading a device one.
async fn host_values(gpu: &Gpu, out: Out, rows: usize, wait: Wait) -> Result<Array2<f32>> {
    match out {
        Out::Device(m) => gpu.download_with(&m, wait).await,
        host => host.into_host(rows),
    }
}

/// The folded value on the host, with its sums when it is a reduction.
fn fold_value(v: Array2<f32>, per_row: bool, fold: Fold) -> (Value, Option<LossSums>) {
    let flat: Vec<f32> = v.iter().copied().collect();
    let mut sums = None;
    if let Fold::Reduce(r) = fold {
        let (value, s) = reduce(&flat, r);
        if let Some(v) = value {
            return (Value::Scalar(v), Some(s));
        }
        sums = Some(s);
    }
    let value = if per_row {
        Value::PerRow(Array1::from(flat))
    } else {
        Value::Matrix(v)
    };
    (value, sums)
}

/// The result with every output on the host.
pub(crate) async fn finish_host(
    gpu: &Gpu,
    raw: Raw,
    rows: usize,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let (value, sums) = match raw.value {
        RawValue::Done(v) => (v, None),
        RawValue::Rows(o, f) => fold_value(host_values(gpu, o, rows, wait).await?, true, f),
        RawValue::Elements(o, f) => fold_value(host_values(gpu, o, rows, wait).await?, false, f),
        RawValue::Summed(s, finish) => finish.apply(s.read(gpu, wait).await?),
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
        sums,
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
    let (value, sums) = match raw.value {
        RawValue::Elements(Out::Device(m), Fold::Keep) => (DeviceValue::Matrix(m), None),
        // Per-element losses left on the device: their sums would need a read back.
        RawValue::Elements(Out::Device(m), Fold::Reduce(Reduction::None)) => {
            (DeviceValue::Matrix(m), None)
        }
        other => {
            let (v, sums) = match other {
                RawValue::Done(v) => (v, None),
                RawValue::Rows(o, f) => fold_value(host_values(gpu, o, rows, wait).await?, true, f),
                RawValue::Elements(o, f) => {
                    fold_value(host_values(gpu, o, rows, wait).await?, false, f)
                }
                RawValue::Summed(s, finish) => finish.apply(s.read(gpu, wait).await?),
            };
            let value = match v {
                Value::Scalar(s) => DeviceValue::Scalar(s),
                Value::PerRow(r) => DeviceValue::PerRow(r),
                Value::Matrix(m) => DeviceValue::Matrix(gpu.upload(m.view())?),
            };
            (value, sums)
        }
    };
    Ok(DeviceSurrogateOutput {
        value,
        grad: on_device(raw.grad)?,
        grad_b: raw.grad_b.map(on_device).transpose()?,
        sums,
    })
}
