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

use super::arith::Arith;
use super::batch::{half_out, next_f32, put_row_bufs, take_row_bufs};
use super::exp::{Fused, Fused512, Separate};
use super::isa::CpuIsa;
use super::lanes::{lanes_sum, L, SUM_BLOCK};
use super::rows::{exp_sum, row_max};
use crate::cross_entropy::fast::{
    fast_inputs, flag, needs_linear, unnormalize, FastInputs, RowCoef, RowStats,
};
use crate::cross_entropy::{
    finish, prepare, CrossEntropyOptions, CrossEntropyOutput, Prepared, Targets,
};
use crate::element::{with_dtype, DType, Element, MatrixView, Tensor};
use crate::error::{Error, Result};
use crate::scale::ExpScale;
use ndarray::{ArrayD, ArrayView2, IxDyn};
use rayon::prelude::*;

/// Per-call constants.
pub(crate) struct Cfg<'a> {
    pub cols: usize,
    /// Normalized class weights `ŵ`.
    pub weight: Option<&'a [f32]>,
    /// Smoothing or probability targets: the linear sum is needed.
    pub lin: bool,
    pub sigma: f32,
    pub softcap: Option<f32>,
    pub grad: bool,
    /// The gradient is large enough to store past the cache (see `arith::STREAM_MIN_BYTES`).
    pub stream: bool,
}

impl Cfg<'_> {
    /// `k̂_j`: the row's normalized probability-target weight (`q` given), else the normalized
    /// class weight (or 1).
    #[inline(always)]
    fn k(&self, j: usize, q: Option<&[f32]>) -> f32 {
        match q {
            Some(q) => q[j],
            None => self.weight.map_or(1.0, |w| w[j]),
        }
    }

    /// The −inf kind of class `j`, by the sign of `k̂_j` (kept non-zero where the exact one is).
    fn neg_kind(&self, j: usize, q: Option<&[f32]>) -> u32 {
        let k = self.k(j, q);
        if k == 0.0 {
            flag::NEG_ZERO
        } else if k > 0.0 {
            flag::NEG_POS
        } else {
            flag::NEG_NEG
        }
    }
}

/// Passes 1 and 2: the row's statistics (`xy` left to the caller); with `store`, each
/// `e^{x' − m}` is written there. `x` is the row in the logits' own type (or the soft-capped
/// row in f32).
#[inline(always)]
fn stats<A: Arith, E: Element>(
    cfg: &Cfg,
    x: &[E],
    q: Option<&[f32]>,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> RowStats {
    let (m, nan, pos_inf) = row_max::<A, E>(x);
    let mut st = RowStats {
        m,
        flags: if nan {
            flag::NAN
        } else if pos_inf {
            flag::POS_INF
        } else {
            0
        },
        ..RowStats::default()
    };
    if nan || pos_inf {
        return st;
    }
    // T = 1: the exponent is `x − m` (an overflowing difference is correctly −inf).
    st.s = exp_sum::<A, E>(x, &ExpScale::new(1.0, 1.0).row(m), store, next);
    if !cfg.lin {
        return st;
    }
    let (a, neg) = if A::AVX512 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX512 is true only for `Fused512`, used only where AVX-512F was detected;
        // the weight and q rows are as long as x.
        let r = unsafe {
            super::avx512::linear_sums(x, cfg.sigma, -m * cfg.sigma, cfg.weight, q, |j| cfg.k(j, q))
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = unreachable!("AVX-512 arithmetic exists on x86-64 only");
        r
    } else {
        let (mut a_total, mut neg) = (0.0f64, false);
        A::f32_blocks(x, |j, b| {
            let (a, n) = linear_sums::<A>(cfg, b, j, q, m);
            a_total += a as f64;
            neg |= n;
        });
        (a_total as f32, neg)
    };
    st.a = a;
    if neg {
        for (j, v) in x.iter().enumerate() {
            if v.to_f32() == f32::NEG_INFINITY {
                st.flags |= cfg.neg_kind(j, q);
            }
        }
    }
    st
}

/// The linear sum `Σ_finite k̂_j·σ(x_j − m)` over the columns `j0..` of a row held in `x`
/// (f32), and whether any of them is −inf.
#[inline(always)]
fn linear_sums<A: Arith>(
    cfg: &Cfg,
    x: &[f32],
    j0: usize,
    q: Option<&[f32]>,
    m: f32,
) -> (f32, bool) {
    let (sigma, msig) = (cfg.sigma, -m * cfg.sigma);
    let cols = j0..j0 + x.len();
    if A::SIMD {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SIMD is true only for `Fused` and `Fused512`, used only where AVX2 + FMA
        // were detected; the weight and q slices are as long as x.
        return unsafe {
            super::avx2::linear_sums(
                x,
                sigma,
                msig,
                cfg.weight.map(|w| &w[cols.clone()]),
                q.map(|q| &q[cols.clone()]),
                |j| cfg.k(j0 + j, q),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("SIMD arithmetic exists on x86-64 only");
    }
    // Blocked like `exp_sum` (see `SUM_BLOCK`): f32 lanes per block, block sums in f64.
    let mut a_total = 0.0f64;
    for b0 in (0..x.len()).step_by(SUM_BLOCK) {
        let b1 = (b0 + SUM_BLOCK).min(x.len());
        let mut a = [0.0f32; L];
        let mut c0 = b0;
        while c0 < b1 {
            let len = L.min(b1 - c0);
            for l in 0..len {
                // σ(x − m) as fma(x, σ, −σm): cannot overflow; −inf exactly at −inf logits.
                let d = A::fma(x[c0 + l], sigma, msig);
                a[l] += if d > f32::NEG_INFINITY {
                    cfg.k(j0 + c0 + l, q) * d
                } else {
                    0.0
                };
            }
            c0 += L;
        }
        a_total += lanes_sum(a) as f64;
    }
    (a_total as f32, x.contains(&f32::NEG_INFINITY))
}

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
    let store = if cfg.grad { Some(&mut *g) } else { None };
    let mut st = stats::<A, E>(cfg, x, q, store, next);
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
                let (g, out) = half_out(g, &mut bf.out);
                row::<$A, f32, O>($cfg, xr, tanhs, next, qr, coef, g, out)
            } else {
                let (g, out) = half_out(g, &mut bf.out);
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
