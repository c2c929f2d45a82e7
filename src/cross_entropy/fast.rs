//! What the two f32 backends (CPU and GPU) share: their inputs normalized so that no f32
//! intermediate overflows where the result does not (and no value is lost to underflow beyond
//! f32's range relative to its row's largest term), the per-row gradient coefficients, and the
//! loss finished in f64 from each row's statistics.
//!
//! Every option is accepted over its whole range (weights up to `f32::MAX`, z-loss and the
//! upstream gradient of any finite size, label smoothing down to subnormal values), and logits
//! up to `±f32::MAX` (a row can span `2·f32::MAX`). So:
//!
//! - **Statistics, not losses, come out of the kernels.** Per row: the max `m` of the
//!   (soft-capped) logits `x'`, `s = Σ e^{x' − m}`, the linear sum
//!   `a = σ·Σ_finite k̂_j (x'_j − m)` when smoothing or probability targets need it, the target
//!   logit `x'_y`, and flags (NaN, +inf, which kinds of −inf met). The loss is formed here in
//!   f64 ([`row_loss`]): `lse − x'_y`, `W·ln s − Σ w_j (x'_j − m)` and the z-loss `z·lse²` can
//!   each exceed f32 when the loss does not, or cancel.
//! - **The linear sum is normalized.** Its weights are `k̂_j = w_j / max w` (smoothing) or
//!   `k̂_ij = w_j q'_ij / max_j |w_j q'_ij|` per row (probability targets, `q' = q(1 − ls) +
//!   ls/C`), formed in f64 so `|k̂| ≤ 1`, and `σ = 2^{−(p+2)}` with `2^p ≥ C`:
//!   each term is at most `f32::MAX / 2^{p+1}` in magnitude and a row's sum stays below
//!   `f32::MAX / 2` however its logits span; `(x' − m)·σ` is formed as `fma(x', σ, −m·σ)` (no
//!   overflow). The host multiplies the normalizer and `1/σ` back in f64. A weight below f32's
//!   range relative to its row's largest (a ratio beyond `2¹⁴⁹`) is kept as the smallest
//!   subnormal of its sign, so its −inf kind survives (on a device that flushes subnormals it
//!   counts as 0): such a term is exact only to `2⁻¹²⁶·max|k|·max|x' − m|` in absolute terms,
//!   the range f32 has.
//! - **The gradient is normalized per row.** `g_j = p_j·(α + ζ·lse) − β·k̂_j − [j = y]·γ`
//!   (the target's entry formed as `γ(p_y − 1) + p_y(α + ζ·lse − γ) − β k̂_y`, which keeps its
//!   precision when `p_y → 1`), times `1 − tanh²(x/c)` under softcap. The coefficients are
//!   computed here in f64 and divided by a power of two `2^n` that brings the largest to at most
//!   1 ([`RowCoef`]); the kernel multiplies its result by `2^n` last, the only product that can
//!   overflow, and it does only where the exact gradient does. (A `p_j` below `2⁻¹²⁶` is then 0
//!   even where `p_j·2^n` is not: the gradient is exact relative to the row's largest
//!   coefficient, as every result made of several terms is.)

use super::options::{CrossEntropyOptions, CrossEntropyOutput};
use super::prepare::{reduce, Prepared};
use ndarray::{Array1, Array2};

/// Flag bits of [`RowStats::flags`] (the shaders' `FLAG_*`, generated from these values by
/// `gpu::kernel`).
pub(crate) mod flag {
    /// A NaN logit.
    pub const NAN: u32 = 1;
    /// A +inf logit (and no NaN).
    pub const POS_INF: u32 = 2;
    /// A −inf logit with `k > 0`: PyTorch's `−k·logp` is +inf there.
    pub const NEG_POS: u32 = 4;
    /// A −inf logit with `k = 0`: `0·inf` is NaN.
    pub const NEG_ZERO: u32 = 8;
    /// A −inf logit with `k < 0`: −inf.
    pub const NEG_NEG: u32 = 16;
}

/// One row's statistics, as a kernel leaves them.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowStats {
    /// Max of the finite (soft-capped) logits; meaningless when `s = 0`.
    pub m: f32,
    /// `Σ e^{x' − m}`: 0 when the row has no finite logit.
    pub s: f32,
    /// `σ·Σ_finite k̂_j (x'_j − m)` (≤ 0), when smoothing or probability targets need it.
    pub a: f32,
    /// The target's (soft-capped) logit, class targets only.
    pub xy: f32,
    /// [`flag`] bits.
    pub flags: u32,
    pub _pad: u32,
}

/// One row's normalized gradient coefficients, as a kernel reads them: the class (−1 for an
/// ignored row, 0 for probability targets), `α, β, γ, ζ` divided by `2^n`, and `n`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowCoef {
    pub class: i32,
    pub alpha: f32,
    pub beta: f32,
    pub gamma: f32,
    pub zeta: f32,
    pub exp: i32,
}

/// The inputs of the f32 kernels.
pub(crate) struct FastInputs {
    /// `ŵ = w / max w` (`None` unweighted).
    pub weight: Option<Vec<f32>>,
    /// `k̂_ij = w_j q'_ij / max_j |w_j q'_ij|`, `[B, C]` (probability targets).
    pub probs: Option<Array2<f32>>,
    /// `σ = 2^{−(p+2)}`, `2^p ≥ C`.
    pub sigma: f32,
    /// Per row (every row, ignored ones included).
    pub coef: Vec<RowCoef>,
    /// `max w` (1 unweighted).
    w_max: f64,
    /// Per row, `max_j |w_j q'_ij|` and `K_i = Σ_j w_j q'_ij` (probability targets).
    k_max: Vec<f64>,
    k_all: Vec<f64>,
    /// Per row, the target's weight (class targets; 0 for ignored rows).
    w_y: Vec<f64>,
    /// Label smoothing.
    ls: f64,
}

impl FastInputs {
    /// The normalized probability targets as one row-major slice (`None` for class targets).
    pub fn probs_slice(&self) -> crate::error::Result<Option<&[f32]>> {
        self.probs
            .as_ref()
            .map(|q| {
                q.as_slice().ok_or_else(|| {
                    crate::error::Error::InvalidInput("targets could not be made contiguous".into())
                })
            })
            .transpose()
    }

    /// The same without the normalized probability targets (once they are on the device).
    pub fn without_probs(self) -> Self {
        FastInputs {
            probs: None,
            ..self
        }
    }
}

/// `v` as f32 for a normalized `|v| ≤ 1`, a non-zero value kept non-zero (its sign decides a
/// −inf logit's kind): the smallest subnormal of its sign where it would round to 0.
fn normalized(v: f64) -> f32 {
    let f = v as f32;
    if v != 0.0 && f == 0.0 {
        f32::from_bits(1).copysign(f)
    } else {
        f
    }
}

/// `σ` for rows of `cols` classes.
fn sigma(cols: usize) -> f32 {
    let p = cols.max(1).next_power_of_two().trailing_zeros() as i32;
    2f32.powi(-(p + 2))
}

/// The kernels' inputs and per-row coefficients for a prepared call.
pub(crate) fn fast_inputs(p: &Prepared, o: &CrossEntropyOptions) -> FastInputs {
    let (rows, cols) = (p.rows, p.cols);
    let ls = o.label_smoothing as f64;
    let w = |j: usize| o.weight.as_ref().map_or(1.0, |w| w[j] as f64);
    let w_max = (0..cols).map(w).fold(0.0, f64::max);
    let w_max = if w_max > 0.0 { w_max } else { 1.0 };
    let weight = o
        .weight
        .as_ref()
        .map(|wv| wv.iter().map(|&v| normalized(v as f64 / w_max)).collect());
    let (mut k_max, mut k_all) = (vec![1.0; rows], vec![0.0; rows]);
    let probs = match &p.probs {
        Some(q) => {
            let mut kn = Array2::<f32>::zeros((rows, cols));
            for (i, (qr, mut out)) in q.outer_iter().zip(kn.outer_iter_mut()).enumerate() {
                let ks: Vec<f64> = qr
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| w(j) * (v as f64 * (1.0 - ls) + ls / cols as f64))
                    .collect();
                let mx = ks.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                k_max[i] = if mx > 0.0 { mx } else { 1.0 };
                k_all[i] = ks.iter().sum();
                for (o, v) in out.iter_mut().zip(&ks) {
                    *o = normalized(v / k_max[i]);
                }
            }
            Some(kn)
        }
        None => None,
    };
    let (scale_ce, scale_z) = p.scales(o.reduction);
    let z = o.z_loss as f64;
    let mut coef = Vec::with_capacity(rows);
    let mut w_y = vec![0.0; rows];
    for i in 0..rows {
        let u = p.upstream[i] as f64;
        let (s_ce, s_z) = (u * scale_ce, u * scale_z);
        let class = p.class.as_ref().map_or(0, |c| c[i]);
        let (alpha, beta, gamma) = match &p.class {
            Some(_) if class < 0 => (0.0, 0.0, 0.0),
            Some(_) => {
                w_y[i] = w(class as usize);
                let gamma = s_ce * (1.0 - ls) * w_y[i];
                let smooth = s_ce * ls / cols as f64;
                (gamma + smooth * p.w_total, smooth * w_max, gamma)
            }
            None => (s_ce * k_all[i], s_ce * k_max[i], 0.0),
        };
        let zeta = if class < 0 { 0.0 } else { s_z * 2.0 * z };
        let big = [alpha, beta, gamma, zeta]
            .iter()
            .fold(0.0f64, |a, v| a.max(v.abs()));
        let exp = if big > 1.0 {
            big.log2().ceil() as i32
        } else {
            0
        };
        let d = 2f64.powi(-exp);
        coef.push(RowCoef {
            class,
            alpha: (alpha * d) as f32,
            beta: (beta * d) as f32,
            gamma: (gamma * d) as f32,
            zeta: (zeta * d) as f32,
            exp,
        });
    }
    FastInputs {
        weight,
        probs,
        sigma: sigma(cols),
        coef,
        w_max,
        k_max,
        k_all,
        w_y,
        ls,
    }
}

/// PyTorch's value of `Σ −k·logp` given the −inf kinds a row met: NaN beats ±inf, +inf and −inf
/// together are NaN.
fn with_neg_inf(v: f64, flags: u32) -> f64 {
    let (pos, zero, neg) = (
        flags & flag::NEG_POS != 0,
        flags & flag::NEG_ZERO != 0,
        flags & flag::NEG_NEG != 0,
    );
    if zero || (pos && neg) {
        f64::NAN
    } else if pos {
        f64::INFINITY
    } else if neg {
        f64::NEG_INFINITY
    } else {
        v
    }
}

/// A row's `(cross-entropy loss without z-loss, lse)` from its statistics, in f64.
pub(crate) fn row_loss(p: &Prepared, fi: &FastInputs, i: usize, st: &RowStats) -> (f64, f64) {
    let cols = p.cols;
    let lse = if st.flags & flag::NAN != 0 {
        f64::NAN
    } else if st.flags & flag::POS_INF != 0 {
        f64::INFINITY
    } else if st.s == 0.0 {
        f64::NEG_INFINITY
    } else {
        st.m as f64 + (st.s as f64).ln()
    };
    let class = fi.coef[i].class;
    if cols == 0 || (p.class.is_some() && class < 0) {
        // No classes: an empty sum (lse −inf); ignored rows: 0.
        return (0.0, if cols == 0 { f64::NEG_INFINITY } else { lse });
    }
    if !lse.is_finite() {
        return (f64::NAN, lse);
    }
    let ln_s = (st.s as f64).ln();
    let ls = fi.ls;
    // Σ_finite k_j (m − x'_j) ≥ 0, with k_j = w_j (smoothing) or w_j q'_j.
    let lin = |norm: f64| -(st.a as f64) * norm / fi.sigma as f64;
    let loss = match &p.class {
        None => with_neg_inf(fi.k_all[i] * ln_s + lin(fi.k_max[i]), st.flags),
        Some(_) => {
            let wy = fi.w_y[i];
            let nll = if st.xy == f32::NEG_INFINITY {
                if wy > 0.0 {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            } else {
                wy * ((st.m as f64 - st.xy as f64) + ln_s)
            };
            if ls > 0.0 {
                let smooth = with_neg_inf(p.w_total * ln_s + lin(fi.w_max), st.flags);
                (1.0 - ls) * nll + (ls / cols as f64) * smooth
            } else {
                nll
            }
        }
    };
    (loss, lse)
}

/// Every row's `(loss, lse)`: losses in f64 for the reduction, lse as the f32 output.
pub(crate) fn row_losses(
    p: &Prepared,
    fi: &FastInputs,
    stats: &[RowStats],
) -> (Vec<f64>, Vec<f32>) {
    stats
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let (l, lse) = row_loss(p, fi, i, st);
            (l, lse as f32)
        })
        .unzip()
}

/// Whether the call needs the linear sums (smoothing or probability targets).
pub(crate) fn needs_linear(p: &Prepared, o: &CrossEntropyOptions) -> bool {
    o.label_smoothing > 0.0 || p.probs.is_some()
}

/// `g·2^n`, exactly rounded once (the coefficients' normalization taken back off).
#[inline]
pub(crate) fn unnormalize(g: f32, n: i32) -> f32 {
    if n == 0 {
        g
    } else {
        (g as f64 * 2f64.powi(n)) as f32
    }
}

/// Assembles a fast backend's result from its per-row statistics: the losses (finished in
/// f64, see the module docs), the reduced loss, the per-row lse, and the gradient (`[B, C]`,
/// assembled by the caller in its element type) when it was asked for.
pub(crate) fn finish<G>(
    p: &Prepared,
    fi: &FastInputs,
    o: &CrossEntropyOptions,
    stats: &[RowStats],
    grad: Option<G>,
) -> CrossEntropyOutput<G> {
    let (ce, lse) = row_losses(p, fi, stats);
    let (loss, sums) = reduce(p, o, &ce, &lse);
    CrossEntropyOutput {
        loss,
        grad,
        lse: Array1::from_vec(lse),
        sums,
    }
}
