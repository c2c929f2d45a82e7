//! A cross-entropy row's statistics on the CPU (see ce.rs for the passes): the per-call
//! constants, the two-pass form (the gradient's, for rows of one block) and the one-read form
//! (the forward-only call's, and the gradient's for longer rows), each storing the terms for
//! the gradient when asked, and the linear sum that smoothing and probability targets need.

use super::arith::Arith;
use super::exp::bounded_row;
use super::lanes::{lanes_sum, L, SUM_BLOCK};
use super::lin_terms::Linear;
use super::rows::{exp_sum, kept, mark_run, online, row_max_flags, OnlineBlock, INF_BITS};
use crate::cross_entropy::fast::{flag, RowStats};
use crate::element::Element;
use crate::scale::{ExpScale, RowScale};

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
    /// The rows' losses are all that is wanted (no gradient, no statistics for a shard's
    /// merge, which take `m` as the max): the one-read pass may guess (`rows::online`).
    pub guess: bool,
    /// The gradient is large enough to store past the cache (see `arith::STREAM_MIN_BYTES`).
    pub stream: bool,
}

impl Cfg<'_> {
    /// `k̂_j`: the row's normalized probability-target weight (`q` given), else the normalized
    /// class weight (or 1).
    #[inline(always)]
    pub(super) fn k(&self, j: usize, q: Option<&[f32]>) -> f32 {
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
pub(super) fn stats<A: Arith, E: Element>(
    cfg: &Cfg,
    x: &[E],
    q: Option<&[f32]>,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> RowStats {
    let (m, nan, pos_inf, abits) = row_max_flags::<A, E>(x);
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
    let sc = bounded_row(&ExpScale::new(1.0, 1.0), m, abits);
    if !cfg.lin {
        st.s = exp_sum::<A, E>(x, &sc, store, next);
        return st;
    }
    let (s, a) = exp_linear_block::<A, E>(cfg, x, 0, q, &sc, (store, next), abits);
    (st.s, st.a) = (s as f32, a as f32);
    // Neither NaN nor +inf: a non-finite value is a −inf.
    if abits >= INF_BITS {
        st.flags |= neg_kinds(cfg, x, 0, q);
    }
    st
}

/// The −inf kinds of the −inf entries of `x`, columns `j0..` of a row.
fn neg_kinds<E: Element>(cfg: &Cfg, x: &[E], j0: usize, q: Option<&[f32]>) -> u32 {
    let mut flags = 0;
    for (j, v) in x.iter().enumerate() {
        if v.to_f32() == f32::NEG_INFINITY {
            flags |= cfg.neg_kind(j0 + j, q);
        }
    }
    flags
}

/// The linear sum `Σ_finite k̂_j·σ(x_j − m)` over `x`, columns `j0..` of a row (`q`: the whole
/// row's), by the build's loop over f32 blocks: where the
/// exp-sum cannot take it in its own loop (`exp_linear_block`: the baseline build, and blocks
/// outside the fused loops' domain: a −inf, logits beyond `2^119`).
#[inline(always)]
fn linear_block<A: Arith, E: Element>(
    cfg: &Cfg,
    x: &[E],
    j0: usize,
    q: Option<&[f32]>,
    m: f32,
) -> f64 {
    let mut a_total = 0.0f64;
    A::f32_blocks(x, |j, b| {
        a_total += linear_sums::<A>(cfg, b, j0 + j, q, m) as f64
    });
    a_total
}

/// The exp-sum (each term stored into `store` when given; `next`: see `rows::exp_sum`) and
/// the linear sum of `x`, columns `j0..` of a row (`q`: the whole row's): in one loop where
/// the build has one and `x` is in its domain (`lin_terms::Linear::fits`, given `abits`, the
/// largest `|x|`'s bits), else one after the other.
#[inline(always)]
fn exp_linear_block<A: Arith, E: Element>(
    cfg: &Cfg,
    x: &[E],
    j0: usize,
    q: Option<&[f32]>,
    sc: &RowScale,
    (mut store, next): (Option<&mut [f32]>, &[f32]),
    abits: u32,
) -> (f64, f64) {
    let m = sc.m;
    if super::exp::base2_fits(sc) && Linear::fits(abits, m, sc.h) {
        let lin = Linear {
            sigma: cfg.sigma,
            k: q.or(cfg.weight).map(|k| &k[j0..j0 + x.len()]),
        };
        if let Some(sums) = A::exp_linear_sums(x, sc, &lin, store.as_deref_mut(), next) {
            return sums;
        }
    }
    let s = exp_sum::<A, E>(x, sc, store, next) as f64;
    (s, linear_block::<A, E>(cfg, x, j0, q, m))
}

/// `Σ_finite k̂_j` over `x`, columns `j0..` of a row without NaN or +inf: the weight the
/// linear sum gives a shift of the max (`neg`: whether `x` holds a −inf, which adds nothing).
fn finite_weight<E: Element>(cfg: &Cfg, x: &[E], j0: usize, q: Option<&[f32]>, neg: bool) -> f64 {
    let cols = j0..j0 + x.len();
    if neg {
        let finite = |j: &usize| x[*j - j0].to_f32() > f32::NEG_INFINITY;
        return cols.filter(finite).map(|j| cfg.k(j, q) as f64).sum();
    }
    match (q, cfg.weight) {
        (Some(q), _) => q[cols].iter().map(|&v| v as f64).sum(),
        (None, Some(w)) => w[cols].iter().map(|&v| v as f64).sum(),
        (None, None) => x.len() as f64,
    }
}

/// Where [`stats_online`] stores the row's terms for the gradient: `g`, as long as the row,
/// each block's against the running max it was summed at, and `runs`, each run of blocks
/// sharing one max as its first column and that max.
pub(super) type Stored<'a> = (&'a mut [f32], &'a mut Vec<(usize, f32)>);

/// Passes 1 and 2 in one read of the row (`rows::online`; `after`: the rows after it, for
/// the prefetch), each term stored into `store` when given (the gradient's call): where a
/// block raises the max from `m₀` to `m`, the linear sum is shifted by `σ(m₀ − m)·Σ_finite k̂`
/// (in f64: the shift is exact to f64's precision, far below the f32 terms' own rounding).
/// A row with NaN or +inf goes through [`stats`], which stores nothing then (its gradient is
/// NaN). With `cfg.guess` and no `store`, blocks are guessed (`rows::online`): the sums, and
/// the row's `m`, are then against a reference at most the max.
#[inline(always)]
pub(super) fn stats_online<A: Arith, E: Element>(
    cfg: &Cfg,
    x: &[E],
    q: Option<&[f32]>,
    after: &[f32],
    mut store: Option<Stored<'_>>,
) -> RowStats {
    if let Some((_, runs)) = store.as_mut() {
        runs.clear();
    }
    let (mut a, mut k_sum, mut flags) = (0.0f64, 0.0f64, 0);
    let guess = cfg.guess && store.is_none();
    let block = |b: OnlineBlock<'_, E>| {
        let Some(abits) = b.abits else {
            // A guessed block (never with `store`): against the reference `b.m`, no shift.
            let lin = cfg.lin.then(|| Linear {
                sigma: cfg.sigma,
                k: q.or(cfg.weight).map(|k| &k[b.j0..b.j0 + b.x.len()]),
            });
            let sc = ExpScale::new(1.0, 1.0).row(b.m);
            let (sb, ab) = A::exp_sums_unchecked(b.x, &sc, lin.as_ref(), b.ahead);
            if !(kept(sb) && ab.is_finite()) {
                return f64::NAN;
            }
            if cfg.lin {
                // No −inf (its linear term is not finite), so every `k̂` counts.
                a += ab;
                k_sum += finite_weight(cfg, b.x, b.j0, q, false);
            }
            return sb;
        };
        let t = store.as_mut().map(|(g, runs)| {
            mark_run(runs, b.j0, b.m);
            &mut g[b.j0..b.j0 + b.x.len()]
        });
        if b.m > b.m_prev {
            a += cfg.sigma as f64 * (b.m_prev as f64 - b.m as f64) * k_sum;
        }
        // T = 1: the exponent is `x − m`.
        let sc = bounded_row(&ExpScale::new(1.0, 1.0), b.m, abits);
        if !cfg.lin {
            return exp_sum::<A, E>(b.x, &sc, t, b.ahead) as f64;
        }
        // NaN and +inf are ruled out (`online`), so a non-finite pattern is a −inf.
        let neg = abits >= INF_BITS;
        let (sb, ab) = exp_linear_block::<A, E>(cfg, b.x, b.j0, q, &sc, (t, b.ahead), abits);
        a += ab;
        k_sum += finite_weight(cfg, b.x, b.j0, q, neg);
        if neg {
            flags |= neg_kinds(cfg, b.x, b.j0, q);
        }
        sb
    };
    match online::<A, E>(x, after, 1.0, guess, block) {
        Some((m, s)) => RowStats {
            m,
            s: s as f32,
            a: a as f32,
            flags,
            ..RowStats::default()
        },
        None => stats::<A, E>(cfg, x, q, None, &[]),
    }
}

/// The linear sum `Σ_finite k̂_j·σ(x_j − m)` over the columns `j0..` of a row held in `x`
/// (f32).
#[inline(always)]
fn linear_sums<A: Arith>(cfg: &Cfg, x: &[f32], j0: usize, q: Option<&[f32]>, m: f32) -> f32 {
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
    a_total as f32
}
