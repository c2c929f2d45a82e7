//! One pass of a vocabulary-sharded cross-entropy as the engines see it: the shard's inputs
//! prepared on the host, and what the fast engines' statistics and gradient become.
//!
//! The fast engines (CPU, GPU) run their ordinary cross-entropy kernels on the shard. Their
//! statistics are the shard's own (max, sum, linear sum, target logit), which is what a
//! [`RowPartial`] holds. Their gradient is `g_j = p_j·(α + ζ·lse) − β·k̂_j − [j = y]·γ` with
//! the shard's own `p_j = e^{x'_j − lse_k}`, where the row's is `e^{x'_j − lse} = r·p_j`,
//! `r = e^{lse_k − lse}`; so the gradient pass hands them `α' = r·(α + ζ·lse)` and `ζ' = 0`
//! (every `p_j` term folded into one coefficient, computed in f64 with the merged `lse`) and
//! the row's true `β`, `γ` (`γ = 0` when the target lies in another shard; `α` keeps its
//! `(1 − ls)·w_y` part wherever the target is). Two kinds of row are finished here instead:
//! rows whose merged lse is not finite (NaN, as the unsharded call gives), and rows this
//! shard holds no finite logit of while others do (`p_j = 0`: `g_j = −β·k̂_j − [j = y]·γ`;
//! the kernel would see an all −inf row of its own).

use crate::cross_entropy::fast::{
    fast_inputs_of, partial_loss, FastInputs, RowCoef, RowStats, RowTarget,
};
use crate::cross_entropy::{
    prepare, reduce, CrossEntropyOptions, CrossEntropyOutput, Prepared, RowPartial, Targets,
    Upstream,
};
use crate::element::{DType, Element, Tensor};
use crate::error::{Error, Result};
use ndarray::{s, Array1, Array2, ArrayD, Axis};

/// A shard's place in the vocabulary: its columns start at `offset` of rows of `total`
/// classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabShard {
    /// The shard's first column.
    pub offset: usize,
    /// The number of classes of the whole rows.
    pub total: usize,
}

/// What a shard's rows are: the shard's checked inputs, and the rows' targets in the whole
/// vocabulary.
#[derive(Clone)]
pub(crate) struct Setup<'a> {
    /// The shard's call: `cols` = the shard's width; class targets local to the shard (−1
    /// ignored, 0 where the target lies elsewhere); the shard's probability targets; the
    /// whole row's `W` and mean denominators.
    pub p: Prepared,
    /// Class targets in the whole vocabulary (−1 ignored).
    pub global: Option<Vec<i32>>,
    /// The options with the shard's slice of the class weights.
    pub o: CrossEntropyOptions<'a>,
    /// The weights of the whole vocabulary (`None` unweighted).
    pub full_weight: Option<ndarray::ArrayView1<'a, f32>>,
    pub shard: VocabShard,
}

/// Whether class `y` (−1: ignored) lies in the columns `[offset, end)`.
fn holds(offset: usize, end: usize, y: i32) -> bool {
    y >= 0 && (offset..end).contains(&(y as usize))
}

fn bad<T>(m: String) -> Result<T> {
    Err(Error::InvalidInput(m))
}

impl<'a> Setup<'a> {
    /// Checks a shard of `dim = (rows, cols)` against the whole vocabulary and resolves its
    /// targets.
    pub fn new(
        shard: VocabShard,
        dim: (usize, usize),
        targets: &Targets,
        o: &'_ CrossEntropyOptions<'a>,
    ) -> Result<Self> {
        let (rows, cols) = dim;
        let VocabShard { offset, total } = shard;
        let end = match offset.checked_add(cols) {
            Some(e) if e <= total => e,
            _ => {
                return bad(format!(
                "a shard of {cols} columns at offset {offset} does not fit rows of {total} classes"
            ))
            }
        };
        if total > i32::MAX as usize {
            return bad(format!(
                "{total} classes: at most {} in a sharded call",
                i32::MAX
            ));
        }
        let weight = match &o.weight {
            Some(w) if w.len() != total => {
                return bad(format!(
                    "weight has length {}, expected the whole vocabulary's {total} classes",
                    w.len()
                ))
            }
            Some(w) => Some((*w).slice_move(s![offset..end])),
            None => None,
        };
        let so = CrossEntropyOptions {
            weight,
            ..o.clone()
        };
        let (p, global) = match targets {
            Targets::Probabilities(_) => {
                // The options against the whole row (weights of length `total`), the targets
                // against the shard.
                // (Of no rows: so with no per-row upstream gradient, which the shard's own
                // preparation checks against its rows.)
                let none = Array2::<f32>::zeros((0, total));
                let ow = CrossEntropyOptions {
                    upstream: Upstream::One,
                    ..o.clone()
                };
                let whole = prepare((0, total), &Targets::probabilities(none.view()), &ow)?;
                let mut p = prepare(dim, targets, &so)?;
                p.w_total = whole.w_total;
                (p, None)
            }
            _ => {
                let whole = prepare((rows, total), targets, o)?;
                let global = whole.class.clone().unwrap_or_default();
                let local = global
                    .iter()
                    .map(|&y| match y {
                        y if y < 0 => -1,
                        y if holds(offset, end, y) => y - offset as i32,
                        _ => 0,
                    })
                    .collect();
                let p = Prepared {
                    cols,
                    class: Some(local),
                    ..whole
                };
                (p, Some(global))
            }
        };
        Ok(Setup {
            p,
            global,
            o: so,
            full_weight: o.weight,
            shard,
        })
    }

    /// Whether row `i`'s class target lies in this shard.
    pub fn in_shard(&self, i: usize) -> bool {
        let (offset, end) = (self.shard.offset, self.shard.offset + self.p.cols);
        self.global
            .as_ref()
            .is_some_and(|g| holds(offset, end, g[i]))
    }

    /// The weight of class `c` of the whole vocabulary.
    pub fn weight(&self, c: usize) -> f64 {
        self.full_weight.as_ref().map_or(1.0, |w| w[c] as f64)
    }

    /// `k_j` of the shard's column `j` in row `i`: the class weight (class targets) or
    /// `w_j·q'_ij` (probability targets), in f64.
    pub fn k(&self, i: usize, j: usize) -> f64 {
        let w = self.weight(self.shard.offset + j);
        match &self.p.probs {
            Some(q) => {
                let ls = self.o.label_smoothing as f64;
                w * (q[[i, j]] as f64 * (1.0 - ls) + ls / self.shard.total as f64)
            }
            None => w,
        }
    }
}

/// A row of the gradient that the host finishes after a fast engine's kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fix {
    /// The kernel's row stands.
    None,
    /// The merged row has no finite lse: NaN everywhere.
    Nan,
    /// No finite logit in this shard, some elsewhere: `p_j = 0`.
    NoMass,
}

/// One pass of a sharded cross-entropy over a shard's logits, prepared on the host: the
/// statistics pass, or the gradient pass given the shard's own and the merged statistics.
/// Made by [`crate::shard::ShardedCrossEntropy`]; engines run it through
/// [`crate::Backend::cross_entropy_shard`].
pub struct ShardPass<'a> {
    pub(crate) setup: Setup<'a>,
    /// The fast engines' inputs, with the gradient pass's folded coefficients.
    pub(crate) fast: FastInputs,
    /// The merged statistics (gradient pass).
    pub(crate) merged: Option<Vec<RowPartial>>,
    fixes: Vec<Fix>,
    /// The gradient's element type.
    pub(crate) out: DType,
}

/// What an engine returns from a [`ShardPass`]: the shard's statistics and, in the gradient
/// pass, its gradient.
pub struct ShardResult {
    pub(crate) partials: Vec<RowPartial>,
    pub(crate) grad: Option<Tensor>,
}

impl<'a> ShardPass<'a> {
    /// The statistics pass (`grad` = `None`), or the gradient pass from this shard's own
    /// statistics and the merged ones.
    pub(crate) fn new(
        mut setup: Setup<'a>,
        grad: Option<(&[RowPartial], &[RowPartial])>,
        out: DType,
    ) -> Result<Self> {
        setup.o.gradient = grad.is_some();
        let (p, o, total) = (&setup.p, &setup.o, setup.shard.total);
        let mut fast = fast_inputs_of(p, o, total, true);
        if let Some(g) = &setup.global {
            // The target's weight in the whole vocabulary, wherever the target lies.
            let w_y = g.iter().map(|&y| {
                if y >= 0 {
                    setup.weight(y as usize)
                } else {
                    0.0
                }
            });
            fast.w_y = Some(w_y.collect());
        }
        let mut fixes = vec![Fix::None; p.rows];
        let mut merged = None;
        if let Some((local, m)) = grad {
            for (what, v) in [("this shard's", local), ("merged", m)] {
                if v.len() != p.rows {
                    return bad(format!(
                        "{what} statistics have {} rows, the logits {}",
                        v.len(),
                        p.rows
                    ));
                }
            }
            for i in 0..p.rows {
                check_row(&setup, i, &local[i], &m[i])?;
                let ignored = p.class.as_ref().is_some_and(|c| c[i] < 0);
                let lse = m[i].lse();
                fixes[i] = if ignored {
                    Fix::None
                } else if !lse.is_finite() {
                    Fix::Nan
                } else if local[i].s == 0.0 {
                    Fix::NoMass
                } else {
                    Fix::None
                };
                if ignored || fixes[i] != Fix::None {
                    continue;
                }
                let [a, b, g, z] = fast.coefficients(p, o, i, m[i].k_sum, total);
                let g = if setup.in_shard(i) { g } else { 0.0 };
                let r = (local[i].lse() - lse).exp();
                let class = p.class.as_ref().map_or(0, |c| c[i]);
                fast.coef[i] = RowCoef::new(class, r * (a + z * lse), b, g, 0.0);
            }
            merged = Some(m.to_vec());
        }
        Ok(ShardPass {
            setup,
            fast,
            merged,
            fixes,
            out,
        })
    }

    /// The shard's prepared call, kernel inputs and options, as the fast engines take them.
    pub(crate) fn fast_call(&self) -> (&Prepared, &FastInputs, &CrossEntropyOptions<'a>) {
        (&self.setup.p, &self.fast, &self.setup.o)
    }

    /// A fast engine's result: its statistics as [`RowPartial`]s, its gradient with the host's
    /// rows (module docs) written in.
    pub(crate) fn fast_result(&self, stats: &[RowStats], grad: Option<Tensor>) -> ShardResult {
        let st = &self.setup;
        let partials = stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut q = self.fast.partial(&st.p, i, s);
                if !st.in_shard(i) {
                    q.flags &= !RowPartial::HAS_TARGET;
                }
                q
            })
            .collect();
        let grad = grad.map(|mut g| {
            for (i, row) in self.host_rows() {
                fill_row(&mut g, i, |j| row[j]);
            }
            g
        });
        ShardResult { partials, grad }
    }

    /// The gradient rows the host finishes (module docs), as `(row, values)`: what an
    /// engine whose gradient stays on the device writes over its kernel's rows.
    pub(crate) fn host_rows(&self) -> Vec<(usize, Vec<f32>)> {
        let cols = self.setup.p.cols;
        let fixed = |(i, fix): (usize, &Fix)| match fix {
            Fix::None => None,
            Fix::Nan => Some((i, vec![f32::NAN; cols])),
            Fix::NoMass => Some((i, (0..cols).map(|j| self.no_mass(i, j) as f32).collect())),
        };
        self.fixes.iter().enumerate().filter_map(fixed).collect()
    }

    /// `g_j = −β·k̂_j − [j = y]·γ` of row `i` (no probability mass in this shard), unscaled.
    fn no_mass(&self, i: usize, j: usize) -> f64 {
        let st = &self.setup;
        let (p, o) = (&st.p, &st.o);
        let (scale_ce, _) = p.scales(o.reduction);
        let s_ce = p.upstream.at(i) as f64 * scale_ce;
        let ls = o.label_smoothing as f64;
        match &st.global {
            None => -s_ce * st.k(i, j),
            Some(g) => {
                let smooth = s_ce * ls / st.shard.total as f64 * st.k(i, j);
                let hit = st.in_shard(i) && g[i] as usize == st.shard.offset + j;
                let target = if hit {
                    s_ce * (1.0 - ls) * st.weight(g[i] as usize)
                } else {
                    0.0
                };
                -smooth - target
            }
        }
    }
}

/// Checks that row `i`'s statistics are this shard's own (`local`) and the whole row's
/// (`merged`, its target included): the gradient pass would otherwise give wrong numbers.
fn check_row(st: &Setup, i: usize, local: &RowPartial, merged: &RowPartial) -> Result<()> {
    covers(i, merged, st.shard.total)?;
    if local.cols as usize != st.p.cols {
        return bad(format!(
            "row {i}: this shard's statistics cover {} classes, its logits {}",
            local.cols, st.p.cols
        ));
    }
    match &st.global {
        Some(g) if g[i] >= 0 => has_target(i, merged, g[i]),
        _ => Ok(()),
    }
}

/// An error unless row `i`'s merged statistics cover `total` classes.
pub(crate) fn covers(i: usize, merged: &RowPartial, total: usize) -> Result<()> {
    if merged.cols as usize == total {
        return Ok(());
    }
    bad(format!(
        "row {i}: the merged statistics cover {} of {total} classes (a shard missing or \
         merged twice)",
        merged.cols
    ))
}

/// An error unless row `i`'s merged statistics hold its target class `y`.
pub(crate) fn has_target(i: usize, merged: &RowPartial, y: i32) -> Result<()> {
    if merged.flags & RowPartial::HAS_TARGET != 0 {
        return Ok(());
    }
    bad(format!("row {i}: no shard holds its target class {y}"))
}

/// Sets row `i` of a `[B, C]` gradient to `f(j)`, narrowed to its element type.
fn fill_row(g: &mut Tensor, i: usize, f: impl Fn(usize) -> f32) {
    fn go<E: Element>(a: &mut ArrayD<E>, i: usize, f: impl Fn(usize) -> f32) {
        for (j, v) in a.index_axis_mut(Axis(0), i).iter_mut().enumerate() {
            *v = E::from_f32(f(j));
        }
    }
    match g {
        Tensor::F32(a) => go(a, i, f),
        Tensor::F16(a) => go(a, i, f),
        Tensor::BF16(a) => go(a, i, f),
    }
}

/// The loss, per-row lse and [`crate::LossSums`] of whole rows of `shard.total` classes from
/// the merged statistics of every shard (see [`crate::shard::ShardedCrossEntropy::finish`]).
pub(crate) fn finish(
    shard: VocabShard,
    targets: &Targets,
    options: &CrossEntropyOptions,
    merged: &[RowPartial],
) -> Result<CrossEntropyOutput<()>> {
    let total = shard.total;
    let rows = merged.len();
    // The rows' targets and denominators resolved, the targets and options checked (as a
    // shard of no columns, but for probability targets, which are this shard's own).
    let width = match targets {
        Targets::Probabilities(q) => q.shape().get(1).copied().unwrap_or(0),
        _ => 0,
    };
    let st = Setup::new(shard, (rows, width), targets, options)?;
    let ls = options.label_smoothing as f64;
    let mut ce = Vec::with_capacity(rows);
    let mut lse = Vec::with_capacity(rows);
    for (i, m) in merged.iter().enumerate() {
        covers(i, m, total)?;
        let target = match &st.global {
            None => RowTarget::Probabilities,
            Some(g) if g[i] < 0 => RowTarget::Ignored,
            Some(g) => {
                has_target(i, m, g[i])?;
                RowTarget::Class {
                    w_y: st.weight(g[i] as usize),
                }
            }
        };
        let (l, s) = partial_loss(m, target, ls, total, st.p.w_total);
        ce.push(l);
        lse.push(s as f32);
    }
    let (loss, sums) = reduce(&st.p, options, &ce, &lse);
    Ok(CrossEntropyOutput {
        loss,
        grad: None,
        lse: Array1::from_vec(lse),
        sums,
    })
}
