//! What a fused linear cross-entropy takes and returns, and the whole call: the statistics
//! pass, the loss finished from the merged statistics, the gradient pass.

use super::kept::{ignored_rows_finite, kept_rows, Kept};
use crate::backend::Backend;
use crate::cross_entropy::{
    CrossEntropyOptions, CrossEntropyOutput, Loss, LossSums, RowPartial, Targets,
};
use crate::element::{MatrixView, Tensor, TensorView};
use crate::error::{Error, Result};
use crate::gpu::Matrix;
use crate::shard::{ShardedCrossEntropy, VocabShard};
use crate::tensor::Rows;
use ndarray::{Array1, Array2, ArrayD, ArrayView1, IxDyn};

/// What [`Backend::linear_cross_entropy`] returns.
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
/// [`Backend::linear_cross_entropy`] or [`crate::shard::ShardedLinearCrossEntropy`]; engines
/// run it through [`Backend::linear_ce_pass`].
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

/// [`Backend::linear_cross_entropy`] with the vocabulary cut into tiles of `tile_cols`
/// classes (the last one shorter) instead of the engine's choice: for tests that need many
/// tiles at small sizes, and for tuning. Every width gives the same result within the
/// tolerance; the reference honours it too.
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy_tiled<B: Backend + ?Sized>(
    backend: &B,
    hidden: TensorView<'_>,
    weight: MatrixView<'_>,
    bias: Option<ArrayView1<'_, f32>>,
    targets: Targets<'_>,
    options: &CrossEntropyOptions<'_>,
    tile_cols: usize,
) -> Result<LinearCrossEntropyOutput> {
    linear_cross_entropy(
        backend,
        hidden,
        weight,
        bias,
        targets,
        options,
        Some(tile_cols),
    )
}

/// `Backend::linear_cross_entropy` (see there): hidden states of any leading shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_cross_entropy<B: Backend + ?Sized>(
    backend: &B,
    hidden: TensorView<'_>,
    weight: MatrixView<'_>,
    bias: Option<ArrayView1<'_, f32>>,
    targets: Targets<'_>,
    options: &CrossEntropyOptions<'_>,
    tile_cols: Option<usize>,
) -> Result<LinearCrossEntropyOutput> {
    let rows = Rows::of(&hidden)?;
    let v = weight.dim().0;
    targets.check_shape(&rows.leading, v)?;
    let n: usize = rows.leading.iter().product();
    let flat = targets.flat(n, v)?;
    let (h, w) = (Matrix::Host(rows.view()), Matrix::Host(weight.view()));
    let (done, grads) = rows_call(backend, h, w, bias, flat.view(), options, tile_cols)?;
    let d = hidden.shape().last().copied().unwrap_or(0);
    let (grad_hidden, grad_weight, grad_bias) = match grads {
        Some(g) => (
            Some(
                Tensor::narrow(g.hidden.into_dyn(), hidden.dtype())
                    .into_shape(&rows.shape_with(&[d]))?,
            ),
            Some(Tensor::narrow(g.weight.into_dyn(), weight.dtype())),
            g.bias,
        ),
        None => (None, None, None),
    };
    Ok(LinearCrossEntropyOutput {
        loss: match done.loss {
            Loss::Scalar(s) => Loss::Scalar(s),
            Loss::PerRow(l) => Loss::PerRow(rows.per_row(l)?),
        },
        lse: rows.per_row(done.lse)?,
        sums: done.sums,
        grad_hidden,
        grad_weight,
        grad_bias,
    })
}

/// [`Backend::linear_cross_entropy`] on `[N, D]` hidden states and `[V, D]` weights that may
/// be device matrices ([`Matrix::Device`]: an application's hidden-state and weight buffers,
/// read where they lie; the GPU backend only) or host data, with class targets `[N]` or
/// probabilities `[N, V]`. The results are on the host; the gradients in the inputs' element
/// types, `[N, D]` and `[V, D]`.
///
/// ```
/// use smoothmax::gpu::Matrix;
/// use smoothmax::linear_ce::linear_cross_entropy_rows;
/// use smoothmax::{CrossEntropyOptions, Gpu, Targets};
/// let h = ndarray::array![[1.0f32, 0.5], [-1.0, 2.0]];
/// let w = ndarray::array![[0.5f32, 1.0], [2.0, -1.0], [0.0, 0.25]];
/// let y = ndarray::array![2i64, 0];
/// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
/// if let Ok(gpu) = Gpu::new() {
///     let (hd, wd) = (gpu.upload(h.view())?, gpu.upload(w.view())?);
///     let on_device = linear_cross_entropy_rows(&gpu, Matrix::Device(&hd), Matrix::Device(&wd),
///                                               None, Targets::classes(y.view()), &o)?;
///     let on_host = linear_cross_entropy_rows(&gpu, h.view().into(), w.view().into(),
///                                             None, Targets::classes(y.view()), &o)?;
///     assert_eq!(on_device, on_host);
/// }
/// # Ok::<(), smoothmax::Error>(())
/// ```
pub fn linear_cross_entropy_rows<B: Backend + ?Sized>(
    backend: &B,
    hidden: Matrix<'_>,
    weight: Matrix<'_>,
    bias: Option<ArrayView1<'_, f32>>,
    targets: Targets<'_>,
    options: &CrossEntropyOptions<'_>,
) -> Result<LinearCrossEntropyOutput> {
    let (n, v) = (hidden.dim().0, weight.dim().0);
    targets.check_shape(&[n], v)?;
    let flat = targets.flat(n, v)?;
    let (hd, wd) = (hidden.dtype(), weight.dtype());
    let (done, grads) = rows_call(backend, hidden, weight, bias, flat.view(), options, None)?;
    let (grad_hidden, grad_weight, grad_bias) = match grads {
        Some(g) => (
            Some(Tensor::narrow(g.hidden.into_dyn(), hd)),
            Some(Tensor::narrow(g.weight.into_dyn(), wd)),
            g.bias,
        ),
        None => (None, None, None),
    };
    Ok(LinearCrossEntropyOutput {
        loss: match done.loss {
            Loss::Scalar(s) => Loss::Scalar(s),
            Loss::PerRow(l) => Loss::PerRow(l.into_dyn()),
        },
        lse: done.lse.into_dyn(),
        sums: done.sums,
        grad_hidden,
        grad_weight,
        grad_bias,
    })
}

/// The whole call on `[N, D]` hidden states (host or device) against flat targets: the
/// statistics pass, the loss from the merged statistics, and the gradient pass when asked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_call<B: Backend + ?Sized>(
    backend: &B,
    hidden: Matrix<'_>,
    weight: Matrix<'_>,
    bias: Option<ArrayView1<'_, f32>>,
    targets: Targets<'_>,
    options: &CrossEntropyOptions<'_>,
    tile_cols: Option<usize>,
) -> Result<(CrossEntropyOutput<()>, Option<LinearGrads>)> {
    let v = weight.dim().0;
    let shard = VocabShard {
        offset: 0,
        total: v,
    };
    let new_pass = || -> Result<LinearPass<'_, '_>> {
        let mut p = LinearPass::new(
            hidden.reborrow(),
            weight.reborrow(),
            bias.as_ref().map(|b| b.view()),
            shard,
            reborrow(&targets),
            options,
        )?;
        p.tile_cols = tile_cols;
        Ok(p)
    };
    let stats = backend.linear_ce_pass(&new_pass()?)?;
    let done =
        ShardedCrossEntropy::new(shard, reborrow(&targets), options).finish(&stats.partials)?;
    if !options.gradient {
        return Ok((done, None));
    }
    let no_grads = || Error::InvalidInput("the gradient pass gave no gradients".into());
    let n = hidden.dim().0;
    // Ignored rows cost nothing backward (`kept`); host hidden states only (a device matrix
    // would need a gather on the device).
    if let (Matrix::Host(h), Some(rows)) = (&hidden, kept_rows(&targets, options)) {
        if rows.len() < n && ignored_rows_finite(h, &rows) {
            let k = Kept::new(rows, h, &targets, options, &stats)?;
            let mut pass = LinearPass::new(
                Matrix::Host(k.hidden.matrix()?),
                weight.reborrow(),
                bias.as_ref().map(|b| b.view()),
                shard,
                k.targets(),
                &k.options,
            )?;
            // The statistics pass's tiles, which the kept rows alone would not choose.
            pass.tile_cols = Some(stats.tile_cols);
            pass.grad = Some((&k.partials, &k.partials));
            pass.tile_stats = Some(&k.tile_stats);
            let g = backend.linear_ce_pass(&pass)?.grads.ok_or_else(no_grads)?;
            return Ok((done, Some(k.scatter(g, n))));
        }
    }
    let mut pass = new_pass()?;
    pass.grad = Some((&stats.partials, &stats.partials));
    pass.tile_stats = Some(&stats.tile_stats);
    let g = backend.linear_ce_pass(&pass)?.grads.ok_or_else(no_grads)?;
    Ok((done, Some(g)))
}

/// `t` borrowed again (`Targets` is invariant in its lifetime, so a shorter one needs a new
/// value).
pub(crate) fn reborrow<'s>(t: &'s Targets<'_>) -> Targets<'s> {
    match t {
        Targets::Classes(t) => Targets::Classes(t.view()),
        Targets::ClassesI32(t) => Targets::ClassesI32(t.view()),
        Targets::ClassesU32(t) => Targets::ClassesU32(t.view()),
        Targets::Probabilities(q) => Targets::Probabilities(q.view()),
    }
}
