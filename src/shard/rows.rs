//! The row ops of a row split over shards: logsumexp, softmax and log-softmax at temperature
//! `T` from each shard's logsumexp and the merged statistics.
//!
//! A shard's statistics are its own `lse_k(x/T)` (the backend's logsumexp divided by `T`),
//! held as `m = lse_k`, `s = 1`. With the merged `lse` of the whole row, the shard's outputs
//! are its own softmax times `r = e^{lse_k − lse}` and its own log-softmax plus
//! `lse_k − lse`: both terms `≤ 0` in the log form (and `≤ 1` in the product), so neither
//! step cancels and the result keeps its relative accuracy (two roundings of `x` where the
//! unsharded call has one). The outputs are formed in f32 and narrowed once.

use crate::backend::Backend;
use crate::cross_entropy::fast::flag;
use crate::cross_entropy::RowPartial;
use crate::element::{DType, MatrixView, Tensor};
use crate::error::{Error, Result};
use crate::rows::{check_temperature, RowOp};
use ndarray::Axis;

/// Each row's statistics over this shard's columns `x [B, C_k]` at temperature `T` (the
/// values `x/T`), for [`crate::shard::merge_rows`] and [`row_op`]; one logsumexp on `backend`.
pub fn row_statistics(
    backend: &dyn Backend,
    x: MatrixView<'_>,
    temperature: f32,
) -> Result<Vec<RowPartial>> {
    let cols = u32::try_from(x.dim().1)
        .map_err(|_| Error::InvalidInput("a shard of more than 2^32 columns".into()))?;
    let lse = backend.row_op_matrix(RowOp::LogSumExp, x.view(), temperature, DType::F32)?;
    let t = temperature as f64;
    let mut wide = None;
    let mut out = Vec::with_capacity(x.dim().0);
    for (i, &v) in lse.to_f32().iter().enumerate() {
        let mut p = RowPartial {
            cols,
            ..RowPartial::EMPTY
        };
        if v.is_nan() {
            p.flags = flag::NAN;
        } else if v == f32::INFINITY {
            // +inf logits, or finite ones whose T·lse(x/T) passes f32::MAX at a huge T: the
            // row's statistics in f64 on the host tell which (a rare row).
            let x = wide.get_or_insert_with(|| x.to_f32().into_owned());
            p = host_row(x.row(i).as_slice().unwrap_or(&x.row(i).to_vec()), t, cols);
        } else if v > f32::NEG_INFINITY {
            (p.m, p.s) = (v as f64 / t, 1.0);
        }
        out.push(p);
    }
    Ok(out)
}

/// One row's statistics of `x/T` in f64.
fn host_row(x: &[f32], t: f64, cols: u32) -> RowPartial {
    let mut p = RowPartial {
        cols,
        ..RowPartial::EMPTY
    };
    if x.iter().any(|v| v.is_nan()) {
        p.flags = flag::NAN;
    } else if x.contains(&f32::INFINITY) {
        p.flags = flag::POS_INF;
    } else {
        p.m = x
            .iter()
            .map(|&v| v as f64 / t)
            .fold(f64::NEG_INFINITY, f64::max);
        if p.m > f64::NEG_INFINITY {
            p.s = x.iter().map(|&v| (v as f64 / t - p.m).exp()).sum();
        }
    }
    p
}

/// The logsumexp at temperature `T` of whole rows from their merged statistics:
/// `T·lse(x/T)` (an error for a temperature the row ops refuse).
pub fn logsumexp(merged: &[RowPartial], temperature: f32) -> Result<Vec<f32>> {
    check_temperature(temperature)?;
    Ok(merged
        .iter()
        .map(|p| (temperature as f64 * p.lse()) as f32)
        .collect())
}

/// This shard's columns of the softmax or log-softmax (`op`) at temperature `T` of whole
/// rows, in `out`, from its own statistics `local` ([`row_statistics`] of `x`) and the merged
/// statistics of every shard. Non-finite rows follow the crate's table exactly as an
/// unsharded call: NaN everywhere for a row with a NaN or +inf anywhere, or with no finite
/// value at all; where this shard has only −inf and others do not, softmax 0 and log-softmax
/// −inf.
pub fn row_op(
    backend: &dyn Backend,
    op: RowOp,
    x: MatrixView<'_>,
    temperature: f32,
    local: &[RowPartial],
    merged: &[RowPartial],
    out: DType,
) -> Result<Tensor> {
    let rows = x.dim().0;
    if op == RowOp::LogSumExp {
        return Err(Error::InvalidInput(
            "a sharded logsumexp comes from the merged statistics: shard::logsumexp".into(),
        ));
    }
    for (what, v) in [("this shard's", local), ("merged", merged)] {
        if v.len() != rows {
            return Err(Error::InvalidInput(format!(
                "{what} statistics have {} rows, the input {rows}",
                v.len()
            )));
        }
    }
    let y = backend.row_op_matrix(op, x, temperature, DType::F32)?;
    let Tensor::F32(mut y) = y else {
        return Err(Error::InvalidInput("the row op gave no f32 result".into()));
    };
    for (i, mut row) in y.axis_iter_mut(Axis(0)).enumerate() {
        let (l, m) = (&local[i], &merged[i]);
        let lse = m.lse();
        if !lse.is_finite() {
            row.fill(f32::NAN);
        } else if l.s == 0.0 {
            row.fill(match op {
                RowOp::Softmax => 0.0,
                _ => f32::NEG_INFINITY,
            });
        } else {
            let d = l.lse() - lse;
            match op {
                RowOp::Softmax => {
                    let r = d.exp();
                    row.mapv_inplace(|v| (v as f64 * r) as f32);
                }
                _ => row.mapv_inplace(|v| (v as f64 + d) as f32),
            }
        }
    }
    Ok(match out {
        DType::F32 => Tensor::F32(y),
        other => Tensor::narrow(y, other),
    })
}
