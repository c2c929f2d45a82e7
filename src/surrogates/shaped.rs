//! Surrogates on scores of any shape `[d0, ..., C]` ([`crate::Backend::surrogate_tensor`]):
//! the call as the `[B, C]` matrix call every backend runs (leading axes merged as
//! `crate::tensor` merges them, `B = d0·…`), and the results back in the caller's shapes.
//!
//! What each input becomes: scores (both of a pairwise call) `[B, C]`, checked to share one
//! shape; labels (same shape as the scores) `[B, C]`; class targets (the leading shape)
//! `[B]`; per-element weights broadcast to the scores' shape by NumPy's rules: `[C]` as a
//! `[1, C]` view and `[d0, ..., 1]` as a `[B, 1]` view (the matrix call broadcasts those), any
//! other broadcast materialized as `[B, C]`. Per-class
//! and per-column vectors (`pos_weight`, the multi-margin `weight`) are unchanged. Errors that
//! name a row name it in the merged `[B, C]` rows (row-major order over the leading axes).

use super::call::{BinaryOptions, MultiMarginOptions, Surrogate, SurrogateOutput, Value};
use crate::element::{MatrixView, Tensor, TensorView};
use crate::error::{Error, Result};
use crate::tensor::Rows;
use ndarray::{ArrayView, CowArray, Ix1, Ix2, IxDyn};

/// `a` (of `shape`) as `[rows, cols]`.
fn flat2<'a, T: Clone>(
    a: &'a ArrayView<'_, T, IxDyn>,
    what: &str,
    (rows, cols): (usize, usize),
) -> Result<CowArray<'a, T, Ix2>> {
    a.to_shape((rows, cols)).map_err(|e| {
        Error::InvalidInput(format!("{what} {:?} as [{rows}, {cols}]: {e}", a.shape()))
    })
}

/// Labels of the scores' own shape, as `[rows, cols]`.
fn labels<'a>(
    l: &'a ArrayView<'_, f32, IxDyn>,
    shape: &[usize],
    dims: (usize, usize),
) -> Result<CowArray<'a, f32, Ix2>> {
    if l.shape() != shape {
        return Err(Error::InvalidInput(format!(
            "labels has shape {:?}, expected {shape:?} (the shape of the first input)",
            l.shape()
        )));
    }
    flat2(l, "labels", dims)
}

/// Class targets of the scores' leading shape, as `[rows]`.
fn targets<'a>(
    t: &'a ArrayView<'_, i64, IxDyn>,
    shape: &[usize],
    rows: usize,
) -> Result<CowArray<'a, i64, Ix1>> {
    let lead = &shape[..shape.len() - 1];
    if t.shape() != lead {
        return Err(Error::InvalidInput(format!(
            "class targets have shape {:?}; scores {shape:?} need the leading shape {lead:?}",
            t.shape()
        )));
    }
    t.to_shape(rows)
        .map_err(|e| Error::InvalidInput(format!("targets {:?} as [{rows}]: {e}", t.shape())))
}

/// Per-element weights broadcast to the scores' shape, as `[rows, cols]`: one row of column
/// weights (`[C]`, `[1, ..., 1, C]`) as a `[1, C]` view and one weight per row (`[d0, ..., 1]`)
/// as a `[rows, 1]` view, which the matrix call broadcasts itself; any other broadcast
/// materialized.
fn weight<'a>(
    w: &'a ArrayView<'_, f32, IxDyn>,
    shape: &[usize],
    dims: (usize, usize),
) -> Result<CowArray<'a, f32, Ix2>> {
    let (rows, cols) = dims;
    let (ws, n) = (w.shape(), shape.len());
    let per_column = ws.last() == Some(&cols) && ws[..ws.len() - 1].iter().all(|&d| d == 1);
    let per_row = ws.len() == n && ws[..n - 1] == shape[..n - 1] && ws[n - 1] == 1;
    let narrow = if per_column {
        Some((1, cols))
    } else {
        per_row.then_some((rows, 1))
    };
    if let Some(Ok(v)) = narrow.map(|d| w.view().into_shape_with_order(d)) {
        return Ok(v.into());
    }
    let b = w.broadcast(IxDyn(shape)).ok_or_else(|| {
        Error::InvalidInput(format!(
            "weight of shape {:?} does not broadcast to the scores' shape {shape:?}",
            w.shape()
        ))
    })?;
    b.to_shape((rows, cols))
        .map(|c| c.into_owned().into())
        .map_err(|e| Error::InvalidInput(format!("weight as [{rows}, {cols}]: {e}")))
}

/// Checks a call on scores of any shape as [`crate::surrogates::validate`] checks a matrix
/// call: the shapes, then every target, label and weight (rows named in the merged rows).
///
/// ```
/// use smoothmax::{surrogates::validate_tensor, Surrogate};
/// let x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, 3, 4]));
/// let y = ndarray::ArrayD::<i64>::zeros(ndarray::IxDyn(&[2, 4]));
/// let call = Surrogate::SmoothAccuracy { logits: x.view().into(), targets: y.view(), temperature: 1.0 };
/// assert!(validate_tensor(&call).unwrap_err().to_string().contains("leading shape [2, 3]"));
/// ```
pub fn validate_tensor(call: &Surrogate<'_, TensorView<'_>, IxDyn>) -> Result<()> {
    // A closure, not `super::validate` itself: the function item's lifetimes are fixed where
    // it is named, which is not general enough for `as_matrix`'s bound.
    #[allow(clippy::redundant_closure)]
    as_matrix(call, |m| super::validate(m)).map(drop)
}

/// Runs `call` as the matrix call `matrix_call` (a backend's `surrogate_matrix`) and gives
/// the results back in the scores' shapes: a per-row value in the leading shape, a
/// per-element value and the gradients in the scores' shape.
pub(crate) fn run(
    call: &Surrogate<'_, TensorView<'_>, IxDyn>,
    matrix_call: impl FnOnce(&Surrogate<'_, MatrixView<'_>>) -> Result<SurrogateOutput<f32, Tensor>>,
) -> Result<SurrogateOutput<f32, Tensor, IxDyn>> {
    let (r, shape) = as_matrix(call, matrix_call)?;
    let lead = &shape[..shape.len() - 1];
    let reshape = |e: ndarray::ShapeError| Error::InvalidInput(format!("result: {e}"));
    Ok(SurrogateOutput {
        value: match r.value {
            Value::Scalar(v) => Value::Scalar(v),
            // Standard layout first: reshaping in row-major order needs it.
            Value::PerRow(v) => Value::PerRow(
                v.as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(lead))
                    .map_err(reshape)?,
            ),
            Value::Matrix(v) => Value::Matrix(
                v.as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(&shape))
                    .map_err(reshape)?,
            ),
        },
        grad: r.grad.into_shape(&shape)?,
        grad_b: r.grad_b.map(|g| g.into_shape(&shape)).transpose()?,
        sums: r.sums,
    })
}

/// `f` of `call` as a matrix call, and the scores' shape.
fn as_matrix<R>(
    call: &Surrogate<'_, TensorView<'_>, IxDyn>,
    f: impl FnOnce(&Surrogate<'_, MatrixView<'_>>) -> Result<R>,
) -> Result<(R, Vec<usize>)> {
    let mut scores = Vec::new();
    let _ = call.map(|m| scores.push(m));
    let shape = scores[0].shape().to_vec();
    if shape.is_empty() {
        return Err(Error::InvalidInput(
            "0-dimensional scores: give at least one axis ([C])".into(),
        ));
    }
    if let Some(other) = scores.iter().find(|s| s.shape() != shape.as_slice()) {
        return Err(Error::InvalidInput(format!(
            "b has shape {:?}, expected {shape:?} (the shape of the first input)",
            other.shape()
        )));
    }
    let rows_of: Vec<Rows> = scores.iter().map(|s| Rows::of(s)).collect::<Result<_>>()?;
    let lead = rows_of[0].leading.clone();
    let cols = shape[shape.len() - 1];
    let dims = (lead.iter().product::<usize>(), cols);
    let mut m = rows_of.iter().map(Rows::view);
    let mut next = || m.next().ok_or_else(|| Error::InvalidInput("scores".into()));
    // The owned pieces the matrix call borrows.
    let (lab, tgt, wgt);
    let matrix: Surrogate<'_, MatrixView<'_>> = match call {
        Surrogate::BoltzmannMax { beta, .. } => Surrogate::BoltzmannMax {
            x: next()?,
            beta: *beta,
        },
        Surrogate::SoftArgmax { temperature, .. } => Surrogate::SoftArgmax {
            x: next()?,
            temperature: *temperature,
        },
        Surrogate::SmoothAccuracy {
            targets: t,
            temperature,
            ..
        } => {
            tgt = targets(t, &shape, dims.0)?;
            Surrogate::SmoothAccuracy {
                logits: next()?,
                targets: tgt.view(),
                temperature: *temperature,
            }
        }
        Surrogate::SmoothF1Binary { labels: l, .. } => {
            lab = labels(l, &shape, dims)?;
            Surrogate::SmoothF1Binary {
                logits: next()?,
                labels: lab.view(),
            }
        }
        Surrogate::SmoothF1Macro {
            targets: t,
            temperature,
            ..
        } => {
            tgt = targets(t, &shape, dims.0)?;
            Surrogate::SmoothF1Macro {
                logits: next()?,
                targets: tgt.view(),
                temperature: *temperature,
            }
        }
        Surrogate::Smoothing { op, .. } => Surrogate::Smoothing {
            x: next()?,
            op: *op,
        },
        Surrogate::PowerMax { p, .. } => Surrogate::PowerMax { x: next()?, p: *p },
        Surrogate::PairwiseMax { form, .. } => Surrogate::PairwiseMax {
            a: next()?,
            b: next()?,
            form: *form,
        },
        Surrogate::Binary {
            labels: l,
            loss,
            options,
            ..
        } => {
            lab = labels(l, &shape, dims)?;
            wgt = options
                .weight
                .as_ref()
                .map(|w| weight(w, &shape, dims))
                .transpose()?;
            Surrogate::Binary {
                logits: next()?,
                labels: lab.view(),
                loss: *loss,
                options: BinaryOptions {
                    weight: wgt.as_ref().map(|w| w.view()),
                    pos_weight: options.pos_weight.as_ref().map(|p| p.view()),
                    reduction: options.reduction,
                },
            }
        }
        Surrogate::MultiMargin {
            targets: t,
            options,
            ..
        } => {
            tgt = targets(t, &shape, dims.0)?;
            Surrogate::MultiMargin {
                logits: next()?,
                targets: tgt.view(),
                options: MultiMarginOptions {
                    weight: options.weight.as_ref().map(|w| w.view()),
                    ..*options
                },
            }
        }
    };
    Ok((f(&matrix)?, shape))
}
