//! One row's partial statistics over a part of its columns, and their merge.

use crate::error::{Error, Result};

/// Flag bits of the kernels' row statistics and of [`RowPartial::flags`] (the shaders'
/// `FLAG_*`, generated from these values by `gpu::kernel`).
pub(crate) mod flag {
    /// A NaN logit.
    pub const NAN: u32 = 1;
    /// A +inf logit (and no NaN).
    pub const POS_INF: u32 = 2;
    /// A −inf logit with `k > 0`: PyTorch's `−k·logp` is +inf there.
    pub const NEG_POS: u32 = 4;
    /// A −inf logit with `k = 0`: `0·inf` is NaN.
    pub const NEG_ZERO: u32 = 8;
    /// A −inf logit with `k < 0`: −inf.
    pub const NEG_NEG: u32 = 16;
}

/// A row's partial statistics over a shard of its columns: what crosses the wire when a
/// vocabulary is split over devices or processes (48 bytes per row, `bytemuck`-castable, so
/// any transport can carry a slice of them as bytes).
///
/// `x'` is the logit actually used (soft-capped for cross-entropy; `x/T` for the row ops at
/// temperature `T`); the sums run over the shard's finite `x'`:
///
/// ```text
/// m     = max x'                     (meaningless when s = 0)
/// s     = Σ e^{x' − m}               (0: the shard has no finite logit, or no column)
/// lin   = Σ k_j (x'_j − m)           k_j = w_j (label smoothing) or w_j·q'_j (probabilities)
/// k_sum = Σ k_j                      over every column of the shard
/// xy    = x'_y                       when the row's class target lies in the shard
/// ```
///
/// with the kinds of non-finite logits met in `flags`, and the shard's width in `cols` (the
/// merged width must be the whole row's: a merge whose widths do not add up to it, such as
/// a shard missing or merged twice, is an error; a set of shards that does not tile the
/// row but happens to have the right total width is the caller's to rule out, as
/// `shard::local` does). Merging is associative and commutative up to rounding ([`RowPartial::merge`]);
/// the per-row statistics of any split of a row merge to those of the whole row.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowPartial {
    /// The max of the finite logits.
    pub m: f64,
    /// `Σ e^{x' − m}` over the finite logits.
    pub s: f64,
    /// `Σ k_j (x'_j − m)` over the finite logits (cross-entropy with smoothing or probability
    /// targets; else 0).
    pub lin: f64,
    /// `Σ k_j` over the shard's columns (as `lin`).
    pub k_sum: f64,
    /// The target's logit `x'_y`, when [`RowPartial::HAS_TARGET`] is set.
    pub xy: f64,
    /// [`RowPartial::NAN`], [`RowPartial::POS_INF`], the `NEG_*` kinds and
    /// [`RowPartial::HAS_TARGET`].
    pub flags: u32,
    /// The number of columns the statistics cover.
    pub cols: u32,
}

impl RowPartial {
    /// A NaN logit.
    pub const NAN: u32 = flag::NAN;
    /// A +inf logit.
    pub const POS_INF: u32 = flag::POS_INF;
    /// A −inf logit with `k > 0` (its `−k·log p` is +inf).
    pub const NEG_POS: u32 = flag::NEG_POS;
    /// A −inf logit with `k = 0` (`0·inf` is NaN).
    pub const NEG_ZERO: u32 = flag::NEG_ZERO;
    /// A −inf logit with `k < 0` (−inf).
    pub const NEG_NEG: u32 = flag::NEG_NEG;
    /// The row's class target lies in this shard; `xy` holds its logit.
    pub const HAS_TARGET: u32 = 32;

    /// The statistics of no columns: the identity of [`RowPartial::merge`].
    pub const EMPTY: RowPartial = RowPartial {
        m: f64::NEG_INFINITY,
        s: 0.0,
        lin: 0.0,
        k_sum: 0.0,
        xy: 0.0,
        flags: 0,
        cols: 0,
    };

    /// The statistics of the union of two disjoint column sets:
    ///
    /// ```text
    /// m   = max(m₁, m₂)        s   = s₁·e^{m₁−m} + s₂·e^{m₂−m}
    /// lin = Σ lin_k + k_sum_k·(m_k − m)     (each part moved to the new max)
    /// ```
    ///
    /// (Milakov & Gimelshein 2018; flash-attention's sharded cross-entropy). A part with no
    /// finite logit (`s = 0`) moves nothing, so shards of only −inf merge without NaN
    /// (flash-attention issue 1930). `lin`'s shift uses `k_sum` over all of a part's columns,
    /// which differs from the sum over its finite ones only where a column with `k ≠ 0` is
    /// non-finite, and then the loss is ±inf or NaN from the flags whatever `lin` is.
    pub fn merge(&self, o: &RowPartial) -> RowPartial {
        let m = match (self.s > 0.0, o.s > 0.0) {
            (true, true) => self.m.max(o.m),
            (true, false) => self.m,
            (false, true) => o.m,
            (false, false) => f64::NEG_INFINITY,
        };
        let moved = |p: &RowPartial| {
            if p.s > 0.0 {
                (p.s * (p.m - m).exp(), p.lin + p.k_sum * (p.m - m))
            } else {
                (0.0, p.lin)
            }
        };
        let ((s1, l1), (s2, l2)) = (moved(self), moved(o));
        RowPartial {
            m,
            s: s1 + s2,
            lin: l1 + l2,
            k_sum: self.k_sum + o.k_sum,
            xy: if self.flags & Self::HAS_TARGET != 0 {
                self.xy
            } else {
                o.xy
            },
            flags: self.flags | o.flags,
            cols: self.cols.saturating_add(o.cols),
        }
    }

    /// The logsumexp of the covered logits (PyTorch's non-finite rules: NaN if any is NaN,
    /// else +inf if any is +inf, −inf when none is finite).
    pub fn lse(&self) -> f64 {
        self.lse_given(self.s.ln())
    }

    /// [`RowPartial::lse`] given `ln_s = ln(self.s)` (a caller that needs `ln s` too takes
    /// one logarithm, not two).
    pub fn lse_given(&self, ln_s: f64) -> f64 {
        if self.flags & Self::NAN != 0 {
            f64::NAN
        } else if self.flags & Self::POS_INF != 0 {
            f64::INFINITY
        } else if self.s > 0.0 {
            self.m + ln_s
        } else {
            f64::NEG_INFINITY
        }
    }
}

/// Merges `other` into `acc` row by row (an all-reduce's operation; [`RowPartial::merge`]).
pub fn merge_rows(acc: &mut [RowPartial], other: &[RowPartial]) -> Result<()> {
    if acc.len() != other.len() {
        return Err(Error::InvalidInput(format!(
            "merging partial statistics of {} rows with {} rows",
            acc.len(),
            other.len()
        )));
    }
    for (a, b) in acc.iter_mut().zip(other) {
        *a = a.merge(b);
    }
    Ok(())
}
