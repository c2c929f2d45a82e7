//! Cross-entropy on the CPU, per row in passes over a row that stays in cache (the same
//! quantities as shaders/cross_entropy.wgsl, which computes them in one online pass; what they
//! are and why they are normalized: `crate::cross_entropy::fast`):
//!
//! 1. the max `m` of the (soft-capped) logits `x'` and the NaN / +inf flags;
//! 2. `s = Σ e^{x' − m}`, storing each `e` into the gradient row when the gradient is wanted,
//!    and, when smoothing or probability targets need it, the linear sum
//!    `a = σ·Σ_finite k̂_j (x'_j − m)` and the kinds of −inf met;
//! 3. the gradient from the stored `e` (one exp per element in all), the target's entry formed
//!    as `γ(p_y − 1) + …`, never as `p_y·A − B`, so it keeps full precision when `p_y → 1`
//!    (Liger-Kernel's note on cancellation), times the chain factor `1 − tanh²(x/c)` under
//!    softcap and the row's `2^n`.
//!
//! The loss is finished from the row's statistics in f64 by `cross_entropy::finish`.

use super::arith::{stream_f32_rows, Arith};
use super::batch::{half_out, next_f32, put_row_bufs, take_row_bufs};
use super::ce_stats::{stats, stats_online, Cfg};
use super::exp::{Fused, Fused512, Separate};
use super::isa::CpuIsa;
use crate::cross_entropy::fast::{
    fast_inputs, flag, needs_linear, unnormalize, FastInputs, RowCoef, RowStats,
};
use crate::cross_entropy::{
    finish, prepare, CrossEntropyOptions, CrossEntropyOutput, Prepared, Targets,
};
use crate::element::{with_dtype, DType, Element, MatrixView, Tensor};
use crate::error::{Error, Result};
use ndarray::{ArrayD, ArrayView2, IxDyn};
use rayon::prelude::*;

/// One row: its statistics, and its gradient written into `g` when asked for. `t` holds
/// `tanh(x/c)` under softcap (for the chain factor).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row<A: Arith, E: Element, O: Element>(
    cfg: &Cfg,
    x: &[E],
    t: &[f32],
    next: &[f32],
    q: Option<&[f32]>,
    rc: &RowCoef,
    g: &mut [f32],
    mut out: Option<&mut [O]>,
) -> RowStats {
    // The gradient is formed in `g`, then narrowed into `out` when there is one.
    let emit = |g: &[f32], out: Option<&mut [O]>| {
        if let Some(o) = out {
            A::narrow(g, o, cfg.stream);
        }
    };
    // Forward only: one read of the row (ce_stats.rs); with the gradient, the terms are
    // stored against the row's max for the gradient pass.
    let mut st = if cfg.grad {
        stats::<A, E>(cfg, x, q, Some(&mut *g), next)
    } else {
        stats_online::<A, E>(cfg, x, q)
    };
    let y = rc.class;
    if y >= 0 && q.is_none() {
        st.xy = x[y as usize].to_f32();
    }
    if !cfg.grad {
        return st;
    }
    if q.is_none() && y < 0 {
        g.fill(0.0);
        emit(g, out);
        return st;
    }
    if st.flags & (flag::NAN | flag::POS_INF) != 0 || st.s == 0.0 {
        g.fill(f32::NAN);
        emit(g, out);
        return st;
    }
    // g_j = p_j·(α + ζ·lse) − β·k̂_j, and for the target γ(p_y − 1) + p_y(α + ζ·lse − γ) − β k̂_y.
    let lse = st.m + st.s.ln();
    let alpha = rc.alpha + rc.zeta * lse;
    let (beta, gamma) = (if cfg.lin { rc.beta } else { 0.0 }, rc.gamma);
    let inv_s = 1.0 / st.s;
    let yk = if q.is_none() { y as usize } else { usize::MAX };
    // g holds e_j = e^{x'_j − m} from pass 2; p_j = e_j / s.
    let p_y = if yk != usize::MAX { g[yk] * inv_s } else { 0.0 };
    let target = |beta: f32| {
        let k = if beta != 0.0 { cfg.k(yk, q) } else { 0.0 };
        gamma * (p_y - 1.0) + p_y * (alpha - gamma) - beta * k
    };
    if let Some(o) = out.as_deref_mut() {
        if cfg.softcap.is_none()
            && rc.exp == 0
            && (beta == 0.0 || (cfg.weight.is_none() && q.is_none()))
        {
            // k̂ enters only through β: with β = 0 or k̂ ≡ 1, and nothing after the update,
            // g_j·(α/s) − β goes straight into the output in its type, one pass instead of an
            // update and a conversion.
            A::affine_into(g, [inv_s * alpha, -beta, 1.0, -0.0], o, cfg.stream);
            if yk != usize::MAX {
                o[yk] = O::from_f32(target(beta));
            }
            return st;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let simd = A::SIMD;
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    if simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `stats`.
        unsafe {
            super::avx2::grad_update(g, inv_s * alpha, beta, cfg.weight, q, |j| cfg.k(j, q))
        };
    } else if beta != 0.0 {
        for (j, gj) in g.iter_mut().enumerate() {
            *gj = *gj * inv_s * alpha - beta * cfg.k(j, q);
        }
    } else {
        let scale = inv_s * alpha;
        for gj in g.iter_mut() {
            *gj *= scale;
        }
    }
    if yk != usize::MAX {
        g[yk] = target(beta);
    }
    if cfg.softcap.is_some() {
        // d(c·tanh(x/c))/dx = 1 − tanh²(x/c), from tanh itself (x'/c would lose it for
        // subnormal c).
        for (gj, &tj) in g.iter_mut().zip(t) {
            *gj *= 1.0 - tj * tj;
        }
    }
    if rc.exp != 0 {
        for gj in g.iter_mut() {
            *gj = unnormalize(*gj, rc.exp);
        }
    }
    emit(g, out);
    st
}

struct Block<'a, E, O> {
    x: &'a [E],
    q: Option<&'a [f32]>,
    coef: &'a [RowCoef],
    stats: &'a mut [RowStats],
    g: &'a mut [O],
}

macro_rules! ce_block_body {
    ($A:ty, $cfg:ident, $b:ident) => {{
        let c = $cfg.cols;
        // The soft-capped row and its tanh, the f32 gradient row.
        let mut bf = take_row_bufs();
        for i in 0..$b.stats.len() {
            let next = next_f32($b.x, i, c);
            let xr = &$b.x[i * c..(i + 1) * c];
            let qr = $b.q.map(|q| &q[i * c..(i + 1) * c]);
            let coef = &$b.coef[i];
            let g = &mut $b.g[if $cfg.grad { i * c..(i + 1) * c } else { 0..0 }];
            $b.stats[i] = if let Some(cap) = $cfg.softcap {
                // tanh(±inf) = ±1: soft-capped logits are finite unless NaN.
                bf.tanhs.clear();
                bf.tanhs
                    .extend(xr.iter().map(|&v| (v.to_f32() / cap).tanh()));
                bf.capped.clear();
                bf.capped.extend(bf.tanhs.iter().map(|&t| cap * t));
                let (xr, tanhs) = (&bf.capped[..], &bf.tanhs[..]);
                let (g, out) = half_out(g, &mut bf.out, stream_f32_rows::<$A>($cfg.stream, c));
                row::<$A, f32, O>($cfg, xr, tanhs, next, qr, coef, g, out)
            } else {
                let (g, out) = half_out(g, &mut bf.out, stream_f32_rows::<$A>($cfg.stream, c));
                row::<$A, E, O>($cfg, xr, &[], next, qr, coef, g, out)
            };
        }
        put_row_bufs(bf);
    }};
}

fn ce_block<E: Element, O: Element>(isa: CpuIsa, cfg: &Cfg, b: Block<E, O>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide512<E: Element, O: Element>(cfg: &Cfg, b: Block<E, O>) {
            ce_block_body!(Fused512, cfg, b)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<E: Element, O: Element>(cfg: &Cfg, b: Block<E, O>) {
            ce_block_body!(Fused, cfg, b)
        }
        match isa {
            // SAFETY: a `CpuIsa` reaches a kernel only after `check_supported` (or detection)
            // found the processor has its features.
            CpuIsa::Avx512 => return unsafe { wide512(cfg, b) },
            CpuIsa::Avx2 => return unsafe { wide(cfg, b) },
            CpuIsa::Baseline => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa; // one build on other targets
    ce_block_body!(Separate, cfg, b)
}

/// The CPU cross-entropy of logits of any element type, the gradient in `out`.
pub(crate) fn cross_entropy(
    isa: CpuIsa,
    logits: MatrixView<'_>,
    targets: &Targets,
    o: &CrossEntropyOptions,
    out: DType,
) -> Result<CrossEntropyOutput<Tensor>> {
    let p = prepare(logits.dim(), targets, o)?;
    let fi = fast_inputs(&p, o);
    let (stats, grad) = planned(isa, logits, &p, &fi, o, out)?;
    Ok(finish(&p, &fi, o, &stats, grad))
}

/// A prepared call (its checked inputs `p` and kernel inputs `fi`; a whole call's or a
/// vocabulary shard's, see `crate::shard`) on logits of any element type: every row's
/// statistics, and the gradient in `out` when `o.gradient`.
pub(crate) fn planned(
    isa: CpuIsa,
    logits: MatrixView<'_>,
    p: &Prepared,
    fi: &FastInputs,
    o: &CrossEntropyOptions,
    out: DType,
) -> Result<(Vec<RowStats>, Option<Tensor>)> {
    with_dtype!(MatrixView, logits, |a: E| match out {
        DType::F32 => typed::<E, f32>(isa, a, p, fi, o),
        DType::F16 => typed::<E, half::f16>(isa, a, p, fi, o),
        DType::BF16 => typed::<E, half::bf16>(isa, a, p, fi, o),
    })
}

fn typed<E: Element, O: Element>(
    isa: CpuIsa,
    logits: ArrayView2<E>,
    p: &Prepared,
    fi: &FastInputs,
    o: &CrossEntropyOptions,
) -> Result<(Vec<RowStats>, Option<Tensor>)> {
    let mut grad = if o.gradient {
        super::alloc::output_vec::<O>(logits.len())
    } else {
        Vec::new()
    };
    let stats = run(isa, logits, p, fi, o, &mut grad)?;
    let grad = o
        .gradient
        .then(|| ArrayD::from_shape_vec(IxDyn(&[p.rows, p.cols]), grad).map(O::tag))
        .transpose()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok((stats, grad))
}

/// The CPU cross-entropy with the gradient (when `o.gradient`) written into `grad` (`B·C`
/// elements, row-major); the output's `grad` is `None`.
pub(crate) fn cross_entropy_into<E: Element, O: Element>(
    isa: CpuIsa,
    logits: ArrayView2<E>,
    targets: &Targets,
    o: &CrossEntropyOptions,
    grad: &mut [O],
) -> Result<CrossEntropyOutput<()>> {
    let p = prepare(logits.dim(), targets, o)?;
    let fi = fast_inputs(&p, o);
    let stats = run(isa, logits, &p, &fi, o, grad)?;
    Ok(finish(&p, &fi, o, &stats, None))
}

/// Runs the row passes over every row in parallel blocks: the rows' statistics, and the
/// gradient into `grad` when `o.gradient`.
fn run<E: Element, O: Element>(
    isa: CpuIsa,
    logits: ArrayView2<E>,
    p: &Prepared,
    fi: &FastInputs,
    o: &CrossEntropyOptions,
    grad: &mut [O],
) -> Result<Vec<RowStats>> {
    let (rows, cols) = (p.rows, p.cols);
    let x = logits.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("logits could not be made contiguous".into()))?;
    let cfg = Cfg {
        cols,
        weight: fi.weight.as_deref(),
        lin: needs_linear(p, o),
        sigma: fi.sigma,
        softcap: o.softcap,
        grad: o.gradient,
        stream: std::mem::size_of_val(grad) >= super::arith::STREAM_MIN_BYTES,
    };
    let mut stats = vec![RowStats::default(); rows];
    if let Some(per) = super::batch::ELEMS_PER_TASK.checked_div(cols) {
        let per = per.max(1);
        let qs = fi.probs_slice()?;
        let gchunk = if o.gradient { per * cols } else { 0 };
        let mut gparts: Vec<&mut [O]> = if o.gradient {
            grad.chunks_mut(gchunk).collect()
        } else {
            (0..rows.div_ceil(per)).map(|_| &mut [][..]).collect()
        };
        stats
            .par_chunks_mut(per)
            .zip(gparts.par_iter_mut())
            .enumerate()
            .for_each(|(k, (st, g))| {
                let r0 = k * per;
                let n = st.len();
                ce_block(
                    isa,
                    &cfg,
                    Block {
                        x: &xs[r0 * cols..(r0 + n) * cols],
                        q: qs.map(|q| &q[r0 * cols..(r0 + n) * cols]),
                        coef: &fi.coef[r0..r0 + n],
                        stats: st,
                        g,
                    },
                );
            });
    }
    Ok(stats)
}
