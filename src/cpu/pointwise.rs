//! The surrogates' element-wise pieces on the CPU: the sigmoid, `erfc`, one element of the
//! pairwise smooth max and one element of a binary loss. Each computes in f64 where f32
//! intermediates would overflow or underflow for inputs and parameters the validation accepts.
//! Formulas: [`crate::surrogates`].

use super::exp::exp;
use crate::surrogates::{reference, BinaryLoss, PairwiseForm};

/// `σ(x)` without overflow.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + exp(-x))
    } else {
        let e = exp(x);
        e / (1.0 + e)
    }
}

/// `σ(x)` in f64 without overflow.
#[inline]
fn sigmoid64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `erfc(x)` (Numerical Recipes' `erfcc`, a Chebyshev fit with fractional error below 1.2e-7
/// everywhere; the same polynomial is in shaders/pointwise.wgsl), evaluated in f64.
// The published coefficients, kept digit for digit so they can be checked against the source.
#[allow(clippy::excessive_precision)]
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One element of the pairwise smooth max: `(f, ∂f/∂a, ∂f/∂b)`, written around `max(a, b)` so
/// the small correction and the small partial derivative keep their relative precision. In f64:
/// `a − b` and `μ²` exceed f32 for extreme inputs and parameters where the results do not.
pub(crate) fn pairwise(a: f32, b: f32, form: PairwiseForm) -> (f32, f32, f32) {
    if !(a.is_finite() && b.is_finite()) {
        return (f32::NAN, f32::NAN, f32::NAN);
    }
    let (a, b) = (a as f64, b as f64);
    let d = a - b;
    let (hi, ad) = (a.max(b), d.abs());
    // `small` is the partial derivative with respect to the smaller argument.
    let (f, small) = match form {
        PairwiseForm::Erf { mu } => {
            let z = mu as f64 * ad;
            let e = erfc(z);
            // e^{−z²} is 0 beyond z = 27 (and z·0 would be NaN at z = inf).
            let bump = if z < 27.0 {
                z * std::f64::consts::FRAC_2_SQRT_PI * (-z * z).exp()
            } else {
                0.0
            };
            let corr = if e > 0.0 { ad * e / 2.0 } else { 0.0 };
            (hi - corr, (e - bump) / 2.0)
        }
        PairwiseForm::Sqrt { mu } => {
            let mu = mu as f64;
            let r = ad.hypot(mu);
            let c = mu * (mu / (r + ad)); // r − |d| without cancellation
            (hi + c / 2.0, (mu / r) * (mu / (r + ad)) / 2.0)
        }
        PairwiseForm::LogCosh { k } => {
            // max + ln(1 + e)/(2k), e = e^{−2k|d|}; the smaller argument's partial is
            // (1 − tanh(k|d|))/2 = e/(1 + e).
            let k = k as f64;
            let e = (-2.0 * k * ad).exp();
            (hi + e.ln_1p() / (2.0 * k), e / (1.0 + e))
        }
        PairwiseForm::Acon { beta } => {
            // f = σ(βd)·a + σ(−βd)·b (a convex combination: no overflow), and
            // ∂f/∂a = σ(βd) + t·σ(t)·σ(−t) with t = βd, bounded (0 beyond |t| = 800).
            let t = beta as f64 * d;
            let (s, s2) = (sigmoid64(t), sigmoid64(-t));
            let bump = if t.abs() < 800.0 { t * s * s2 } else { 0.0 };
            let ga = s + bump;
            return ((s * a + s2 * b) as f32, ga as f32, (s2 - bump) as f32);
        }
    };
    let (f, small) = (f as f32, small as f32);
    if d >= 0.0 {
        (f, 1.0 - small, small)
    } else {
        (f, small, 1.0 - small)
    }
}

/// One element of a binary loss: `(w·ℓ, w·∂ℓ/∂f·scale)`, in f64 (weights, positive weights and
/// scores up to `f32::MAX` make products of three factors). The logistic loss is PyTorch's
/// `(1 − y)f − l_w·log σ(f)` rearranged into non-negative terms (`l_w = 1 + (pw − 1)y`): for
/// `f ≥ 0` it is `(1 − y)f + l_w·log(1 + e^{−f})`, for `f < 0` `pw·y·(−f) + l_w·log(1 + e^{f})`,
/// so nothing cancels; its infinities are PyTorch's. The margin losses are the reference's own
/// f64 formulas (the independent checks are tools/surrogate_check.py's).
pub(crate) fn binary_element(
    loss: BinaryLoss,
    f: f32,
    y: f32,
    pw: f32,
    w: f32,
    scale: f32,
) -> (f32, f32) {
    let (f, y, pw, w, scale) = (f as f64, y as f64, pw as f64, w as f64, scale as f64);
    let (l, g) = match loss {
        BinaryLoss::Logistic => {
            let lw = (1.0 - y) + pw * y;
            let g = (1.0 - y) * sigmoid64(f) - pw * y * sigmoid64(-f);
            let l = if f.is_nan() {
                f64::NAN
            } else if f == f64::INFINITY {
                if y < 1.0 {
                    f64::INFINITY
                } else {
                    f64::NAN // PyTorch: 0·inf
                }
            } else if f == f64::NEG_INFINITY {
                f64::NAN // PyTorch: −inf + inf
            } else {
                let soft = lw * (-f.abs()).exp().ln_1p();
                if f >= 0.0 {
                    (1.0 - y) * f + soft
                } else {
                    pw * y * -f + soft
                }
            };
            (l, g)
        }
        // The margin losses have no cancellation or overflow to avoid in f64: the formulas
        // are the reference's.
        _ => reference::binary_element(loss, f, y, pw),
    };
    ((w * l) as f32, (w * g * scale) as f32)
}
