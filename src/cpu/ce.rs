//! Cross-entropy on the CPU, per row in passes over a row that stays in cache (the same
//! quantities as shaders/cross_entropy.wgsl, which computes them in one online pass):
//!
//! 1. the max `m` of the (soft-capped) logits `x'` and the NaN / +inf flags;
//! 2. `s = Σ e^{x' − m}`, storing each `e` into the gradient row when the gradient is wanted,
//!    and, when smoothing or probability targets need them, the linear sums relative to `m`:
//!    `a = Σ k_j (x'_j − m)` (finite `x'` only) and `Σ_all k_j`, with `k_j = w_j` (smoothing) or
//!    `w_j q'_j` (probabilities). Then `Σ k (lse − x') = (Σk)·ln s − a` is a sum of two
//!    non-negative terms: no cancellation, even under a +1e4 shift;
//! 3. the gradient from the stored `e` (one exp per element in all), the target's entry formed
//!    as `ty·(p_y − 1) + …`, never as `p_y·A − B`, so it keeps full precision when `p_y → 1`
//!    (Liger-Kernel's note on cancellation).

use super::exp::{Arith, Fused, Separate};
use super::rows::{exp_sum, lanes_sum, row_max, L, SUM_BLOCK};
use super::CpuIsa;
use crate::cross_entropy::{
    finish, prepare, reduce, CrossEntropyOptions, CrossEntropyOutput, Targets,
};
use crate::error::{Error, Result};
use crate::scale::ExpScale;
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Per-call constants.
pub(crate) struct Cfg<'a> {
    pub cols: usize,
    pub one_minus_ls: f32,
    pub ls_over_c: f32,
    pub smoothing: bool,
    pub w_total: f32,
    pub z: f32,
    pub softcap: Option<f32>,
    pub weight: Option<&'a [f32]>,
    pub scale_ce: f32,
    pub scale_z: f32,
    pub grad: bool,
}

impl Cfg<'_> {
    #[inline(always)]
    fn w(&self, j: usize) -> f32 {
        self.weight.map_or(1.0, |w| w[j])
    }
    /// `k_j`: the weight of class j in the linear sums.
    #[inline(always)]
    fn k(&self, j: usize, q: Option<&[f32]>) -> f32 {
        match q {
            Some(q) => self.w(j) * (q[j] * self.one_minus_ls + self.ls_over_c),
            None => self.w(j),
        }
    }
}

/// Statistics of one row: normalizer, linear sums, and which kinds of −inf were met.
#[derive(Default)]
struct Stats {
    m: f32,
    s: f32,
    a: f32,
    k_all: f32,
    nan: bool,
    pos_inf: bool,
    /// −inf logits whose k is > 0, == 0, < 0: PyTorch's `−k·logp` there is +inf, NaN, −inf.
    neg_pos: bool,
    neg_zero: bool,
    neg_neg: bool,
}

/// Passes 1 and 2. With `LIN`, the linear sums and the −inf kinds; with `store`, each
/// `e^{x' − m}` is written there.
#[inline(always)]
fn stats<A: Arith, const LIN: bool>(
    cfg: &Cfg,
    x: &[f32],
    q: Option<&[f32]>,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> Stats {
    let (m, nan, pos_inf) = row_max::<A>(x);
    let mut st = Stats {
        m,
        nan,
        pos_inf,
        ..Stats::default()
    };
    if nan || pos_inf {
        return st;
    }
    // T = 1: the exponent is `x − m` (an overflowing difference is correctly −inf).
    st.s = exp_sum::<A>(x, &ExpScale::new(1.0, 1.0).row(m), store, next);
    if LIN && A::SIMD {
        #[cfg(target_arch = "x86_64")]
        {
            let (oml, lsc) = if q.is_some() {
                (cfg.one_minus_ls, cfg.ls_over_c)
            } else {
                (1.0, 0.0)
            };
            // SAFETY: SIMD is true only for `Fused`, used only where AVX2 + FMA were detected;
            // weight and q rows are as long as x.
            let (a, k_all, neg) =
                unsafe { super::avx2::linear_sums(x, m, cfg.weight, q, oml, lsc, |j| cfg.k(j, q)) };
            st.a = a;
            st.k_all = k_all;
            if neg {
                classify_neg_inf(cfg, x, q, &mut st);
            }
        }
        return st;
    }
    if LIN {
        // Blocked like `exp_sum` (see `SUM_BLOCK`): f32 lanes per block, block sums in f64.
        let (mut a_total, mut k_total) = (0.0f64, 0.0f64);
        for b0 in (0..x.len()).step_by(SUM_BLOCK) {
            let b1 = (b0 + SUM_BLOCK).min(x.len());
            let (mut a, mut ka) = ([0.0f32; L], [0.0f32; L]);
            let mut j0 = b0;
            while j0 < b1 {
                let len = L.min(b1 - j0);
                for l in 0..len {
                    let k = cfg.k(j0 + l, q);
                    let d = x[j0 + l] - m;
                    // d is −inf exactly at the −inf logits (m is finite here).
                    a[l] += if d > f32::NEG_INFINITY { k * d } else { 0.0 };
                    ka[l] += k;
                }
                j0 += L;
            }
            a_total += lanes_sum(a) as f64;
            k_total += lanes_sum(ka) as f64;
        }
        st.a = a_total as f32;
        st.k_all = k_total as f32;
        if x.contains(&f32::NEG_INFINITY) {
            classify_neg_inf(cfg, x, q, &mut st);
        }
    }
    st
}

/// Which kinds of −inf logits a row holds (rare; decides NaN / ±inf losses as PyTorch does).
fn classify_neg_inf(cfg: &Cfg, x: &[f32], q: Option<&[f32]>, st: &mut Stats) {
    for (j, &v) in x.iter().enumerate() {
        if v == f32::NEG_INFINITY {
            let k = cfg.k(j, q);
            st.neg_pos |= k > 0.0;
            st.neg_zero |= k == 0.0;
            st.neg_neg |= k < 0.0;
        }
    }
}

/// PyTorch's value of `Σ −k·logp` given the −inf positions met: NaN beats ±inf, +inf and −inf
/// together are NaN.
#[inline(always)]
fn with_neg_inf(v: f32, st: &Stats) -> f32 {
    if st.neg_zero || (st.neg_pos && st.neg_neg) {
        f32::NAN
    } else if st.neg_pos {
        f32::INFINITY
    } else if st.neg_neg {
        f32::NEG_INFINITY
    } else {
        v
    }
}

/// One row: returns (CE loss without z-loss, lse) and writes the gradient row if asked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row<A: Arith>(
    cfg: &Cfg,
    x: &[f32],
    next: &[f32],
    q: Option<&[f32]>,
    y: i32,
    u: f32,
    g: &mut [f32],
) -> (f32, f32) {
    let lin = q.is_some() || cfg.smoothing;
    let store = if cfg.grad { Some(&mut *g) } else { None };
    let st = if lin {
        stats::<A, true>(cfg, x, q, store, next)
    } else {
        stats::<A, false>(cfg, x, q, store, next)
    };
    let finite = !st.nan && !st.pos_inf && st.s > 0.0;
    let lse = if st.nan {
        f32::NAN
    } else if st.pos_inf {
        f32::INFINITY
    } else if st.s == 0.0 {
        f32::NEG_INFINITY
    } else {
        st.m + st.s.ln()
    };
    if q.is_none() && y < 0 {
        g.fill(0.0);
        return (0.0, lse);
    }
    if !finite {
        g.fill(f32::NAN);
        return (f32::NAN, lse);
    }
    let ln_s = st.s.ln();
    let (s_ce, s_z) = (u * cfg.scale_ce, u * cfg.scale_z);
    let zt = s_z * 2.0 * cfg.z * lse;
    // g_j = p_j·A − coef·k_j, and for the target ty·(p_y − 1) + p_y·(A − ty) − coef·k_y.
    let (loss, a_coef, coef, ty, yk) = if q.is_some() {
        let loss = with_neg_inf(st.k_all * ln_s - st.a, &st);
        (loss, s_ce * st.k_all + zt, s_ce, 0.0, usize::MAX)
    } else {
        let yy = y as usize;
        let (xy, wy) = (x[yy], cfg.w(yy));
        let nll = if xy == f32::NEG_INFINITY {
            if wy > 0.0 {
                f32::INFINITY
            } else {
                f32::NAN
            }
        } else {
            wy * ((st.m - xy) + ln_s)
        };
        let loss = if cfg.smoothing {
            let smooth = with_neg_inf(cfg.w_total * ln_s - st.a, &st);
            cfg.one_minus_ls * nll + cfg.ls_over_c * smooth
        } else {
            nll
        };
        let ty = s_ce * cfg.one_minus_ls * wy;
        (
            loss,
            ty + s_ce * cfg.ls_over_c * cfg.w_total + zt,
            s_ce * cfg.ls_over_c,
            ty,
            yy,
        )
    };
    if cfg.grad {
        // g holds e_j = e^{x'_j − m} from pass 2; p_j = e_j / s.
        let inv_s = 1.0 / st.s;
        let p_y = if yk != usize::MAX { g[yk] * inv_s } else { 0.0 };
        #[cfg(target_arch = "x86_64")]
        let simd = A::SIMD;
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        if simd {
            #[cfg(target_arch = "x86_64")]
            {
                let (oml, lsc) = if q.is_some() {
                    (cfg.one_minus_ls, cfg.ls_over_c)
                } else {
                    (1.0, 0.0)
                };
                // SAFETY: as in `stats`.
                unsafe {
                    super::avx2::grad_update(
                        g,
                        inv_s * a_coef,
                        coef,
                        cfg.weight,
                        q,
                        oml,
                        lsc,
                        |j| cfg.k(j, q),
                    )
                };
            }
        } else if coef != 0.0 {
            for (j, gj) in g.iter_mut().enumerate() {
                *gj = *gj * inv_s * a_coef - coef * cfg.k(j, q);
            }
        } else {
            let scale = inv_s * a_coef;
            for gj in g.iter_mut() {
                *gj *= scale;
            }
        }
        if yk != usize::MAX {
            let k = if coef != 0.0 { cfg.k(yk, q) } else { 0.0 };
            g[yk] = ty * (p_y - 1.0) + p_y * (a_coef - ty) - coef * k;
        }
        if let Some(c) = cfg.softcap {
            // d(c·tanh(x/c))/dx = 1 − tanh², with tanh = x'/c.
            for (gj, &xj) in g.iter_mut().zip(x) {
                let t = xj / c;
                *gj *= 1.0 - t * t;
            }
        }
    }
    (loss, lse)
}

struct Block<'a> {
    x: &'a [f32],
    q: Option<&'a [f32]>,
    class: Option<&'a [i32]>,
    up: &'a [f32],
    ce: &'a mut [f32],
    lse: &'a mut [f32],
    g: &'a mut [f32],
}

macro_rules! ce_block_body {
    ($A:ty, $cfg:ident, $b:ident) => {{
        let c = $cfg.cols;
        let mut capped = Vec::new();
        for i in 0..$b.ce.len() {
            let mut xr = &$b.x[i * c..(i + 1) * c];
            if let Some(cap) = $cfg.softcap {
                // tanh(±inf) = ±1: soft-capped logits are finite unless NaN.
                capped.clear();
                capped.extend(xr.iter().map(|&v| cap * (v / cap).tanh()));
                xr = &capped;
            }
            let qr = $b.q.map(|q| &q[i * c..(i + 1) * c]);
            let y = $b.class.map_or(0, |cl| cl[i]);
            let g = if $cfg.grad {
                &mut $b.g[i * c..(i + 1) * c]
            } else {
                &mut [][..]
            };
            // Next row of raw logits, for prefetching (soft-capped rows are computed anyway).
            let next = $b.x.get((i + 1) * c..(i + 2) * c).unwrap_or(&[]);
            let (l, s) = row::<$A>($cfg, xr, next, qr, y, $b.up[i], g);
            $b.ce[i] = l;
            $b.lse[i] = s;
        }
    }};
}

fn ce_block(isa: CpuIsa, cfg: &Cfg, b: Block) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide512(cfg: &Cfg, b: Block) {
            ce_block_body!(Fused, cfg, b)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide(cfg: &Cfg, b: Block) {
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

/// The CPU cross-entropy; the gradient goes into `grad_out` when given (then the output's
/// `grad` is `None`), else into a new matrix.
pub(crate) fn cross_entropy(
    isa: CpuIsa,
    logits: ArrayView2<f32>,
    targets: &Targets,
    o: &CrossEntropyOptions,
    grad_out: Option<&mut [f32]>,
) -> Result<CrossEntropyOutput> {
    let p = prepare(logits.dim(), targets, o)?;
    let (rows, cols) = (p.rows, p.cols);
    let x = logits.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("logits could not be made contiguous".into()))?;
    let weight = o.weight.as_ref().map(|w| w.to_vec());
    let (scale_ce, scale_z) = p.scales(o.reduction);
    let cfg = Cfg {
        cols,
        one_minus_ls: 1.0 - o.label_smoothing,
        ls_over_c: o.label_smoothing / cols.max(1) as f32,
        smoothing: o.label_smoothing > 0.0,
        w_total: p.w_total as f32,
        z: o.z_loss,
        softcap: o.softcap,
        weight: weight.as_deref(),
        scale_ce: scale_ce as f32,
        scale_z: scale_z as f32,
        grad: o.gradient,
    };
    let mut ce = vec![0.0f32; rows];
    let mut lse = vec![f32::NEG_INFINITY; rows];
    let into = grad_out.is_some();
    let mut owned = if o.gradient && !into {
        super::alloc::output_vec(rows * cols)
    } else {
        Vec::new()
    };
    let grad: &mut [f32] = match grad_out {
        Some(g) => g,
        None => &mut owned,
    };
    if let Some(per) = super::ELEMS_PER_TASK.checked_div(cols) {
        let per = per.max(1);
        let qs = p.probs.as_ref().and_then(|q| q.as_slice());
        let class = p.class.as_deref();
        let gchunk = if o.gradient { per * cols } else { 0 };
        let mut gparts: Vec<&mut [f32]> = if o.gradient {
            grad.chunks_mut(gchunk).collect()
        } else {
            (0..rows.div_ceil(per)).map(|_| &mut [][..]).collect()
        };
        ce.par_chunks_mut(per)
            .zip(lse.par_chunks_mut(per))
            .zip(gparts.par_iter_mut())
            .enumerate()
            .for_each(|(k, ((ce, lse), g))| {
                let r0 = k * per;
                let n = ce.len();
                ce_block(
                    isa,
                    &cfg,
                    Block {
                        x: &xs[r0 * cols..(r0 + n) * cols],
                        q: qs.map(|q| &q[r0 * cols..(r0 + n) * cols]),
                        class: class.map(|c| &c[r0..r0 + n]),
                        up: &p.upstream[r0..r0 + n],
                        ce,
                        lse,
                        g,
                    },
                );
            });
    }
    if into {
        return Ok(CrossEntropyOutput {
            loss: reduce(&p, o, &ce, &lse),
            grad: None,
            lse: ndarray::Array1::from_vec(lse),
        });
    }
    finish(&p, o, ce, lse, owned)
}
