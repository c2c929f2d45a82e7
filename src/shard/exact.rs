//! The f64 reference of a shard's pass: the statistics and the gradient from their
//! definitions ([`RowPartial`], `cross_entropy::reference`), with the merged `lse` and
//! `K = Σ_c w_c q'_c` of the whole row in place of the shard's own.

use super::pass::{ShardPass, ShardResult};
use crate::cross_entropy::fast::flag;
use crate::cross_entropy::RowPartial;
use crate::element::{MatrixView, Tensor};
use crate::error::Result;
use ndarray::{Array2, ArrayView2, Axis};

/// Runs `pass` in f64 on `logits` (the reference backend's shard pass).
pub(crate) fn run(pass: &ShardPass, logits: MatrixView<'_>) -> Result<ShardResult> {
    let x = logits.to_f32().mapv(|v| v as f64);
    let (partials, grad) = run_f64(pass, x.view());
    let grad = grad.map(|g| Tensor::narrow(g.mapv(|v| v as f32).into_dyn(), pass.out));
    Ok(ShardResult { partials, grad })
}

/// [`run`] on f64 logits (the fused linear cross-entropy's reference, whose logits are never
/// rounded to f32): the statistics and the f64 gradient.
pub(crate) fn run_f64(
    pass: &ShardPass,
    x: ArrayView2<f64>,
) -> (Vec<RowPartial>, Option<Array2<f64>>) {
    let st = &pass.setup;
    let (p, o) = (&st.p, &st.o);
    let (rows, cols) = (p.rows, p.cols);
    let cap = o.softcap.map(|c| c as f64);
    let linear = o.label_smoothing > 0.0 || p.probs.is_some();
    let mut partials = Vec::with_capacity(rows);
    let mut grad = pass
        .merged
        .as_ref()
        .map(|_| Array2::<f64>::zeros((rows, cols)));
    let (scale_ce, scale_z) = p.scales(o.reduction);
    let (ls, z) = (o.label_smoothing as f64, o.z_loss as f64);
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let raw: Vec<f64> = row.to_vec();
        let xs: Vec<f64> = match cap {
            Some(c) => raw.iter().map(|&v| c * (v / c).tanh()).collect(),
            None => raw.clone(),
        };
        // The statistics, from their definitions.
        let mut q = RowPartial {
            cols: cols as u32,
            ..RowPartial::EMPTY
        };
        let finite = || xs.iter().copied().filter(|v| v.is_finite());
        q.m = finite().fold(f64::NEG_INFINITY, f64::max);
        q.s = finite().map(|v| (v - q.m).exp()).sum();
        for (j, &v) in xs.iter().enumerate() {
            let k = if linear { st.k(i, j) } else { 0.0 };
            q.k_sum += k;
            if v.is_nan() {
                q.flags |= flag::NAN;
            } else if v == f64::INFINITY {
                q.flags |= flag::POS_INF;
            } else if v == f64::NEG_INFINITY {
                if linear {
                    q.flags |= match k {
                        k if k > 0.0 => flag::NEG_POS,
                        k if k < 0.0 => flag::NEG_NEG,
                        _ => flag::NEG_ZERO,
                    };
                }
            } else {
                q.lin += k * (v - q.m);
            }
        }
        let local = p.class.as_ref().map_or(0, |c| c[i]);
        if st.in_shard(i) {
            q.flags |= RowPartial::HAS_TARGET;
            q.xy = xs[local as usize];
        }
        partials.push(q);
        // The gradient with the whole row's lse and K.
        let (Some(g), Some(merged)) = (grad.as_mut(), pass.merged.as_ref()) else {
            continue;
        };
        if p.class.as_ref().is_some_and(|c| c[i] < 0) {
            continue; // ignored: 0
        }
        let mut gi = g.row_mut(i);
        let lse = merged[i].lse();
        if !lse.is_finite() {
            gi.fill(f64::NAN);
            continue;
        }
        let u = p.upstream.at(i) as f64;
        let (s_ce, s_z) = (u * scale_ce, u * scale_z);
        for j in 0..cols {
            let pj = (xs[j] - lse).exp();
            let ce = match &st.global {
                None => pj * merged[i].k_sum - st.k(i, j),
                Some(gl) => {
                    let w_y = st.weight(gl[i] as usize);
                    let hit = if st.in_shard(i) && j == local as usize {
                        1.0
                    } else {
                        0.0
                    };
                    (1.0 - ls) * w_y * (pj - hit)
                        + (ls / st.shard.total as f64) * (p.w_total * pj - st.k(i, j))
                }
            };
            let mut gj = s_ce * ce + s_z * 2.0 * z * lse * pj;
            if let Some(c) = cap {
                let t = (raw[j] / c).tanh();
                gj *= 1.0 - t * t;
            }
            gi[j] = gj;
        }
    }
    (partials, grad)
}
