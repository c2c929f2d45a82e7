//! Cross-entropy on the CPU: per row, one read for the statistics, then loss and gradient
//! while the row is hot. The same algorithm as shaders/cross_entropy.wgsl:
//!
//! - online `(m, s)` over the (soft-capped) logits `x'`;
//! - when smoothing or probability targets need them, the linear sums kept relative to the
//!   running max, `a = Σ k_j (x'_j − m)`, `b = Σ k_j` (finite `x'` only) and `Σ_all k_j`, with
//!   `k_j = w_j` (smoothing) or `w_j q'_j` (probabilities). When `m` grows,
//!   `a ← a + b·(m_old − m_new)`. Then `Σ k (lse − x') = (Σk)·ln s − a` is a sum of two
//!   non-negative terms: no cancellation, even under a +1e4 shift;
//! - the target's gradient is formed as `ty·(p_y − 1) + …`, never as `p_y·A − B`, so it keeps
//!   full precision when `p_y → 1` (Liger-Kernel's note on cancellation).

use super::exp::exp;
use crate::cross_entropy::{prepare, reduce, CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

const L: usize = 16;

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
    b: f32,
    k_all: f32,
    nan: bool,
    pos_inf: bool,
    /// −inf logits whose k is > 0, == 0, < 0: PyTorch's `−k·logp` there is +inf, NaN, −inf.
    neg_pos: bool,
    neg_zero: bool,
    neg_neg: bool,
}

#[inline(always)]
fn stats<const LIN: bool>(cfg: &Cfg, x: &[f32], q: Option<&[f32]>) -> Stats {
    let mut st = Stats {
        m: f32::MIN,
        ..Stats::default()
    };
    let (mut acc, mut a, mut b, mut ka) = ([0.0f32; L], [0.0f32; L], [0.0f32; L], [0.0f32; L]);
    let n = x.len();
    let mut j0 = 0;
    while j0 < n {
        let len = L.min(n - j0);
        let mut v = [f32::NEG_INFINITY; L];
        v[..len].copy_from_slice(&x[j0..j0 + len]);
        let mut kv = [0.0f32; L];
        if LIN {
            for (l, k) in kv.iter_mut().enumerate().take(len) {
                *k = cfg.k(j0 + l, q);
            }
        }
        let mut nonfinite = false;
        for &e in &v {
            nonfinite |= (e.to_bits() & 0x7fff_ffff) >= 0x7f80_0000;
        }
        if nonfinite {
            for l in 0..len {
                let e = v[l];
                if e.is_nan() {
                    st.nan = true;
                } else if e == f32::INFINITY {
                    st.pos_inf = true;
                } else if e == f32::NEG_INFINITY && LIN {
                    st.neg_pos |= kv[l] > 0.0;
                    st.neg_zero |= kv[l] == 0.0;
                    st.neg_neg |= kv[l] < 0.0;
                }
                if !e.is_finite() {
                    v[l] = f32::NEG_INFINITY;
                }
            }
        }
        let mut bm = f32::MIN;
        for &e in &v {
            bm = if e > bm { e } else { bm };
        }
        if bm > st.m {
            let r = exp(st.m - bm);
            for v in acc.iter_mut() {
                *v *= r;
            }
            // Before the first finite value a = b = 0: skip (m − bm may be −inf there).
            if LIN && st.m > f32::MIN {
                let d = st.m - bm;
                for (av, bv) in a.iter_mut().zip(&b) {
                    *av += bv * d;
                }
            }
            st.m = bm;
        }
        let m = st.m;
        for l in 0..L {
            let d = v[l] - m;
            acc[l] += exp(d);
            if LIN {
                let fin = d > f32::NEG_INFINITY;
                a[l] += if fin { kv[l] * d } else { 0.0 };
                b[l] += if fin { kv[l] } else { 0.0 };
                ka[l] += kv[l];
            }
        }
        j0 += L;
    }
    let sum = |mut v: [f32; L]| {
        let mut w = L;
        while w > 1 {
            w /= 2;
            for i in 0..w {
                v[i] += v[i + w];
            }
        }
        v[0]
    };
    st.s = sum(acc);
    if LIN {
        st.a = sum(a);
        st.b = sum(b);
        st.k_all = sum(ka);
    }
    st
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
fn row(cfg: &Cfg, x: &[f32], q: Option<&[f32]>, y: i32, u: f32, g: &mut [f32]) -> (f32, f32) {
    let lin = q.is_some() || cfg.smoothing;
    let st = if lin {
        stats::<true>(cfg, x, q)
    } else {
        stats::<false>(cfg, x, q)
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
        let inv_s = 1.0 / st.s;
        let m = st.m;
        for (j, (gj, &xj)) in g.iter_mut().zip(x).enumerate() {
            let p = exp(xj - m) * inv_s;
            let k = if coef != 0.0 { cfg.k(j, q) } else { 0.0 };
            *gj = p * a_coef - coef * k;
        }
        if yk != usize::MAX {
            let p = exp(x[yk] - m) * inv_s;
            let k = if coef != 0.0 { cfg.k(yk, q) } else { 0.0 };
            g[yk] = ty * (p - 1.0) + p * (a_coef - ty) - coef * k;
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
    ($cfg:ident, $b:ident) => {{
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
            let (l, s) = row($cfg, xr, qr, y, $b.up[i], g);
            $b.ce[i] = l;
            $b.lse[i] = s;
        }
    }};
}

fn ce_block(cfg: &Cfg, b: Block) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide(cfg: &Cfg, b: Block) {
            ce_block_body!(cfg, b)
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features `wide` was compiled for were just detected.
            return unsafe { wide(cfg, b) };
        }
    }
    ce_block_body!(cfg, b)
}

/// The CPU cross-entropy.
pub(crate) fn cross_entropy(
    logits: ArrayView2<f32>,
    targets: &Targets,
    o: &CrossEntropyOptions,
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
    let mut grad = if o.gradient {
        vec![0.0f32; rows * cols]
    } else {
        Vec::new()
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
    let loss = reduce(&p, o, &ce, &lse);
    let grad = if o.gradient {
        Some(
            Array2::from_shape_vec((rows, cols), grad)
                .map_err(|e| Error::InvalidInput(e.to_string()))?,
        )
    } else {
        None
    };
    Ok(CrossEntropyOutput {
        loss,
        grad,
        lse: Array1::from_vec(lse),
    })
}
