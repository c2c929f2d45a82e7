//! What the parameter sweeps share: the values every numeric parameter is swept over, the
//! inputs, and the comparator with an explicit error scale per element.

use super::{tol, Rng, FLUSH_FLOOR};
use ndarray::Array2;

/// Every positive parameter value: the smallest subnormal, a subnormal, the smallest normal,
/// small, unit, large, and the largest finite f32, plus values that are not powers of ten.
pub fn positives() -> Vec<f32> {
    vec![
        f32::from_bits(1),
        1e-40,
        f32::MIN_POSITIVE,
        1e-30,
        1e-7,
        1e-3,
        0.37,
        1.0,
        3.0,
        1e3,
        1e7,
        1e30,
        1e38,
        f32::MAX,
    ]
}

/// [`positives`], their negatives, and zero (for parameters of any sign).
pub fn signed() -> Vec<f32> {
    let mut v = vec![0.0];
    for p in positives() {
        v.push(p);
        v.push(-p);
    }
    v
}

/// Rows that stress a parameter from every side, `C = 37` (not a multiple of any lane count):
/// 0. normal values (scale 3) with a spike;
/// 1. three-way ties at the max;
/// 2. subnormal values (multiples of 2⁻¹⁴⁹ up to ±39 of them): only a subnormal temperature
///    separates them;
/// 3. values up to ±1e37 and the two extreme finite values (the row spans 2·f32::MAX);
/// 4. normal values with −inf entries;
/// 5. a +1e7 shift (values an ulp of 1 apart).
pub fn inputs() -> Array2<f32> {
    let cols = 37;
    let mut rng = Rng(7);
    let mut x = Array2::<f32>::zeros((6, cols));
    for j in 0..cols {
        x[[0, j]] = (rng.normal() * 3.0) as f32;
        x[[1, j]] = (rng.normal() * 3.0) as f32;
        let sign = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
        x[[2, j]] = sign * f32::from_bits((rng.next_u64() % 40) as u32);
        x[[3, j]] = (rng.normal() * 1e37) as f32;
        x[[4, j]] = if rng.unit() < 0.3 {
            f32::NEG_INFINITY
        } else {
            (rng.normal() * 3.0) as f32
        };
        x[[5, j]] = 1e7 + (rng.normal() * 3.0).round() as f32;
    }
    x[[0, 5]] += 20.0;
    for j in [3, 9, 30] {
        x[[1, j]] = 12.5;
    }
    x[[3, 2]] = f32::MAX;
    x[[3, 3]] = -f32::MAX;
    x
}

/// Compares f32 results with f64 references element by element, each with its own error
/// scale: `|a − r| ≤ tol(terms)·(|r| + scale) + floor + FLUSH_FLOOR`. `scale` is the sum of
/// the absolute values of the terms the element is computed from (the classic bound for a
/// sum of products: its rounding errors are relative to that, not to the result); `floor` an
/// absolute error the computation cannot avoid (e.g. probabilities below the smallest normal
/// f32, which `exp` flushes to 0, times the factor they are multiplied by). NaN must meet
/// NaN and an infinity the same infinity; a finite reference beyond f32's range (within the
/// tolerance) must give the infinity of its sign.
pub fn assert_scaled(
    got: &[f32],
    want: &[f64],
    scale: &[f64],
    floor: &[f64],
    terms: usize,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let t = tol(terms);
    let max = f32::MAX as f64;
    for i in 0..got.len() {
        let (a, r) = (got[i] as f64, want[i]);
        if r.is_nan() || a.is_nan() {
            assert!(r.is_nan() && a.is_nan(), "{what}: [{i}]: got {a}, want {r}");
            continue;
        }
        if r.is_infinite() {
            assert_eq!(a, r, "{what}: [{i}]: got {a}, want {r}");
            continue;
        }
        let bound = t * (r.abs() + scale[i]) + floor[i] + FLUSH_FLOOR;
        if a.is_infinite() {
            let overflow = (r.abs() + bound) * (1.0 + f32::EPSILON as f64) >= max;
            assert!(
                overflow && a.signum() == r.signum(),
                "{what}: [{i}]: got {a}, want {r} (scale {:e})",
                scale[i]
            );
            continue;
        }
        assert!(
            (a - r).abs() <= bound,
            "{what}: [{i}]: got {a}, want {r}: error {:e} > bound {bound:e} (scale {:e}, floor {:e})",
            (a - r).abs(),
            scale[i],
            floor[i]
        );
    }
}

/// The absolute error of an f32 probability: `exp` flushes results below the smallest normal
/// f32 (`2⁻¹²⁶`) to 0, as GPUs may, and the sum it is divided by is at least 1.
pub const P_FLOOR: f64 = FLUSH_FLOOR;
