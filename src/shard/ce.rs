//! The cross-entropy of a vocabulary shard: statistics, the loss from merged statistics, and
//! the shard's slice of the gradient.

use super::pass::{Setup, ShardPass, VocabShard};
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, RowPartial, Targets};
use crate::element::{DType, MatrixView, Tensor};
use crate::error::{Error, Result};

/// A cross-entropy whose classes are split over shards (devices, processes): this shard's
/// part of it. Every shard holds the same rows and its own columns `[offset, offset + C_k)`
/// of the logits; nothing but [`RowPartial`]s (48 bytes per row) crosses between shards.
///
/// 1. [`ShardedCrossEntropy::statistics`]: this shard's per-row statistics.
/// 2. Merge every shard's statistics ([`crate::shard::merge_rows`], or an all-reduce with it
///    as the operation), in any order.
/// 3. [`ShardedCrossEntropy::finish`] on the merged statistics: the loss, lse and
///    [`crate::LossSums`] of the whole rows (the same on every shard).
/// 4. [`ShardedCrossEntropy::gradient`]: this shard's `[B, C_k]` slice of the gradient.
///
/// Targets: class targets `[B]` index the whole vocabulary (every shard holds them all);
/// probability targets are this shard's columns `[B, C_k]`. The options are the whole call's:
/// class weights have the whole vocabulary's length, and label smoothing spreads over all
/// `total` classes. Every option of [`crate::Backend::cross_entropy`] works.
///
/// ```
/// use smoothmax::shard::{merge_rows, ShardedCrossEntropy, VocabShard};
/// use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
/// let x = ndarray::array![[2.0f32, 0.5, -1.0, 3.0], [0.0, 1.0, 0.0, 0.0]];
/// let y = ndarray::array![3i64, 0];
/// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
/// let cpu = Cpu::new();
/// // Two shards of the four classes: columns 0..1 and 1..4.
/// let parts = [(0, x.slice(ndarray::s![.., 0..1])), (1, x.slice(ndarray::s![.., 1..4]))];
/// let shards: Vec<_> = parts
///     .iter()
///     .map(|&(offset, _)| {
///         ShardedCrossEntropy::new(VocabShard { offset, total: 4 }, Targets::classes(y.view()), &o)
///     })
///     .collect();
/// let local: Vec<_> = parts
///     .iter()
///     .zip(&shards)
///     .map(|(&(_, xs), sh)| sh.statistics(&cpu, xs.into()))
///     .collect::<Result<_, _>>()?;
/// let mut merged = local[0].clone();
/// merge_rows(&mut merged, &local[1])?;
/// let loss = shards[0].finish(&merged)?.loss.scalar().unwrap();
/// let whole = cpu.cross_entropy(x.view(), Targets::classes(y.view()), &o)?;
/// assert!((loss - whole.loss.scalar().unwrap()).abs() < 1e-6);
/// let g1 = shards[1].gradient(&cpu, parts[1].1.into(), &local[1], &merged, None)?;
/// let g1 = g1.into_typed::<f32, ndarray::Ix2>()?;
/// let want = whole.grad.unwrap();
/// assert!((g1[[0, 2]] - want[[0, 3]]).abs() < 1e-6);
/// # Ok::<(), smoothmax::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShardedCrossEntropy<'t, 'o> {
    shard: VocabShard,
    targets: Targets<'t>,
    options: CrossEntropyOptions<'o>,
}

impl<'t, 'o> ShardedCrossEntropy<'t, 'o> {
    /// This shard's part of a cross-entropy with `targets` and `options` (see the type's
    /// docs for what each holds).
    pub fn new(shard: VocabShard, targets: Targets<'t>, options: &CrossEntropyOptions<'o>) -> Self {
        ShardedCrossEntropy {
            shard,
            targets,
            options: options.clone(),
        }
    }

    /// The call's options.
    pub fn options(&self) -> &CrossEntropyOptions<'o> {
        &self.options
    }

    fn setup(&self, dim: (usize, usize)) -> Result<Setup<'o>> {
        Setup::new(self.shard, dim, &self.targets, &self.options)
    }

    /// This shard's per-row statistics of its logits `[B, C_k]` (any element type) on
    /// `backend`.
    pub fn statistics(
        &self,
        backend: &dyn Backend,
        logits: MatrixView<'_>,
    ) -> Result<Vec<RowPartial>> {
        let pass = ShardPass::new(self.setup(logits.dim())?, None, DType::F32)?;
        Ok(backend.cross_entropy_shard(logits, &pass)?.partials)
    }

    /// The loss, per-row lse and [`crate::LossSums`] of the whole rows from the merged
    /// statistics of every shard (host only; the same on every shard). An error names a row
    /// whose merged statistics do not cover the vocabulary exactly once (a shard missing or
    /// merged twice) or miss its target.
    pub fn finish(&self, merged: &[RowPartial]) -> Result<CrossEntropyOutput<()>> {
        super::pass::finish(self.shard, &self.targets, &self.options, merged)
    }

    /// This shard's `[B, C_k]` slice of the gradient (in `out`, by default the logits' type)
    /// on `backend`, from its own statistics `local` (from [`ShardedCrossEntropy::statistics`]
    /// on the same logits) and the `merged` statistics of every shard.
    pub fn gradient(
        &self,
        backend: &dyn Backend,
        logits: MatrixView<'_>,
        local: &[RowPartial],
        merged: &[RowPartial],
        out: Option<DType>,
    ) -> Result<Tensor> {
        let out = out.unwrap_or(logits.dtype());
        let pass = ShardPass::new(self.setup(logits.dim())?, Some((local, merged)), out)?;
        backend
            .cross_entropy_shard(logits, &pass)?
            .grad
            .ok_or_else(|| Error::InvalidInput("the shard's gradient pass gave no gradient".into()))
    }
}
