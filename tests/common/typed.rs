//! Comparisons for results in any element type (f32, f16, bf16) against the f64 reference.
//!
//! The contract (crate docs, "Element types"): statistics are f32 and meet the f32 bound
//! `|a − r| ≤ tol·(unit + |r|)`; a half output is the correctly rounded f32 result, so it is
//! within that bound plus one unit in the last place of its type at `r` (half an ulp for the
//! rounding, and the f32 error may straddle a rounding boundary).

use super::{tol, FLUSH_FLOOR};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};
use smoothmax::half::{bf16, f16};
use smoothmax::{DType, Element, Tensor};

/// The spacing of `dtype` at `|v|` (its subnormal spacing below the normal range).
pub fn ulp(dtype: DType, v: f64) -> f64 {
    let (mant, min_exp) = match dtype {
        DType::F32 => (23, -126),
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
    };
    let e = if v == 0.0 {
        min_exp
    } else {
        (v.abs().log2().floor() as i32).max(min_exp)
    };
    2f64.powi(e - mant)
}

/// The largest finite value of `dtype`.
pub fn max_finite(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::MAX as f64,
        DType::F16 => f16::MAX.to_f64(),
        DType::BF16 => bf16::MAX.to_f64(),
    }
}

/// The values of a result as f64 with their type.
pub fn values(t: &Tensor) -> (DType, Vec<f64>) {
    let v: Vec<f64> = t.to_f32().iter().map(|&v| v as f64).collect();
    (t.dtype(), v)
}

/// Every element of `got` (of type `dtype`) against `want`: NaN meets NaN, infinities the
/// same infinity, a reference value past the type's range the infinity of its sign, and
/// finite values within `tol(cols)·(unit + |r|)` plus one ulp of the type.
pub fn assert_typed_close(
    dtype: DType,
    got: &[f64],
    want: &[f64],
    cols: usize,
    unit: f64,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let t = tol(cols);
    let top = max_finite(dtype);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || w.is_infinite() {
            let same = (w.is_nan() && g.is_nan()) || g == w;
            assert!(same, "{what}: element {i}: got {g}, want {w}");
            continue;
        }
        // Clearly past the type's range (more than the f32 error beyond its last rounding
        // boundary): the infinity of its sign, never a wrapped or saturated value.
        let boundary = top + ulp(dtype, top) / 2.0;
        if w.abs() > boundary * (1.0 + 4.0 * t) {
            assert_eq!(
                g,
                w.signum() * f64::INFINITY,
                "{what}: element {i} ({w}) must overflow to ±inf"
            );
            continue;
        }
        assert!(
            g.is_finite() || w.abs() > top,
            "{what}: element {i}: got {g}, want {w}"
        );
        if !g.is_finite() {
            continue; // at the boundary, either rounding is right
        }
        let err = ((g - w).abs() - FLUSH_FLOOR - ulp(dtype, w)).max(0.0) / (unit + w.abs());
        assert!(
            err <= t,
            "{what}: element {i}: got {g}, want {w} ({dtype}): scaled error {err:e} > tol {t:e}"
        );
    }
}

/// A random array of `E` values: normal times `scale`, with a few −inf when `neg_inf`.
pub fn random<E: Element>(n: usize, scale: f64, neg_inf: bool, seed: u64) -> Vec<E> {
    let mut rng = super::Rng(seed);
    (0..n)
        .map(|_| {
            let v = if neg_inf && rng.unit() < 0.05 {
                f32::NEG_INFINITY
            } else {
                (rng.normal() * scale) as f32
            };
            E::from_f32(v)
        })
        .collect()
}

/// How a test input is laid out in memory: contiguous, every other column of a wider array,
/// every other row of the first axis, or the first two axes swapped.
#[derive(Copy, Clone, Debug)]
pub enum Layout {
    Standard,
    StepLast,
    StepFirst,
    SwapLeading,
}

/// An owned array of [`random`] values (`scale`, `neg_inf`) from which `layout` views `shape`.
pub fn backing<E: Element>(
    shape: &[usize],
    layout: Layout,
    scale: f64,
    neg_inf: bool,
    seed: u64,
) -> ArrayD<E> {
    let mut full = shape.to_vec();
    match layout {
        Layout::StepLast => *full.last_mut().unwrap() *= 2,
        Layout::StepFirst => full[0] *= 2,
        Layout::SwapLeading if full.len() >= 3 => full.swap(0, 1),
        _ => {}
    }
    let n = full.iter().product();
    ArrayD::from_shape_vec(IxDyn(&full), random::<E>(n, scale, neg_inf, seed)).unwrap()
}

/// The `layout` view of an array made by [`backing`].
pub fn view<E: Element>(a: &ArrayD<E>, layout: Layout) -> ArrayViewD<'_, E> {
    let mut v = a.view();
    match layout {
        Layout::Standard => {}
        Layout::StepLast => v.slice_axis_inplace(Axis(a.ndim() - 1), Slice::new(0, None, 2)),
        Layout::StepFirst => v.slice_axis_inplace(Axis(0), Slice::new(0, None, 2)),
        Layout::SwapLeading if a.ndim() >= 3 => v.swap_axes(0, 1),
        Layout::SwapLeading => {}
    }
    v
}
