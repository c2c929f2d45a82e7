//! The fused linear cross-entropy's oracle and tolerance, stated once.
//!
//! **Oracle.** The logits `z = H·Wᵀ + b` in f64 from the f32 (or widened f16 / bf16) inputs,
//! the f64 cross-entropy reference on them (`cross_entropy_f64_logits`, checked against finite
//! differences elsewhere), and the chain rule in f64: `dH = G·W`, `dW = Gᵀ·H`, `db = Σ_i G`.
//! Nothing here runs the library's own linear cross-entropy.
//!
//! **Tolerance.** A logit summed in f32 in any order is within
//! `Δ_i = γ_{D+1}·max_j (Σ_k |h_ik w_jk| + |b_j|)` of the exact one, `γ_n = n·u/(1 − n·u)`,
//! `u = 2⁻²⁴` (Higham §3.1; the bias is one more addition). Every result is then the
//! cross-entropy's on logits moved by at most `Δ_i`, so on top of the crate's tolerance
//! `tol(V)` for those logits:
//! - the row loss moves by at most `Δ_i·L_i`, `L_i = 2·(w_max·Q_i + 2|z|·(|lse_i| + Δ_i))`
//!   (`Q_i = max(1, Σ_j q_ij)`: `lse` and each `z_j` move by `Δ_i`, and the loss is a
//!   combination of `lse − z_j` with coefficients summing to at most `w_max·Q_i`, plus the
//!   z-loss `z·lse²`); the lse by `Δ_i`;
//! - an element of the logits' gradient `G_ij = s_i·(A_i·p_ij − c_ij)·χ_ij` by at most
//!   `ΔG_ij = tol(V)·(T_ij + |G_ij|) + 2Δ_i·(2·s_i·A_i·p_ij + |G_ij|/c)`. The first part is
//!   the kernels' own error: each entry is a short sum of terms (the reference's
//!   `s_ce·(1−ls)·w_y·(p_j − [j=y])`, `s_ce·(ls/V)·(W·p_j − w_j)`, `s_z·2z·lse·p_j`, or for
//!   probabilities `s_ce·(K·p_j − w_j q'_j)`), each formed to a few ulps of itself (the
//!   exponent `x_j − lse` to ulps of its arguments, `exp` to ulps), so within `tol(V)` of the
//!   sum `T_ij` of their magnitudes; summed over a row this stays `O(tol·s_i)`, where the
//!   crate's per-element form `tol·(s_i + |G_ij|)` would grow with `V`. The second part, where
//!   `A_i = w_max·Q_i + 2|z|·(|lse_i| + 1)` bounds the softmax coefficient, `p_ij` moves by at
//!   most `2Δ_i·p_ij` (first order; the factor 2 covers the second for `Δ_i ≤ 0.1`, which
//!   each case asserts), and the soft-cap factor `χ = 1 − tanh²(z/c)` by `|G_ij|·Δ_i·0.77/c`
//!   (its log-derivative is at most `2/c`; so `2Δ_i/c` is used);
//! - the products of the gradients add their own rounding: `|ΔdH| ≤ ΔG·|W| + γ_V·|G|·|W|`,
//!   `|ΔdW| ≤ ΔGᵀ·|H| + γ_N·|G|ᵀ·|H|`, `|Δdb| ≤ Σ_i ΔG + γ_N·Σ_i |G|`, and the final rounding
//!   to the output type (`u_out·|r|`, plus half the spacing of f16's subnormals).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use smoothmax::cross_entropy::reference::cross_entropy_f64_logits;
use smoothmax::{CrossEntropyOptions, Loss, ReferenceCrossEntropy, Targets};

use super::tol;

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Hidden states `N(0, 1)` `[n, d]`, weights `N(0, 4/d)` `[v, d]` (logits of order 2), bias
/// `N(0, 1/4)` `[v]`, from `seed`.
pub fn inputs(n: usize, d: usize, v: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array1<f32>) {
    let mut r = super::Rng(seed);
    let sw = 2.0 / (d.max(1) as f64).sqrt();
    let h = Array2::from_shape_fn((n, d), |_| r.normal() as f32);
    let w = Array2::from_shape_fn((v, d), |_| (r.normal() * sw) as f32);
    let b = Array1::from_shape_fn(v, |_| (r.normal() * 0.5) as f32);
    (h, w, b)
}

fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    nu / (1.0 - nu)
}

/// The exact result of one case and the bounds each computed value must meet.
pub struct Oracle {
    pub ce: ReferenceCrossEntropy,
    pub dh: Array2<f64>,
    pub dw: Array2<f64>,
    pub db: Array1<f64>,
    /// Per row: the bound on the loss and on the lse.
    pub loss_bound: Array1<f64>,
    pub lse_bound: Array1<f64>,
    pub dh_bound: Array2<f64>,
    pub dw_bound: Array2<f64>,
    pub db_bound: Array1<f64>,
    /// The largest `Δ_i`.
    pub delta: f64,
}

/// The oracle of `cross_entropy(h·wᵀ + b)` with `o` (its gradient always computed).
pub fn oracle(
    h: ArrayView2<f32>,
    w: ArrayView2<f32>,
    b: Option<ArrayView1<f32>>,
    targets: &Targets,
    o: &CrossEntropyOptions,
) -> Oracle {
    let h64 = h.mapv(|v| v as f64);
    let w64 = w.mapv(|v| v as f64);
    let b64 = b.map(|b| b.mapv(|v| v as f64));
    let (n, d) = h64.dim();
    let v = w64.nrows();
    let mut z = h64.dot(&w64.t());
    let mut a = h64.mapv(f64::abs).dot(&w64.mapv(f64::abs).t());
    if let Some(b) = &b64 {
        z += b;
        a += &b.mapv(f64::abs);
    }
    let og = CrossEntropyOptions {
        gradient: true,
        ..o.clone()
    };
    let ce = cross_entropy_f64_logits(z.view(), targets, &og).expect("reference cross-entropy");
    let g = ce.grad.clone().expect("gradient");
    let dh = g.dot(&w64);
    let dw = g.t().dot(&h64);
    let db = g.sum_axis(Axis(0));

    let gam = gamma(d + 1);
    let delta_i: Array1<f64> = a
        .rows()
        .into_iter()
        .map(|r| gam * r.iter().fold(0.0f64, |m, &x| m.max(x)))
        .collect();
    let w_max = o
        .weight
        .as_ref()
        .map_or(1.0, |w| w.iter().fold(0.0f32, |m, &x| m.max(x)) as f64);
    let q_i: Vec<f64> = match targets {
        Targets::Probabilities(q) => q
            .outer_iter()
            .map(|r| r.iter().map(|&x| x.abs() as f64).sum::<f64>().max(1.0))
            .collect(),
        _ => vec![1.0; n],
    };
    let zl = (o.z_loss as f64).abs();
    // Each row's class (None: ignored) or smoothed probability targets, for `T_ij`.
    let ls = o.label_smoothing as f64;
    let wj = |j: usize| o.weight.as_ref().map_or(1.0, |w| w[j] as f64);
    let w_all: f64 = (0..v).map(wj).sum();
    let ignore = o.effective_ignore_index();
    let class: Option<Vec<Option<usize>>> = match targets {
        Targets::Classes(t) => Some(
            t.iter()
                .map(|&y| (y != ignore).then_some(y as usize))
                .collect(),
        ),
        Targets::ClassesI32(t) => Some(
            t.iter()
                .map(|&y| (y as i64 != ignore).then_some(y as usize))
                .collect(),
        ),
        Targets::ClassesU32(t) => Some(
            t.iter()
                .map(|&y| (y as i64 != ignore).then_some(y as usize))
                .collect(),
        ),
        Targets::Probabilities(_) => None,
    };
    let q_s = |i: usize, j: usize| match targets {
        Targets::Probabilities(q) => q[[i, j]] as f64 * (1.0 - ls) + ls / v as f64,
        _ => 0.0,
    };
    let tv = tol(v);
    let (s_ce, s_z) = match o.reduction {
        smoothmax::Reduction::Mean => (1.0 / ce.sums.weight, 1.0 / ce.sums.z_rows),
        _ => (1.0, 1.0),
    };
    let upstream = |i: usize| match &o.upstream {
        smoothmax::Upstream::One => 1.0,
        smoothmax::Upstream::Scalar(s) => (*s as f64).abs(),
        smoothmax::Upstream::PerRow(u) => (u[i] as f64).abs(),
    };
    let mut loss_bound = Array1::zeros(n);
    let mut lse_bound = Array1::zeros(n);
    let mut dg = Array2::<f64>::zeros((n, v));
    let cap = o.softcap.map(|c| c as f64);
    for i in 0..n {
        let (di, lse) = (delta_i[i], ce.lse[i]);
        if lse.is_finite() {
            assert!(
                di <= 0.1,
                "row {i}: logit error bound {di} too large for this oracle"
            );
        }
        // (The z-loss terms only where there is a z-loss: lse is −inf for a row of no class.)
        let zt = |x: f64| if zl > 0.0 { 2.0 * zl * x } else { 0.0 };
        let l_i = 2.0 * (w_max * q_i[i] + zt(lse.abs() + di));
        loss_bound[i] = tv * (1.0 + ce.per_row[i].abs()) + di * l_i;
        lse_bound[i] = tv * (1.0 + lse.abs()) + di;
        let s_i = upstream(i) * s_ce.max(if zl > 0.0 { s_z } else { 0.0 });
        let (sc_i, sz_i) = (upstream(i) * s_ce, upstream(i) * s_z);
        let a_i = w_max * q_i[i] + zt(lse.abs() + 1.0);
        let k_i: f64 = match &class {
            None => (0..v).map(|j| wj(j) * q_s(i, j)).sum(),
            Some(_) => 0.0,
        };
        for j in 0..v {
            let zj = match cap {
                Some(c) => c * (z[[i, j]] / c).tanh(),
                None => z[[i, j]],
            };
            let p = (zj - lse).exp();
            let gij = g[[i, j]].abs();
            let chi = cap.map_or(0.0, |c| gij / c);
            // The magnitudes of G_ij's terms (0 for an ignored row, whose gradient is 0).
            let t = match &class {
                Some(c) => match c[i] {
                    None => 0.0,
                    Some(y) => {
                        let hit = if j == y { 1.0 } else { 0.0 };
                        sc_i * ((1.0 - ls) * wj(y) * (p + hit)
                            + ls / v as f64 * (w_all * p + wj(j)))
                            + sz_i * zt(lse.abs()) * p
                    }
                },
                None => {
                    sc_i * (p * k_i.abs() + (wj(j) * q_s(i, j)).abs()) + sz_i * zt(lse.abs()) * p
                }
            };
            dg[[i, j]] = tv * (t + gij) + 2.0 * di * (2.0 * s_i * a_i * p + chi);
        }
    }
    let (ha, wa, ga) = (h64.mapv(f64::abs), w64.mapv(f64::abs), g.mapv(f64::abs));
    let dh_bound = dg.dot(&wa) + ga.dot(&wa) * gamma(v);
    let dw_bound = dg.t().dot(&ha) + ga.t().dot(&ha) * gamma(n);
    let db_bound = dg.sum_axis(Axis(0)) + ga.sum_axis(Axis(0)) * gamma(n);
    Oracle {
        ce,
        dh,
        dw,
        db,
        loss_bound,
        lse_bound,
        dh_bound,
        dw_bound,
        db_bound,
        delta: delta_i.iter().fold(0.0, |m: f64, &x| m.max(x)),
    }
}

/// The rounding of a result to its output type: `(u, a)`, within `u·|r| + a` (`a`: half the
/// spacing of the type's subnormals, which have no relative accuracy).
pub type OutRounding = (f64, f64);

/// f32 results, already within their bounds: no further rounding.
pub const F32_OUT: OutRounding = (0.0, 0.0);

/// The rounding to `dtype` (f16: u = 2⁻¹¹, subnormals 2⁻²⁴ apart; bf16: u = 2⁻⁸, subnormals
/// 2⁻¹³³ apart).
pub fn out_rounding(dtype: smoothmax::DType) -> OutRounding {
    match dtype {
        smoothmax::DType::F16 => (2f64.powi(-11), 2f64.powi(-25)),
        smoothmax::DType::BF16 => (2f64.powi(-8), 2f64.powi(-134)),
        smoothmax::DType::F32 => F32_OUT,
    }
}

/// `|got − want| ≤ bound + u·|want| + a` element by element (`(u, a)` the output type's
/// rounding; NaN meets NaN, an infinity the same infinity).
pub fn assert_within(
    got: ArrayView1<f32>,
    want: ArrayView1<f64>,
    bound: ArrayView1<f64>,
    (u_out, a_out): OutRounding,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &b)) in got.iter().zip(&want).zip(&bound).enumerate() {
        let g = g as f64;
        if !w.is_finite() {
            assert!(
                (w.is_nan() && g.is_nan()) || g == w,
                "{what}[{i}]: got {g}, want {w}"
            );
            continue;
        }
        let lim = b + u_out * w.abs() + a_out;
        let err = (g - w).abs();
        assert!(
            err <= lim,
            "{what}[{i}]: got {g}, want {w}: error {err:e} > bound {lim:e}"
        );
    }
}

/// The reduced or per-row loss against the oracle.
pub fn assert_loss(got: &Loss<ndarray::IxDyn>, or: &Oracle, o: &CrossEntropyOptions, what: &str) {
    match got {
        Loss::PerRow(l) => {
            let l = l.iter().copied().collect::<Array1<f32>>();
            assert_within(
                l.view(),
                or.ce.per_row.view(),
                or.loss_bound.view(),
                F32_OUT,
                what,
            );
        }
        Loss::Scalar(s) => {
            let scale = match o.reduction {
                smoothmax::Reduction::Mean => {
                    1.0 / or.ce.sums.weight.min(or.ce.sums.z_rows.max(1.0))
                }
                _ => 1.0,
            };
            let b = (or.loss_bound.sum() * scale).max(0.0);
            assert_within(
                ndarray::arr1(&[*s]).view(),
                ndarray::arr1(&[or.ce.reduced]).view(),
                ndarray::arr1(&[b]).view(),
                F32_OUT,
                what,
            );
        }
    }
}
