//! What a fused linear cross-entropy pass takes and returns: the public result, one pass's
//! inputs over one vocabulary shard's weights, and what an engine gives back.

use crate::cross_entropy::{CrossEntropyOptions, Loss, LossSums, RowPartial, Targets};
use crate::element::{MatrixView, Tensor};
use crate::error::{Error, Result};
use crate::gpu::Matrix;
use crate::shard::pass::VocabShard;
use ndarray::{Array1, Array2, ArrayD, ArrayView1, IxDyn};

/// What [`crate::Backend::linear_cross_entropy`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearCrossEntropyOutput {
    /// The loss: per row in the hidden states' leading shape ([`crate::Reduction::None`]),
    /// else one number.
    pub loss: Loss<IxDyn>,
    /// Per-row logsumexp of the logits used (after softcap), in the leading shape.
    pub lse: ArrayD<f32>,
    /// The loss's numerator and denominator in f64, to combine batches (see [`LossSums`]).
    pub sums: LossSums,
    /// `d loss / d hidden`, the hidden states' shape and element type (with `gradient`).
    pub grad_hidden: Option<Tensor>,
    /// `d loss / d weight`, `[V, D]` in the weight's element type (with `gradient`).
    pub grad_weight: Option<Tensor>,
    /// `d loss / d bias`, `[V]` (with `gradient` and a bias).
    pub grad_bias: Option<Array1<f32>>,
}

/// One pass's gradients, in f32 (a shard's `hidden` is a summand of the whole gradient).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearGrads {
    /// `[N, D]`: this shard's part of `d loss / d hidden`.
    pub hidden: Array2<f32>,
    /// `[V_k, D]`: `d loss / d W_k`.
    pub weight: Array2<f32>,
    /// `[V_k]`: `d loss / d b_k` (when there is a bias).
    pub bias: Option<Array1<f32>>,
}

/// One pass of a fused linear cross-entropy over one vocabulary shard's weights, prepared by
/// [`crate::Backend::linear_cross_entropy`] or [`crate::shard::ShardedLinearCrossEntropy`]; engines
/// run it through [`crate::Backend::linear_ce_pass`].
pub struct LinearPass<'a, 'o> {
    /// `[N, D]`, host or device.
    pub(crate) hidden: Matrix<'a>,
    /// `[V_k, D]`: the shard's classes, host or device.
    pub(crate) weight: Matrix<'a>,
    /// `[V_k]`.
    pub(crate) bias: Option<ArrayView1<'a, f32>>,
    pub(crate) shard: VocabShard,
    /// Class targets `[N]` over the whole vocabulary, or the shard's probabilities `[N, V_k]`.
    pub(crate) targets: Targets<'a>,
    pub(crate) options: CrossEntropyOptions<'o>,
    /// The gradient pass: this shard's own statistics and the merged ones.
    pub(crate) grad: Option<(&'a [RowPartial], &'a [RowPartial])>,
    /// Per-tile statistics from this engine's statistics pass of the same call (saves the
    /// gradient pass one statistics pass per tile).
    pub(crate) tile_stats: Option<&'a [Vec<RowPartial>]>,
    /// Classes per tile (`None`: the engine's choice).
    pub(crate) tile_cols: Option<usize>,
}

/// What an engine returns from a [`LinearPass`].
#[derive(Clone, Debug)]
pub struct LinearPassResult {
    /// This shard's statistics, merged over its tiles.
    pub(crate) partials: Vec<RowPartial>,
    /// Each tile's statistics (statistics pass).
    pub(crate) tile_stats: Vec<Vec<RowPartial>>,
    /// The gradient pass's gradients.
    pub(crate) grads: Option<LinearGrads>,
    /// Classes per tile (what `tile_stats` were made with).
    pub(crate) tile_cols: usize,
}

impl LinearPassResult {
    /// This shard's statistics.
    pub fn partials(&self) -> &[RowPartial] {
        &self.partials
    }
}

fn bad<T>(m: String) -> Result<T> {
    Err(Error::InvalidInput(m))
}

impl<'a, 'o> LinearPass<'a, 'o> {
    /// A statistics pass; checks the shapes (`hidden [N, D]`, `weight [V_k, D]`, `bias [V_k]`).
    pub(crate) fn new(
        hidden: Matrix<'a>,
        weight: Matrix<'a>,
        bias: Option<ArrayView1<'a, f32>>,
        shard: VocabShard,
        targets: Targets<'a>,
        options: &CrossEntropyOptions<'o>,
    ) -> Result<Self> {
        let ((_, d), (v, dw)) = (hidden.dim(), weight.dim());
        if d != dw {
            return bad(format!(
                "hidden states have {d} features per row, the weight matrix {dw} (weight is \
                 [V, D], hidden [..., D])"
            ));
        }
        if let Some(b) = &bias {
            if b.len() != v {
                return bad(format!(
                    "bias has length {}, the weight matrix {v} classes",
                    b.len()
                ));
            }
        }
        let (n, want) = (hidden.dim().0, &targets);
        let expected: Vec<usize> = match want {
            Targets::Probabilities(_) => vec![n, v],
            _ => vec![n],
        };
        if want.shape() != expected.as_slice() {
            return bad(format!(
                "targets have shape {:?}, expected {expected:?} for {n} rows and this weight \
                 matrix's {v} classes (class targets [N]; probabilities [N, V_k], the \
                 shard's own columns)",
                want.shape()
            ));
        }
        Ok(LinearPass {
            hidden,
            weight,
            bias,
            shard,
            targets,
            options: options.clone(),
            grad: None,
            tile_stats: None,
            tile_cols: None,
        })
    }

    /// `(N, D, V_k)`.
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        let (n, d) = self.hidden.dim();
        (n, d, self.weight.dim().0)
    }

    /// The hidden states and weights on the host (the host engines), or an error naming the
    /// device matrix.
    pub(crate) fn host(&self) -> Result<(MatrixView<'_>, MatrixView<'_>)> {
        match (&self.hidden, &self.weight) {
            (Matrix::Host(h), Matrix::Host(w)) => Ok((h.view(), w.view())),
            _ => bad("device matrices: only the GPU backend reads those".into()),
        }
    }
}
