//! The row ops: which, what they return, and the one check they take (the temperature).

use crate::error::{Error, Result};
use ndarray::{Array1, Array2};

/// The row-wise reductions of the smooth-max family.
///
/// Each is applied to every row of a `[B, C]` matrix, at temperature `T > 0`:
/// - `LogSumExp`: `T · ln Σ_j exp(x_j / T)`, the smooth maximum (→ `max x` as `T → 0`,
///   and never more than `T · ln C` above it);
/// - `Softmax`: `exp(x_j / T) / Σ_k exp(x_k / T)`, the gradient of `LogSumExp`;
/// - `LogSoftmax`: `x_j / T − ln Σ_k exp(x_k / T)`, computed as `(x_j/T − m) − ln s` with
///   `m` the row max and `s = Σ exp(x_k/T − m)`, so a large common shift loses nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RowOp {
    /// Per-row `T·logsumexp(x/T)`; output shape `[B]`.
    LogSumExp,
    /// Per-row softmax of `x/T`; output shape `[B, C]`.
    Softmax,
    /// Per-row log-softmax of `x/T`; output shape `[B, C]`.
    LogSoftmax,
}

impl RowOp {
    /// The op's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            RowOp::LogSumExp => "logsumexp",
            RowOp::Softmax => "softmax",
            RowOp::LogSoftmax => "log-softmax",
        }
    }
}

/// The output of a row op: a vector for `LogSumExp`, a matrix otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOutput {
    /// One value per row.
    PerRow(Array1<f32>),
    /// One value per element.
    Matrix(Array2<f32>),
}

impl RowOutput {
    /// The matrix of softmax or log-softmax, or an error for logsumexp's vector.
    pub fn into_matrix(self) -> Result<Array2<f32>> {
        match self {
            RowOutput::Matrix(m) => Ok(m),
            RowOutput::PerRow(_) => Err(crate::Error::InvalidInput(
                "logsumexp gives one value per row, not a matrix".into(),
            )),
        }
    }

    /// Logsumexp's vector, or an error for a matrix.
    pub fn into_per_row(self) -> Result<Array1<f32>> {
        match self {
            RowOutput::PerRow(v) => Ok(v),
            RowOutput::Matrix(_) => Err(crate::Error::InvalidInput(
                "softmax and log-softmax give a matrix, not one value per row".into(),
            )),
        }
    }
}

/// Checks that a temperature is usable: finite and strictly positive.
pub fn check_temperature(t: f32) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(Error::BadTemperature(t))
    }
}
