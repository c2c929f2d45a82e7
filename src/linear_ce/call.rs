//! The whole fused linear cross-entropy call: the statistics pass, the loss from the merged
//! statistics, the gradient pass (over the rows that count, `kept.rs`). Each pass runs on a
//! backend through the closure the caller gives (`Backend::linear_ce_pass`), so this file
//! needs no backend.

use super::kept::{ignored_rows_finite, kept_rows, Kept};
use super::pass::{LinearCrossEntropyOutput, LinearGrads, LinearPass, LinearPassResult};
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Loss, Targets};
use crate::element::{MatrixView, Tensor, TensorView};
use crate::error::{Error, Result};
use crate::gpu::Matrix;
use crate::shard::pass::{finish, VocabShard};
use crate::tensor::Rows;
use ndarray::ArrayView1;

/// `Backend::linear_cross_entropy` (see there): hidden states of any leading shape, each pass
/// run by `run` (the backend's `linear_ce_pass`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_cross_entropy(
    run: &dyn Fn(&LinearPass) -> Result<LinearPassResult>,
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
    let (done, grads) = rows_call(run, h, w, bias, flat.view(), options, tile_cols)?;
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

/// The whole call on `[N, D]` hidden states (host or device) against flat targets: the
/// statistics pass, the loss from the merged statistics, and the gradient pass when asked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_call(
    run: &dyn Fn(&LinearPass) -> Result<LinearPassResult>,
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
    let stats = run(&new_pass()?)?;
    let done = finish(shard, &reborrow(&targets), options, &stats.partials)?;
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
            let g = run(&pass)?.grads.ok_or_else(no_grads)?;
            return Ok((done, Some(k.scatter(g, n))));
        }
    }
    let mut pass = new_pass()?;
    pass.grad = Some((&stats.partials, &stats.partials));
    pass.tile_stats = Some(&stats.tile_stats);
    let g = run(&pass)?.grads.ok_or_else(no_grads)?;
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
