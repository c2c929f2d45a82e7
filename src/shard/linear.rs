//! The fused linear cross-entropy of a vocabulary shard: a process holding the weight rows
//! `W_k` of classes `[offset, offset + V_k)` and every row's hidden states computes its
//! statistics, the loss from the merged statistics, and its gradients, without any `[N, V]`
//! logits (see [`crate::linear_ce`]).

use super::ce::ShardedCrossEntropy;
use super::pass::VocabShard;
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, RowPartial, Targets};
use crate::error::{Error, Result};
use crate::gpu::Matrix;
use crate::linear_ce::pass::{LinearGrads, LinearPass};
use ndarray::ArrayView1;

/// A vocabulary-sharded fused linear cross-entropy: this shard's part of it. Every shard
/// holds the same hidden states `[N, D]` and its own weight rows `W_k` `[V_k, D]` (and bias
/// `b_k`), the classes `[offset, offset + V_k)`; only [`RowPartial`]s (48 bytes per row)
/// cross between shards on the way to the loss, and the shards' `grad_hidden` add up to the
/// whole call's.
///
/// 1. [`ShardedLinearCrossEntropy::statistics`] on this shard.
/// 2. Merge every shard's statistics ([`crate::shard::merge_rows`], or an all-reduce with it).
/// 3. [`ShardedLinearCrossEntropy::finish`]: the loss, lse and [`crate::LossSums`].
/// 4. [`ShardedLinearCrossEntropy::gradient`]: `d loss / d W_k`, `d loss / d b_k` and this
///    shard's summand of `d loss / d hidden` (sum them over the shards: an all-reduce sum).
///
/// Targets and options are as for [`ShardedCrossEntropy`] (class targets over the whole
/// vocabulary, probability targets this shard's columns `[N, V_k]`, options of the whole
/// call).
///
/// ```
/// use smoothmax::shard::{merge_rows, ShardedLinearCrossEntropy, VocabShard};
/// use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
/// let h = ndarray::array![[1.0f32, 0.5], [-1.0, 2.0]];
/// let w = ndarray::array![[0.5f32, 1.0], [2.0, -1.0], [0.0, 0.25]];
/// let y = ndarray::array![2i64, 0];
/// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
/// let cpu = Cpu::new();
/// // Two shards: classes 0..1 and 1..3.
/// let parts = [(0, w.slice(ndarray::s![0..1, ..])), (1, w.slice(ndarray::s![1..3, ..]))];
/// let shards: Vec<_> = parts
///     .iter()
///     .map(|&(offset, _)| {
///         ShardedLinearCrossEntropy::new(VocabShard { offset, total: 3 }, Targets::classes(y.view()), &o)
///     })
///     .collect();
/// let local: Vec<_> = parts
///     .iter()
///     .zip(&shards)
///     .map(|(&(_, wk), sh)| sh.statistics(&cpu, h.view().into(), wk.into(), None))
///     .collect::<Result<_, _>>()?;
/// let mut merged = local[0].clone();
/// merge_rows(&mut merged, &local[1])?;
/// let loss = shards[0].finish(&merged)?.loss.scalar().unwrap();
/// let whole = cpu.linear_cross_entropy(h.view().into(), w.view().into(), None,
///                                      Targets::classes(y.view()), &o)?;
/// assert!((loss - whole.loss.scalar().unwrap()).abs() < 1e-6);
/// let g: Vec<_> = parts
///     .iter()
///     .zip(&shards)
///     .zip(&local)
///     .map(|((&(_, wk), sh), l)| sh.gradient(&cpu, h.view().into(), wk.into(), None, l, &merged))
///     .collect::<Result<_, _>>()?;
/// let dh = &g[0].hidden + &g[1].hidden;
/// let want = whole.grad_hidden.unwrap().into_typed::<f32, ndarray::Ix2>()?;
/// assert!((dh[[1, 1]] - want[[1, 1]]).abs() < 1e-6);
/// # Ok::<(), smoothmax::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShardedLinearCrossEntropy<'t, 'o> {
    ce: ShardedCrossEntropy<'t, 'o>,
    shard: VocabShard,
    targets: Targets<'t>,
}

impl<'t, 'o> ShardedLinearCrossEntropy<'t, 'o> {
    /// This shard's part of a fused linear cross-entropy with `targets` and `options`.
    pub fn new(shard: VocabShard, targets: Targets<'t>, options: &CrossEntropyOptions<'o>) -> Self {
        ShardedLinearCrossEntropy {
            ce: ShardedCrossEntropy::new(shard, targets.clone(), options),
            shard,
            targets,
        }
    }

    /// The call's options.
    pub fn options(&self) -> &CrossEntropyOptions<'o> {
        self.ce.options()
    }

    /// The pass over these inputs (each borrowed again for the call: the views are
    /// invariant in their lifetimes).
    fn pass<'a>(
        &'a self,
        hidden: &'a Matrix<'_>,
        weight: &'a Matrix<'_>,
        bias: &'a Option<ArrayView1<'_, f32>>,
    ) -> Result<LinearPass<'a, 'o>> {
        LinearPass::new(
            hidden.reborrow(),
            weight.reborrow(),
            bias.as_ref().map(|b| b.view()),
            self.shard,
            crate::linear_ce::call::reborrow(&self.targets),
            self.ce.options(),
        )
    }

    /// This shard's per-row statistics from the hidden states `[N, D]` and its weight rows
    /// `[V_k, D]` (host data, or device matrices on the GPU backend) and bias `[V_k]`.
    pub fn statistics(
        &self,
        backend: &dyn Backend,
        hidden: Matrix<'_>,
        weight: Matrix<'_>,
        bias: Option<ArrayView1<'_, f32>>,
    ) -> Result<Vec<RowPartial>> {
        let pass = self.pass(&hidden, &weight, &bias)?;
        Ok(backend.linear_ce_pass(&pass)?.partials().to_vec())
    }

    /// The loss, per-row lse and [`crate::LossSums`] from the merged statistics (see
    /// [`ShardedCrossEntropy::finish`]).
    pub fn finish(&self, merged: &[RowPartial]) -> Result<CrossEntropyOutput<()>> {
        self.ce.finish(merged)
    }

    /// This shard's gradients from its own statistics `local` and the `merged` ones: the
    /// gradients of its weights and bias, and its summand of the hidden states' (f32).
    pub fn gradient(
        &self,
        backend: &dyn Backend,
        hidden: Matrix<'_>,
        weight: Matrix<'_>,
        bias: Option<ArrayView1<'_, f32>>,
        local: &[RowPartial],
        merged: &[RowPartial],
    ) -> Result<LinearGrads> {
        let mut pass = self.pass(&hidden, &weight, &bias)?;
        pass.options.gradient = true;
        pass.grad = Some((local, merged));
        backend
            .linear_ce_pass(&pass)?
            .grads
            .ok_or_else(|| Error::InvalidInput("the gradient pass gave no gradients".into()))
    }
}
