//! The row ops' f64 oracle: every row classified before any arithmetic (the one non-finite
//! classification of the crate docs' table), then the max-shifted sums in f64.

use super::op::check_temperature;
use crate::error::Result;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// What a row's values say about its normalizer, decided before any arithmetic.
enum RowKind {
    /// Some NaN: every output is NaN.
    HasNan,
    /// Some +inf and no NaN: logsumexp is +inf, (log-)softmax NaN.
    HasPosInf,
    /// Empty, or every value −inf: logsumexp is −inf, (log-)softmax NaN.
    NoFinite,
    /// At least one finite value, the rest finite or −inf: `m` is the finite max, `s` the sum
    /// of `exp(x − m)` (−inf terms contribute exactly 0), so `lse = m + ln s`.
    Finite { m: f64, s: f64 },
}

/// A row's kind, and for a finite row its max `m` (of the raw values) and
/// `s = Σ exp((x − m)/T)`: the difference is formed before dividing (in f64, exact or nearly
/// so for nearby values), so a row of values `ε·|x|` apart keeps its spread even when `|x/T|`
/// is far beyond `2⁵³`.
fn classify(xs: &[f64], t: f64) -> RowKind {
    if xs.iter().any(|x| x.is_nan()) {
        return RowKind::HasNan;
    }
    if xs.contains(&f64::INFINITY) {
        return RowKind::HasPosInf;
    }
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return RowKind::NoFinite;
    }
    let s = xs.iter().map(|&x| ((x - m) / t).exp()).sum();
    RowKind::Finite { m, s }
}

fn widen(row: ArrayView1<f32>) -> Vec<f64> {
    row.iter().map(|&x| x as f64).collect()
}

/// `T · logsumexp(x / T) = m + T·ln s` per row, in f64.
pub(crate) fn logsumexp_f64(x: ArrayView2<f32>, temperature: f32) -> Result<Array1<f64>> {
    check_temperature(temperature)?;
    let t = temperature as f64;
    Ok(x.axis_iter(Axis(0))
        .map(|row| match classify(&widen(row), t) {
            RowKind::HasNan => f64::NAN,
            RowKind::HasPosInf => f64::INFINITY,
            RowKind::NoFinite => f64::NEG_INFINITY,
            RowKind::Finite { m, s } => m + t * s.ln(),
        })
        .collect())
}

/// Softmax (or, with `log = true`, log-softmax) of `x / T` per row, in f64.
pub(crate) fn softmax_f64(x: ArrayView2<f32>, temperature: f32, log: bool) -> Result<Array2<f64>> {
    check_temperature(temperature)?;
    let t = temperature as f64;
    let mut out = Array2::<f64>::zeros(x.raw_dim());
    for (row, mut dst) in x.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
        let xs = widen(row);
        match classify(&xs, t) {
            RowKind::HasNan | RowKind::HasPosInf | RowKind::NoFinite => dst.fill(f64::NAN),
            RowKind::Finite { m, s } => {
                for (d, &v) in dst.iter_mut().zip(&xs) {
                    // (x − m)/T − ln s, not x/T − lse: full precision under a large shift.
                    *d = if log {
                        (v - m) / t - s.ln()
                    } else {
                        ((v - m) / t).exp() / s
                    };
                }
            }
        }
    }
    Ok(out)
}
