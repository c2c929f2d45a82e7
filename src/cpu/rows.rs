//! One row at a time, in passes over a row that stays in cache (a 32000-float row is 128 KB):
//!
//! 1. the max `m` of the raw values, and whether anything non-finite is present (bit tests,
//!    the way the GPU kernels classify); since `max(x/T) = max(x)/T` the exponent is
//!    `(x − m)/T`, and `x − m` is exact for nearby values where `x/T` in f32 would lose
//!    `ε·|x/T|` (formed as `crate::scale` says, so no accepted `T` and no finite row
//!    overflows where the exact value does not);
//! 2. `s = Σ e^{(x − m)/T}` in `L` independent lanes (so it vectorizes), storing each `e` into
//!    the output when softmax is wanted;
//! 3. softmax: `out ← out · (1/s)`; log-softmax: `out = (x − m)/T − ln s` (no exp).
//!
//! One exp per element (the online single-pass merge of Milakov & Gimelshein needs a second
//! one for the output). Then `T·lse(x/T) = m + T·ln s`.

use super::arith::Arith;
use crate::scale::{ExpScale, RowScale};

const INF_BITS: u32 = 0x7f80_0000;

/// What decides a row's normalizer.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct RowStats {
    /// Max of the finite values (`f32::MIN` when there is none).
    pub m: f32,
    /// `Σ e^{(x − m)/T}` (0 when no finite value).
    pub s: f32,
    pub nan: bool,
    pub pos_inf: bool,
}

impl RowStats {
    /// `m + T · ln s`, or the table's answer for a non-finite row. For `T > 1` it is
    /// `T·(m/T + ln s)`: `T·ln s` alone can overflow where the sum does not (three values of
    /// −3e38 at `T = 3e38` give 0.74e38), and `m/T` cannot.
    #[inline(always)]
    pub fn logsumexp(&self, t: f32) -> f32 {
        if self.nan {
            f32::NAN
        } else if self.pos_inf {
            f32::INFINITY
        } else if self.s == 0.0 {
            f32::NEG_INFINITY
        } else if t > 1.0 {
            t * (self.m / t + self.s.ln())
        } else {
            self.m + t * self.s.ln()
        }
    }
}

/// Pass 1: the max of the values (NaN and −inf never win a `>`), plus NaN / +inf flags.
#[inline(always)]
pub(crate) fn row_max<A: Arith>(x: &[f32]) -> (f32, bool, bool) {
    let (mut m, abits) = A::max_and_abs_bits(x);
    let (mut nan, mut pos_inf) = (false, false);
    if abits >= INF_BITS {
        // Rare: classify. −inf is harmless (e^{−inf} = 0); NaN and +inf decide the row.
        nan = x.iter().any(|v| v.is_nan());
        pos_inf = x.contains(&f32::INFINITY);
    }
    if m == f32::INFINITY {
        m = f32::MIN; // only reachable with pos_inf set; keep m finite
    }
    (m, nan, pos_inf)
}

/// Pass 2: `Σ e^{κ(x − m)}`, also storing each term into `store` when given; `next` is
/// the following row (prefetched, where the build can), or empty. Blocked (see `lanes::SUM_BLOCK`).
#[inline(always)]
pub(crate) fn exp_sum<A: Arith>(
    x: &[f32],
    sc: &RowScale,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> f32 {
    A::exp_sum(x, sc, store, next)
}

/// Passes 1 and 2 (stats only).
#[inline(always)]
pub(crate) fn row_stats<A: Arith>(x: &[f32], next: &[f32], es: &ExpScale) -> RowStats {
    let (m, nan, pos_inf) = row_max::<A>(x);
    let s = if nan || pos_inf {
        0.0
    } else {
        exp_sum::<A>(x, &es.row(m), None, next)
    };
    RowStats { m, s, nan, pos_inf }
}

/// Softmax (or log-softmax) of one row at the temperature `es` was made for, into `out`.
#[inline(always)]
pub(crate) fn softmax_row<A: Arith>(
    x: &[f32],
    next: &[f32],
    out: &mut [f32],
    es: &ExpScale,
    log: bool,
) {
    let (m, nan, pos_inf) = row_max::<A>(x);
    if nan || pos_inf {
        out.fill(f32::NAN);
        return;
    }
    let sc = es.row(m);
    if log {
        let s = exp_sum::<A>(x, &sc, None, next);
        if s == 0.0 {
            out.fill(f32::NAN); // no finite value
            return;
        }
        let ln_s = s.ln();
        // (x − m)/T − ln s: exact under a large common shift, −inf stays −inf.
        if sc.tiny {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = ((v - m) * sc.h) * sc.c_log - ln_s;
            }
        } else {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = A::fma(v, sc.h, sc.mh) * sc.c_log - ln_s;
            }
        }
    } else {
        let s = exp_sum::<A>(x, &sc, Some(out), next);
        if s == 0.0 {
            out.fill(f32::NAN);
            return;
        }
        let inv_s = 1.0 / s;
        for o in out.iter_mut() {
            *o *= inv_s;
        }
    }
}
