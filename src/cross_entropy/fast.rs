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
use super::partial::RowPartial;
use super::prepare::{reduce, Prepared};
use ndarray::{Array1, Array2};
use rayon::prelude::*;

pub(crate) use super::partial::flag;

/// One row's statistics, as a kernel leaves them.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowStats {
    /// Max of the finite (soft-capped) logits, or in a loss-only CPU call a reference at
    /// most that max (`cpu::rows::online`'s guess; `s` and `a` are taken against it);
    /// meaningless when `s = 0`.
    pub m: f32,
    /// `Σ e^{x' − m}`: 0 when the row has no finite logit.
    pub s: f32,
    /// `σ·Σ_finite k̂_j (x'_j − m)` (≤ 0 against the max), when smoothing or probability
    /// targets need it.
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
#[derive(Clone)]
pub(crate) struct FastInputs {
    /// `ŵ = w / max w` (`None` unweighted).
    pub weight: Option<Vec<f32>>,
    /// `k̂_ij = w_j q'_ij / max_j |w_j q'_ij|`, `[B, C]` (probability targets).
    pub probs: Option<Array2<f32>>,
    /// `σ = 2^{−(p+2)}`, `2^p ≥ C`.
    pub sigma: f32,
    /// Per row (every row, ignored ones included); empty where the call left them out
    /// ([`fast_inputs`]).
    pub coef: Vec<RowCoef>,
    /// `max w` (1 unweighted).
    pub w_max: f64,
    /// `Σ_j w_j` over these columns (`C` unweighted).
    pub w_sum: f64,
    /// Per row, `max_j |w_j q'_ij|` and `K_i = Σ_j w_j q'_ij` (probability targets; empty for
    /// class targets).
    pub k_max: Vec<f64>,
    pub k_all: Vec<f64>,
    /// Per row, the target's weight (class targets; 0 for ignored rows), where the call is
    /// weighted or a shard sets them; read through [`FastInputs::w_y`].
    pub w_y: Option<Vec<f64>>,
    /// Label smoothing.
    pub ls: f64,
    /// Smoothing or probability targets: the statistics carry the linear sum.
    pub linear: bool,
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

/// Row `i`'s class where it is one of these columns (class targets; not an ignored row, nor,
/// in a vocabulary shard, a class that lies in another shard).
fn local_class(p: &Prepared, i: usize) -> Option<usize> {
    match &p.class {
        Some(c) if c[i] >= 0 && (c[i] as usize) < p.cols => Some(c[i] as usize),
        _ => None,
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

/// The kernels' inputs for a prepared call, with the per-row coefficients when `coef` (the
/// GPU kernel reads each row's class from them; the CPU reads them only for the gradient).
pub(crate) fn fast_inputs(p: &Prepared, o: &CrossEntropyOptions, coef: bool) -> FastInputs {
    fast_inputs_of(p, o, p.cols, coef)
}

/// [`fast_inputs`] for `p.cols` columns of rows of `total` classes (a vocabulary shard; the
/// weights in `o` are the shard's): smoothing spreads `ls/total` over every class. The
/// coefficients are left out (`coef` empty) unless `coef`.
pub(crate) fn fast_inputs_of(
    p: &Prepared,
    o: &CrossEntropyOptions,
    total: usize,
    coef: bool,
) -> FastInputs {
    let (rows, cols) = (p.rows, p.cols);
    let ls = o.label_smoothing as f64;
    let w = |j: usize| o.weight.as_ref().map_or(1.0, |w| w[j] as f64);
    // Unweighted, the max and the sum of the weights are 1 and `cols` (the loops' values,
    // +0 where their empty sum gave −0; measured: at [64, 32000] the two serial loops were
    // 3.5% of a forward call).
    let (w_max, w_sum) = match o.weight {
        Some(_) => ((0..cols).map(w).fold(0.0, f64::max), (0..cols).map(w).sum()),
        None => (1.0, cols as f64),
    };
    let w_max = if w_max > 0.0 { w_max } else { 1.0 };
    let weight = o
        .weight
        .as_ref()
        .map(|wv| wv.iter().map(|&v| normalized(v as f64 / w_max)).collect());
    let (mut k_max, mut k_all) = (Vec::new(), Vec::new());
    let probs = match &p.probs {
        Some(q) => {
            (k_max, k_all) = (vec![1.0; rows], vec![0.0; rows]);
            let mut kn = Array2::<f32>::zeros((rows, cols));
            for (i, (qr, mut out)) in q.outer_iter().zip(kn.outer_iter_mut()).enumerate() {
                let ks: Vec<f64> = qr
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| w(j) * (v as f64 * (1.0 - ls) + ls / total as f64))
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
    // (A shard's class targets lying elsewhere are 0, its width perhaps 0 too: the shard sets
    // their weights itself.) Unweighted, [`FastInputs::w_y`] forms them.
    let w_y = o.weight.as_ref().map(|_| {
        (0..rows)
            .into_par_iter()
            .map(|i| local_class(p, i).map_or(0.0, w))
            .collect()
    });
    let fi = FastInputs {
        weight,
        probs,
        sigma: sigma(cols),
        coef: Vec::new(),
        w_max,
        w_sum,
        k_max,
        k_all,
        w_y,
        ls,
        linear: needs_linear(p, o),
    };
    if coef {
        FastInputs {
            coef: fi.coefs(p, o, total),
            ..fi
        }
    } else {
        fi
    }
}

impl RowCoef {
    /// The coefficients `α, β, γ, ζ` (f64) of a row with class `class`, divided by the power of
    /// two `2^n` that brings the largest to at most 1.
    pub fn new(class: i32, alpha: f64, beta: f64, gamma: f64, zeta: f64) -> RowCoef {
        let big = [alpha, beta, gamma, zeta]
            .iter()
            .fold(0.0f64, |a, v| a.max(v.abs()));
        let exp = if big > 1.0 {
            big.log2().ceil() as i32
        } else {
            0
        };
        let d = 2f64.powi(-exp);
        RowCoef {
            class,
            alpha: (alpha * d) as f32,
            beta: (beta * d) as f32,
            gamma: (gamma * d) as f32,
            zeta: (zeta * d) as f32,
            exp,
        }
    }
}

impl FastInputs {
    /// Row `i`'s target weight (class targets): from `w_y` where the call has one, else 1 for
    /// a class among these columns and 0 for an ignored row or one whose class lies elsewhere.
    #[inline]
    pub fn w_y(&self, p: &Prepared, i: usize) -> f64 {
        match &self.w_y {
            Some(w) => w[i],
            None => local_class(p, i).map_or(0.0, |_| 1.0),
        }
    }

    /// Every row's [`RowCoef`], for rows of `total` classes. Per row and independent: in
    /// parallel (at [65536, 1000] this loop took a third of a forward-only call's time on one
    /// thread while the other core waited).
    fn coefs(&self, p: &Prepared, o: &CrossEntropyOptions, total: usize) -> Vec<RowCoef> {
        (0..p.rows)
            .into_par_iter()
            .map(|i| {
                let class = p.class.as_ref().map_or(0, |c| c[i]);
                let k_all = self.k_all.get(i).copied().unwrap_or(0.0);
                let [alpha, beta, gamma, zeta] = self.coefficients(p, o, i, k_all, total);
                RowCoef::new(class, alpha, beta, gamma, zeta)
            })
            .collect()
    }

    /// Row `i`'s gradient coefficients `[α, β, γ, ζ]` in f64 (module docs), for rows of
    /// `total` classes whose `K_i = Σ_j w_j q'_ij` is `k_all` (probability targets).
    pub fn coefficients(
        &self,
        p: &Prepared,
        o: &CrossEntropyOptions,
        i: usize,
        k_all: f64,
        total: usize,
    ) -> [f64; 4] {
        let (scale_ce, scale_z) = p.scales(o.reduction);
        let u = p.upstream.at(i) as f64;
        let (s_ce, s_z) = (u * scale_ce, u * scale_z);
        let ls = self.ls;
        let zeta = s_z * 2.0 * o.z_loss as f64;
        match &p.class {
            Some(c) if c[i] < 0 => [0.0; 4],
            Some(_) => {
                let gamma = s_ce * (1.0 - ls) * self.w_y(p, i);
                let smooth = s_ce * ls / total as f64;
                [gamma + smooth * p.w_total, smooth * self.w_max, gamma, zeta]
            }
            None => [s_ce * k_all, s_ce * self.k_max[i], 0.0, zeta],
        }
    }

    /// Row `i`'s statistics in f64, as [`RowPartial`]s carry them: the linear sum with its
    /// normalization taken back off (`a·norm/σ`), `k_sum` the `Σ k_j` of these columns, and
    /// [`RowPartial::HAS_TARGET`] for a counted row of class targets. From a loss-only CPU
    /// call `st.m` may be a reference below the max (`RowStats::m`); the row's loss
    /// ([`partial_loss`]) takes `m` only through `m + ln s`, `m − x_y` and the linear sum
    /// against the same `m`, so it is the same function of the row either way.
    pub fn partial(&self, p: &Prepared, i: usize, st: &RowStats) -> RowPartial {
        let class = p.class.as_ref().map(|c| c[i]);
        let (lin, k_sum) = match (self.linear, class) {
            (false, _) => (0.0, 0.0),
            (true, None) => (
                st.a as f64 * self.k_max[i] / self.sigma as f64,
                self.k_all[i],
            ),
            (true, Some(_)) => (st.a as f64 * self.w_max / self.sigma as f64, self.w_sum),
        };
        let has_target = matches!(class, Some(c) if c >= 0);
        RowPartial {
            m: if st.s > 0.0 {
                st.m as f64
            } else {
                f64::NEG_INFINITY
            },
            s: st.s as f64,
            lin,
            k_sum,
            xy: st.xy as f64,
            flags: st.flags
                | if has_target {
                    RowPartial::HAS_TARGET
                } else {
                    0
                },
            cols: p.cols as u32,
        }
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

/// What a row's loss is formed against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RowTarget {
    /// An ignored row: loss 0.
    Ignored,
    /// A class target of weight `w_y`.
    Class { w_y: f64 },
    /// Probability targets.
    Probabilities,
}

/// A row's `(cross-entropy loss without z-loss, lse)` from its statistics over all of its
/// `cols` columns, in f64 (module docs): `W` is `Σ_c w_c` (class targets with smoothing),
/// `K = Σ_c w_c q'_c` is `st.k_sum` (probability targets).
pub(crate) fn partial_loss(
    st: &RowPartial,
    target: RowTarget,
    ls: f64,
    cols: usize,
    w_total: f64,
) -> (f64, f64) {
    let ln_s = st.s.ln();
    let lse = st.lse_given(ln_s);
    if cols == 0 || matches!(target, RowTarget::Ignored) {
        // No classes: an empty sum (lse −inf); ignored rows: 0.
        return (0.0, if cols == 0 { f64::NEG_INFINITY } else { lse });
    }
    if !lse.is_finite() {
        return (f64::NAN, lse);
    }
    // Σ_finite k_j (m − x'_j) ≥ 0, with k_j = w_j (smoothing) or w_j q'_j.
    let lin = -st.lin;
    let loss = match target {
        RowTarget::Ignored => 0.0,
        RowTarget::Probabilities => with_neg_inf(st.k_sum * ln_s + lin, st.flags),
        RowTarget::Class { w_y } => {
            let nll = if st.xy == f64::NEG_INFINITY {
                if w_y > 0.0 {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            } else {
                w_y * ((st.m - st.xy) + ln_s)
            };
            if ls > 0.0 {
                let smooth = with_neg_inf(w_total * ln_s + lin, st.flags);
                (1.0 - ls) * nll + (ls / cols as f64) * smooth
            } else {
                nll
            }
        }
    };
    (loss, lse)
}

/// A row's `(cross-entropy loss without z-loss, lse)` from its kernel statistics, in f64.
pub(crate) fn row_loss(p: &Prepared, fi: &FastInputs, i: usize, st: &RowStats) -> (f64, f64) {
    let target = match &p.class {
        None => RowTarget::Probabilities,
        Some(c) if c[i] < 0 => RowTarget::Ignored,
        Some(_) => RowTarget::Class { w_y: fi.w_y(p, i) },
    };
    partial_loss(&fi.partial(p, i, st), target, fi.ls, p.cols, p.w_total)
}

/// Every row's `(loss, lse)`: losses in f64 for the reduction, lse as the f32 output.
pub(crate) fn row_losses(
    p: &Prepared,
    fi: &FastInputs,
    stats: &[RowStats],
) -> (Vec<f64>, Vec<f32>) {
    // Independent rows, in parallel; the order is kept (the reduction that follows is serial,
    // so results do not depend on the thread count).
    stats
        .par_iter()
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

/// Assembles a fast backend's result from every row's loss (without z-loss, [`row_loss`])
/// and lse: the reduced loss, the per-row lse, and the gradient (`[B, C]`, assembled by the
/// caller in its element type) when it was asked for.
pub(crate) fn finish_losses<G>(
    p: &Prepared,
    o: &CrossEntropyOptions,
    ce: &[f64],
    lse: Vec<f32>,
    grad: Option<G>,
) -> CrossEntropyOutput<G> {
    let (loss, sums) = reduce(p, o, ce, &lse);
    CrossEntropyOutput {
        loss,
        grad,
        lse: Array1::from_vec(lse),
        sums,
    }
}
