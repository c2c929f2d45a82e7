//! The surrogates on the CPU: rayon over blocks of rows (row ops) or elements (element-wise
//! ops). The row ops exponentiate in f32 with the crate's vectorizable `exp` and sum and form
//! gradients in f64; the element-wise ops and the multi-class hinge compute in f64 (their
//! weights, scores and parameters up to `f32::MAX` make products that f32 intermediates would
//! overflow or underflow). Formulas: [`crate::surrogates`].

use super::batch::ELEMS_PER_TASK;
use super::exp::exp;
use super::pointwise::{binary_element, pairwise, sigmoid};
use crate::cross_entropy::Reduction;
use crate::error::Result;
use crate::scale::ExpScale;
use crate::surrogates::smoothings::power_max_row;
use crate::surrogates::{
    check_power_input, flat, grad_scale, macro_f1_from_columns, matrix, output, prepare, reduce,
    Prepared, Surrogate, SurrogateOutput, Value,
};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

/// What multiplies `p_j` in a row's weighted sum `f = Σ g_j p_j` (see `weighted_row`).
#[derive(Copy, Clone)]
pub(crate) enum Weights {
    /// `g_j = x_j` (Boltzmann), kept relative to the row max.
    X,
    /// `g_j = j` (soft-argmax).
    Index,
    /// `g_j = [j = y]` (smooth accuracy).
    Target(u32),
}

/// The exponent's scale `κ` of a softmax-weighted op: Boltzmann's `|β|` (multiplied in) or
/// `1/T` (divided by `T`, which stays exact for subnormal `T` where `1/T` overflows).
#[derive(Copy, Clone)]
pub(crate) enum Kappa {
    /// `κ = |β|`.
    Beta(f32),
    /// `κ = 1/T`.
    Temperature(f32),
}

impl Kappa {
    fn scale(self) -> ExpScale {
        match self {
            Kappa::Beta(b) => ExpScale::new(b as f64, 1.0),
            Kappa::Temperature(t) => ExpScale::temperature(t, 1.0),
        }
    }

    /// `κ·v` in f64 (no parameter and no row makes it overflow before the final rounding).
    #[inline]
    fn times(self, v: f64) -> f64 {
        match self {
            Kappa::Beta(b) => v * b as f64,
            Kappa::Temperature(t) => v / t as f64,
        }
    }

    fn is_zero(self) -> bool {
        matches!(self, Kappa::Beta(b) if b == 0.0)
    }
}

/// One row of the softmax-weighted family, with `p = softmax(κ·s·x)` (`s = ±1`, `κ ≥ 0`):
/// returns `f = Σ g_j p_j` (for `Weights::X`, `s·f` in the units of `x`) and writes
/// `grad_j = u·p_j·(a + κ(g_j − f))`, the gradient of `u·f` (with `a = 1` for Boltzmann, where
/// `g` depends on `x`). Rows outside the softmax table's finite case give NaN everywhere.
/// The exponent is formed as `crate::scale` says; the sums and the gradient in f64.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weighted_row(
    x: &[f32],
    sign: f32,
    kappa: Kappa,
    g: Weights,
    a: f32,
    u: f32,
    grad: &mut [f32],
) -> f32 {
    let mut m = f32::NEG_INFINITY;
    let (mut nan, mut pos_inf, mut inf) = (false, false, false);
    for &v in x {
        let v = sign * v;
        nan |= v.is_nan();
        pos_inf |= v == f32::INFINITY;
        inf |= v.is_infinite();
        m = m.max(v);
    }
    if nan || pos_inf || m == f32::NEG_INFINITY || (kappa.is_zero() && inf) {
        grad.fill(f32::NAN);
        return f32::NAN;
    }
    let gj = |j: usize, v: f32| -> f64 {
        match g {
            Weights::X => v as f64 - m as f64,
            Weights::Index => j as f64,
            Weights::Target(y) => (j == y as usize) as u8 as f64,
        }
    };
    let sc = kappa.scale().row(m);
    // e_j = exp(κ(s·x_j − m)) is stored in grad while summing; −inf entries give exactly 0
    // and are skipped in the linear sum (their g would be −inf, and 0·inf is NaN).
    // The two sums run in f64: this loop is scalar anyway (its exp and g_j dominate), and an
    // f32 running sum of C terms can lose C half-ulps when its rounding errors line up (one
    // dominant term, then many equal terms near half an ulp of it: tests/summation.rs).
    let (mut s, mut l) = (0.0f64, 0.0f64);
    for (j, (gr, &v)) in grad.iter_mut().zip(x).enumerate() {
        let v = sign * v;
        let e = exp(sc.shifted(v, |a, b, c| a * b + c) * sc.c);
        *gr = e;
        s += e as f64;
        if e > 0.0 {
            l += gj(j, v) * e as f64;
        }
    }
    let f = l / s;
    // The gradient in f64: `κ(g_j − f)` and `x_j − m` can exceed f32 where the product with
    // `p_j` does not (this loop is scalar anyway).
    let (u, a) = (u as f64, a as f64);
    for (j, (gr, &v)) in grad.iter_mut().zip(x).enumerate() {
        let p = *gr as f64 / s;
        *gr = if p > 0.0 {
            (u * (a * p + kappa.times(p * (gj(j, sign * v) - f)))) as f32
        } else {
            0.0
        };
    }
    match g {
        Weights::X => (sign as f64 * (m as f64 + f)) as f32,
        _ => f as f32,
    }
}

/// One row of the multi-class hinge: returns the row loss, writes the row gradient (times
/// `scale`, the reduction's factor). In f64: `z_j = (x_j − x_y) + margin` (exact for ties and
/// nearby values, and no overflow for rows spanning more than `f32::MAX`), each term weighted
/// by `w_y/C`.
pub(crate) fn margin_row(
    x: &[f32],
    y: usize,
    (p, margin): (u32, f32),
    w: f32,
    scale: f32,
    grad: &mut [f32],
) -> f32 {
    if x.iter().any(|v| !v.is_finite()) {
        grad.fill(f32::NAN);
        return f32::NAN;
    }
    let wc = w as f64 / x.len() as f64;
    let scale = scale as f64;
    let (mut loss, mut gy) = (0.0f64, 0.0f64);
    let (xy, margin) = (x[y] as f64, margin as f64);
    for (j, (g, &v)) in grad.iter_mut().zip(x).enumerate() {
        let z = (v as f64 - xy) + margin;
        *g = 0.0;
        if j != y && z > 0.0 {
            loss += wc * if p == 1 { z } else { z * z };
            let d = wc * if p == 1 { 1.0 } else { 2.0 * z } * scale;
            *g = d as f32;
            gy += d;
        }
    }
    grad[y] = -gy as f32;
    loss as f32
}

/// Runs each row through `f(row index, row, grad row) -> value`, in parallel.
fn par_rows<F>(x: &[f32], rows: usize, cols: usize, f: F) -> (Vec<f32>, Vec<f32>)
where
    F: Fn(usize, &[f32], &mut [f32]) -> f32 + Sync,
{
    let mut value = vec![0.0f32; rows];
    let mut grad = vec![0.0f32; rows * cols];
    if cols == 0 {
        for (i, v) in value.iter_mut().enumerate() {
            *v = f(i, &[], &mut []);
        }
        return (value, grad);
    }
    let per = (ELEMS_PER_TASK / cols).max(1);
    value
        .par_chunks_mut(per)
        .zip(grad.par_chunks_mut(per * cols))
        .enumerate()
        .for_each(|(k, (v, g))| {
            for (r, (v, g)) in v.iter_mut().zip(g.chunks_exact_mut(cols)).enumerate() {
                let i = k * per + r;
                *v = f(i, &x[i * cols..(i + 1) * cols], g);
            }
        });
    (value, grad)
}

/// Runs one surrogate call on the CPU.
pub(crate) fn surrogate(isa: super::isa::CpuIsa, call: &Surrogate) -> Result<SurrogateOutput> {
    let pr = prepare(call)?;
    let (rows, cols) = (pr.rows, pr.cols);
    match call {
        Surrogate::BoltzmannMax { x, beta } => {
            let c = x.as_standard_layout();
            let sign = if *beta < 0.0 { -1.0 } else { 1.0 };
            let k = Kappa::Beta(beta.abs());
            let (v, g) = par_rows(flat(&c)?, rows, cols, |_, r, g| {
                weighted_row(r, sign, k, Weights::X, 1.0, 1.0, g)
            });
            Ok(output(
                Value::PerRow(Array1::from(v)),
                matrix(g, rows, cols)?,
            ))
        }
        Surrogate::SoftArgmax { x, temperature } => {
            let c = x.as_standard_layout();
            let k = Kappa::Temperature(*temperature);
            let (v, g) = par_rows(flat(&c)?, rows, cols, |_, r, g| {
                weighted_row(r, 1.0, k, Weights::Index, 0.0, 1.0, g)
            });
            Ok(output(
                Value::PerRow(Array1::from(v)),
                matrix(g, rows, cols)?,
            ))
        }
        Surrogate::SmoothAccuracy {
            logits,
            temperature,
            ..
        } => {
            let c = logits.as_standard_layout();
            let (k, u) = (Kappa::Temperature(*temperature), 1.0 / rows as f32);
            let (v, g) = par_rows(flat(&c)?, rows, cols, |i, r, g| {
                weighted_row(r, 1.0, k, Weights::Target(pr.class[i]), 0.0, u, g)
            });
            let (a, sums) = reduce(&v, Reduction::Mean);
            Ok(SurrogateOutput {
                sums: Some(sums),
                ..output(Value::Scalar(a.unwrap_or(f32::NAN)), matrix(g, rows, cols)?)
            })
        }
        Surrogate::SmoothF1Macro {
            logits,
            temperature,
            ..
        } => macro_f1(isa, logits, &pr, *temperature),
        Surrogate::SmoothF1Binary { logits, .. } => binary_f1(logits, &pr),
        Surrogate::Smoothing { x, op } => {
            // In f64 by the reference's own definitions, rounded once: at most ~10 terms per
            // element for the floor (crate::surrogates::smoothings).
            let (v, g) = crate::surrogates::smoothings::elementwise(x.view(), *op);
            let f = |a: ndarray::Array2<f64>| a.mapv(|v| v as f32);
            Ok(output(Value::Matrix(f(v)), f(g)))
        }
        Surrogate::PowerMax { x, p } => {
            // In f64 by the reference's own definition, rounded once.
            check_power_input(x.view())?;
            let c = x.as_standard_layout();
            let (v, g) = par_rows(flat(&c)?, rows, cols, |_, r, g| {
                let mut g64 = vec![0.0; r.len()];
                let wide = r.iter().map(|&v| v as f64);
                let v = power_max_row(wide, *p as f64, g64.iter_mut());
                g.iter_mut().zip(&g64).for_each(|(g, &w)| *g = w as f32);
                v as f32
            });
            Ok(output(
                Value::PerRow(Array1::from(v)),
                matrix(g, rows, cols)?,
            ))
        }
        Surrogate::PairwiseMax { a, b, form } => {
            let (ca, cb) = (a.as_standard_layout(), b.as_standard_layout());
            let (sa, sb) = (flat(&ca)?, flat(&cb)?);
            let n = rows * cols;
            let (mut v, mut ga, mut gb) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            v.par_chunks_mut(ELEMS_PER_TASK)
                .zip(ga.par_chunks_mut(ELEMS_PER_TASK))
                .zip(gb.par_chunks_mut(ELEMS_PER_TASK))
                .enumerate()
                .for_each(|(k, ((v, ga), gb))| {
                    let at = k * ELEMS_PER_TASK;
                    for i in 0..v.len() {
                        (v[i], ga[i], gb[i]) = pairwise(sa[at + i], sb[at + i], *form);
                    }
                });
            Ok(SurrogateOutput {
                value: Value::Matrix(matrix(v, rows, cols)?),
                grad: matrix(ga, rows, cols)?,
                grad_b: Some(matrix(gb, rows, cols)?),
                sums: None,
            })
        }
        Surrogate::Binary {
            logits,
            loss,
            options,
            ..
        } => {
            let c = logits.as_standard_layout();
            let x = flat(&c)?;
            let n = rows * cols;
            let labels = pr.labels.as_deref().unwrap_or(&[]);
            let scale = grad_scale(options.reduction, n);
            let (mut l, mut g) = (vec![0.0f32; n], vec![0.0f32; n]);
            l.par_chunks_mut(ELEMS_PER_TASK)
                .zip(g.par_chunks_mut(ELEMS_PER_TASK))
                .enumerate()
                .for_each(|(k, (l, g))| {
                    let at = k * ELEMS_PER_TASK;
                    for i in 0..l.len() {
                        let e = at + i;
                        let pw = pr.pos_weight.as_ref().map_or(1.0, |p| p[e % cols]);
                        let w = pr.weight.as_ref().map_or(1.0, |w| w[e]);
                        (l[i], g[i]) = binary_element(*loss, x[e], labels[e], pw, w, scale);
                    }
                });
            let (value, sums) = match reduce(&l, options.reduction) {
                (Some(s), sums) => (Value::Scalar(s), sums),
                (None, sums) => (Value::Matrix(matrix(l, rows, cols)?), sums),
            };
            Ok(SurrogateOutput {
                sums: Some(sums),
                ..output(value, matrix(g, rows, cols)?)
            })
        }
        Surrogate::MultiMargin {
            logits, options, ..
        } => {
            let c = logits.as_standard_layout();
            let scale = grad_scale(options.reduction, rows);
            let (v, g) = par_rows(flat(&c)?, rows, cols, |i, r, g| {
                let y = pr.class[i] as usize;
                let w = pr.weight.as_ref().map_or(1.0, |w| w[y]);
                margin_row(r, y, (options.p, options.margin), w, scale, g)
            });
            let (value, sums) = match reduce(&v, options.reduction) {
                (Some(s), sums) => (Value::Scalar(s), sums),
                (None, sums) => (Value::PerRow(Array1::from(v)), sums),
            };
            Ok(SurrogateOutput {
                sums: Some(sums),
                ..output(value, matrix(g, rows, cols)?)
            })
        }
    }
}

fn binary_f1(logits: &ArrayView2<f32>, pr: &Prepared) -> Result<SurrogateOutput> {
    let c = logits.as_standard_layout();
    let x = flat(&c)?;
    let y = pr.labels.as_deref().unwrap_or(&[]);
    let (tp, sp, sy) = x
        .par_iter()
        .zip(y)
        .map(|(&x, &y)| {
            let p = sigmoid(x) as f64;
            (p * y as f64, p, y as f64)
        })
        .reduce(|| (0.0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    let d = sp + sy;
    let (f, g): (f64, Vec<f32>) = if d.is_nan() {
        (f64::NAN, vec![f32::NAN; x.len()])
    } else if d == 0.0 {
        (0.0, vec![0.0; x.len()])
    } else {
        let f = 2.0 * tp / d;
        let (ff, inv_d) = (f as f32, (1.0 / d) as f32);
        let g = x
            .par_iter()
            .zip(y)
            .map(|(&x, &y)| {
                let p = sigmoid(x);
                p * (1.0 - p) * (2.0 * y - ff) * inv_d
            })
            .collect();
        (f, g)
    };
    Ok(output(
        Value::Scalar(f as f32),
        matrix(g, pr.rows, pr.cols)?,
    ))
}

fn macro_f1(
    isa: super::isa::CpuIsa,
    logits: &ArrayView2<f32>,
    pr: &Prepared,
    t: f32,
) -> Result<SurrogateOutput> {
    let (rows, cols) = (pr.rows, pr.cols);
    let p = super::batch::row_op(
        isa,
        crate::rows::RowOp::Softmax,
        logits.view().into(),
        t,
        crate::DType::F32,
    )?
    .into_typed::<f32, ndarray::Ix2>()?;
    // Column sums in f64, one pass over the rows.
    let (mut tp, mut pred, mut count) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for (i, row) in p.outer_iter().enumerate() {
        let y = pr.class[i] as usize;
        for (s, &v) in pred.iter_mut().zip(row.iter()) {
            *s += v as f64;
        }
        tp[y] += row[y] as f64;
        count[y] += 1.0;
    }
    let (f, coef) = macro_f1_from_columns(&tp, &pred, &count);
    let coef: Vec<(f32, f32)> = coef.iter().map(|&(h, v)| (h as f32, v as f32)).collect();
    let ps = p.as_slice().unwrap_or(&[]);
    let (_, g) = par_rows(ps, rows, cols, |i, pr_row, g| {
        // grad_ij = p_ij (g_ij − Σ_k p_ik g_ik) / T with g_ik = v_k + 2[y_i = k] h_k.
        let y = pr.class[i] as usize;
        let gk = |k: usize| coef[k].1 + if k == y { 2.0 * coef[k].0 } else { 0.0 };
        let r: f32 = pr_row.iter().enumerate().map(|(k, &p)| p * gk(k)).sum();
        for (j, (o, &p)) in g.iter_mut().zip(pr_row).enumerate() {
            *o = p * (gk(j) - r) / t;
        }
        0.0
    });
    let grad = if f.is_nan() {
        Array2::from_elem((rows, cols), f32::NAN)
    } else {
        matrix(g, rows, cols)?
    };
    Ok(output(Value::Scalar(f as f32), grad))
}
