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
//! Passes 1 and 2 go a block at a time, in one read of the row (`rows::online`), except for
//! a gradient row of one block; where a block raises the max, the terms stored before it
//! keep their own max and pass 3 scales each run of blocks by its own factor (rows.rs says
//! how softmax does the same). At `[512, 128256]` the gradient call took 27.3-28.9 ms in two
//! passes, 22.7-23.0 in one read (two threads, a memcpy of its bytes 20.1-20.5).
//!
//! Each row's loss is finished from its statistics in f64 (`cross_entropy::fast::row_loss`)
//! inside the row's block, while they are in registers: a whole call keeps no per-row vector
//! of statistics and makes no second pass (at `[65536, 1000]` the separate pass, its vectors
//! and the per-row vectors of coefficients, weights and upstream gradients the forward call
//! does not need took about 2 ms of its 13-16, measured by timing each stage). A vocabulary
//! shard's call ([`planned`]) returns the statistics.

use super::arith::{stream_f32_rows, Arith};
use super::batch::{after_f32, half_out, put_row_bufs, take_row_bufs};
use super::ce_stats::{stats, stats_online, Cfg};
use super::exp::{Fused, Fused512, Separate};
use super::isa::CpuIsa;
use super::rows::{run_factor, ONLINE_BLOCK};
use crate::cross_entropy::fast::{
    fast_inputs, flag, needs_linear, row_loss, unnormalize, FastInputs, RowCoef, RowStats,
};
use crate::cross_entropy::{
    finish_losses, prepare, CrossEntropyOptions, CrossEntropyOutput, Prepared, Targets,
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
    (g, runs): (&mut [f32], &mut Vec<(usize, f32)>),
    mut out: Option<&mut [O]>,
) -> RowStats {
    // The gradient is formed in `g`, then narrowed into `out` when there is one.
    let emit = |g: &[f32], out: Option<&mut [O]>| {
        if let Some(o) = out {
            A::narrow(g, o, cfg.stream);
        }
    };
    // One read of the row (ce_stats.rs); with the gradient, the terms are stored, each run
    // of blocks' against its own max, for the gradient pass. A gradient row of one block
    // takes the two passes instead (max, then exp-sum from L1: the same reads), measured
    // faster at [65536, 1000] (two threads: 22.9-24.2 ms against 26.7-28.2 through `online`;
    // not found why; the forward-only call showed no difference).
    let mut st = if cfg.grad && x.len() <= ONLINE_BLOCK {
        let st = stats::<A, E>(cfg, x, q, Some(&mut *g), next);
        runs.clear();
        runs.push((0, st.m));
        st
    } else {
        let store = cfg.grad.then_some((&mut *g, &mut *runs));
        stats_online::<A, E>(cfg, x, q, next, store)
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
    let yk = if q.is_none() { y as usize } else { usize::MAX };
    // g holds e_j = e^{x'_j − m_k} from pass 2, m_k the max its run of blocks was summed
    // against; p_j = e_j·f_k (`rows::run_factor`, T = 1). Run k spans columns
    // runs[k].0..runs[k + 1].0.
    let factor = |mk: f32| run_factor(mk, st.m, 1.0, st.s as f64);
    let cols = g.len();
    let run_end = |k: usize| runs.get(k + 1).map_or(cols, |r| r.0);
    let p_y = if yk != usize::MAX {
        g[yk] * factor(runs[runs.partition_point(|r| r.0 <= yk) - 1].1)
    } else {
        0.0
    };
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
            for (k, &(j0, mk)) in runs.iter().enumerate() {
                let j1 = run_end(k);
                let (g, o) = (&g[j0..j1], &mut o[j0..j1]);
                let c = [factor(mk) * alpha, -beta, 1.0, -0.0];
                let patch = (j0..j1).contains(&yk).then(|| (yk - j0, target(beta)));
                A::affine_patched_into(g, c, o, cfg.stream, patch);
            }
            return st;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let simd = A::SIMD;
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    for (k, &(j0, mk)) in runs.iter().enumerate() {
        let (j1, f) = (run_end(k), factor(mk));
        let g = &mut g[j0..j1];
        if simd {
            let (w, q_run) = (cfg.weight.map(|w| &w[j0..j1]), q.map(|q| &q[j0..j1]));
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `simd` only in the builds that run on AVX2 + FMA; `w` and `q_run` are
            // as long as `g`.
            unsafe {
                super::avx2::grad_update(g, f * alpha, beta, w, q_run, |j| cfg.k(j0 + j, q))
            };
        } else if beta != 0.0 {
            for (j, gj) in g.iter_mut().enumerate() {
                *gj = *gj * f * alpha - beta * cfg.k(j0 + j, q);
            }
        } else {
            let scale = f * alpha;
            for gj in g.iter_mut() {
                *gj *= scale;
            }
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

/// Where a block leaves its rows: their statistics (a vocabulary shard's call, merged later),
/// or their finished losses and lse, formed while the statistics are still in registers (a
/// whole call: no per-row vector of statistics, no second pass over the rows).
enum RowsOut<'a> {
    Stats(&'a mut [RowStats]),
    Losses {
        /// The block's first row.
        r0: usize,
        ce: &'a mut [f64],
        lse: &'a mut [f32],
    },
}

impl<'a> RowsOut<'a> {
    /// A block's outputs, its first row `r0`.
    fn from_rows(rows: Rows<'a>, r0: usize) -> Self {
        match rows {
            Rows::Stats(s) => RowsOut::Stats(s),
            Rows::Losses(ce, lse) => RowsOut::Losses { r0, ce, lse },
        }
    }

    /// Row `i` of the block.
    #[inline(always)]
    fn put(&mut self, i: usize, st: RowStats, p: &Prepared, fi: &FastInputs) {
        match self {
            RowsOut::Stats(s) => s[i] = st,
            RowsOut::Losses { r0, ce, lse } => {
                let (l, e) = row_loss(p, fi, *r0 + i, &st);
                (ce[i], lse[i]) = (l, e as f32);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            RowsOut::Stats(s) => s.len(),
            RowsOut::Losses { ce, .. } => ce.len(),
        }
    }
}

struct Block<'a, E, O> {
    p: &'a Prepared,
    fi: &'a FastInputs,
    x: &'a [E],
    q: Option<&'a [f32]>,
    /// The rows' classes (class targets), read where `coef` is empty (a call without the
    /// gradient need not form the coefficients).
    class: Option<&'a [i32]>,
    coef: &'a [RowCoef],
    rows: RowsOut<'a>,
    g: &'a mut [O],
}

macro_rules! ce_block_body {
    ($A:ty, $cfg:ident, $b:ident) => {{
        let c = $cfg.cols;
        // The soft-capped row and its tanh, the f32 gradient row.
        let mut bf = take_row_bufs();
        for i in 0..$b.rows.len() {
            let next = after_f32($b.x, i, c);
            let xr = &$b.x[i * c..(i + 1) * c];
            let qr = $b.q.map(|q| &q[i * c..(i + 1) * c]);
            let coef = &$b.coef.get(i).copied().unwrap_or(RowCoef {
                class: $b.class.map_or(0, |c| c[i]),
                ..RowCoef::default()
            });
            let g = &mut $b.g[if $cfg.grad { i * c..(i + 1) * c } else { 0..0 }];
            let st = if let Some(cap) = $cfg.softcap {
                // tanh(±inf) = ±1: soft-capped logits are finite unless NaN.
                bf.tanhs.clear();
                bf.tanhs
                    .extend(xr.iter().map(|&v| (v.to_f32() / cap).tanh()));
                bf.capped.clear();
                bf.capped.extend(bf.tanhs.iter().map(|&t| cap * t));
                let (xr, tanhs) = (&bf.capped[..], &bf.tanhs[..]);
                // `next` still points into the logits (for the next row's tanh loop); counted
                // in f32 against an f16 / bf16 `next`, the prefetch runs twice as far ahead.
                let (g, out) = half_out(g, &mut bf.out, stream_f32_rows::<$A>($cfg.stream, c));
                row::<$A, f32, O>($cfg, xr, tanhs, next, qr, coef, (g, &mut bf.runs), out)
            } else {
                let (g, out) = half_out(g, &mut bf.out, stream_f32_rows::<$A>($cfg.stream, c));
                row::<$A, E, O>($cfg, xr, &[], next, qr, coef, (g, &mut bf.runs), out)
            };
            $b.rows.put(i, st, $b.p, $b.fi);
        }
        if $cfg.stream {
            <$A>::fence_streams();
        }
        put_row_bufs(bf);
    }};
}

fn ce_block<E: Element, O: Element>(isa: CpuIsa, cfg: &Cfg, mut b: Block<E, O>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide512<E: Element, O: Element>(cfg: &Cfg, mut b: Block<E, O>) {
            ce_block_body!(Fused512, cfg, b)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<E: Element, O: Element>(cfg: &Cfg, mut b: Block<E, O>) {
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
    with_dtype!(MatrixView, logits, |a: E| match out {
        DType::F32 => whole::<E, f32>(isa, a, targets, o),
        DType::F16 => whole::<E, half::f16>(isa, a, targets, o),
        DType::BF16 => whole::<E, half::bf16>(isa, a, targets, o),
    })
}

/// [`cross_entropy`] in the output type `O`.
fn whole<E: Element, O: Element>(
    isa: CpuIsa,
    logits: ArrayView2<E>,
    targets: &Targets,
    o: &CrossEntropyOptions,
) -> Result<CrossEntropyOutput<Tensor>> {
    let (r, grad) = with_grad::<O, _>(logits.dim(), o.gradient, |g| {
        cross_entropy_into(isa, logits, targets, o, g)
    })?;
    Ok(CrossEntropyOutput {
        loss: r.loss,
        grad,
        lse: r.lse,
        sums: r.sums,
    })
}

/// A vocabulary shard's prepared call (its checked inputs `p` and kernel inputs `fi`, see
/// `crate::shard`) on logits of any element type: every row's statistics (merged with the
/// other shards' before the loss is formed), and the gradient in `out` when `o.gradient`.
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
    with_grad::<O, _>(logits.dim(), o.gradient, |g| {
        // Zeroed by calloc, so each block first-touches its own rows' pages.
        let mut stats = super::alloc::output_vec::<RowStats>(p.rows);
        run(isa, logits, p, fi, o, g, Rows::Stats(&mut stats))?;
        Ok(stats)
    })
}

/// `f` with a fresh `[rows, cols]` gradient in `O` to write when `gradient` (else an empty
/// one), and that gradient as a tensor.
fn with_grad<O: Element, T>(
    (rows, cols): (usize, usize),
    gradient: bool,
    f: impl FnOnce(&mut [O]) -> Result<T>,
) -> Result<(T, Option<Tensor>)> {
    let mut grad = if gradient {
        super::alloc::output_vec::<O>(rows * cols)
    } else {
        Vec::new()
    };
    let r = f(&mut grad)?;
    let grad = gradient
        .then(|| ArrayD::from_shape_vec(IxDyn(&[rows, cols]), grad).map(O::tag))
        .transpose()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok((r, grad))
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
    let fi = fast_inputs(&p, o, o.gradient);
    let mut ce = super::alloc::output_vec::<f64>(p.rows);
    let mut lse = super::alloc::output_vec::<f32>(p.rows);
    run(
        isa,
        logits,
        &p,
        &fi,
        o,
        grad,
        Rows::Losses(&mut ce, &mut lse),
    )?;
    Ok(finish_losses(&p, o, &ce, lse, None))
}

/// Where [`run`] leaves every row: see [`RowsOut`].
enum Rows<'a> {
    Stats(&'a mut [RowStats]),
    Losses(&'a mut [f64], &'a mut [f32]),
}

/// Runs the row passes over every row in parallel blocks: the rows' statistics or losses into
/// `rows`, and the gradient into `grad` when `o.gradient`.
fn run<E: Element, O: Element>(
    isa: CpuIsa,
    logits: ArrayView2<E>,
    p: &Prepared,
    fi: &FastInputs,
    o: &CrossEntropyOptions,
    grad: &mut [O],
    rows_out: Rows<'_>,
) -> Result<()> {
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
        guess: !o.gradient && matches!(rows_out, Rows::Losses(..)),
        stream: std::mem::size_of_val(grad) >= super::arith::STREAM_MIN_BYTES,
    };
    let Some(per) = super::batch::ELEMS_PER_TASK.checked_div(cols) else {
        // No columns: every row's statistics are those of an empty row (lse −inf).
        let mut put = RowsOut::from_rows(rows_out, 0);
        for i in 0..rows {
            put.put(i, RowStats::default(), p, fi);
        }
        return Ok(());
    };
    let per = per.max(1);
    let qs = fi.probs_slice()?;
    let gchunk = if o.gradient { per * cols } else { 0 };
    let mut gparts: Vec<&mut [O]> = if o.gradient {
        grad.chunks_mut(gchunk).collect()
    } else {
        (0..rows.div_ceil(per)).map(|_| &mut [][..]).collect()
    };
    let outs: Vec<RowsOut> = match rows_out {
        Rows::Stats(s) => s.chunks_mut(per).map(RowsOut::Stats).collect(),
        Rows::Losses(ce, lse) => ce
            .chunks_mut(per)
            .zip(lse.chunks_mut(per))
            .enumerate()
            .map(|(k, (ce, lse))| RowsOut::from_rows(Rows::Losses(ce, lse), k * per))
            .collect(),
    };
    outs.into_par_iter()
        .zip(gparts.par_iter_mut())
        .enumerate()
        .for_each(|(k, (rows_k, g))| {
            let r0 = k * per;
            let n = rows_k.len();
            ce_block(
                isa,
                &cfg,
                Block {
                    p,
                    fi,
                    x: &xs[r0 * cols..(r0 + n) * cols],
                    q: qs.map(|q| &q[r0 * cols..(r0 + n) * cols]),
                    class: p.class.as_ref().map(|c| &c[r0..r0 + n]),
                    coef: fi.coef.get(r0..r0 + n).unwrap_or(&[]),
                    rows: rows_k,
                    g,
                },
            );
        });
    Ok(())
}
