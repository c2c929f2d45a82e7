//! A GPU cross-entropy call: its inputs checked and staged, its kernels run or recorded
//! ([`CeJob`]), and its results finished (the loss from each row's statistics, the gradient
//! on the host or the device).

use super::ce::{CeJob, ROW_STATS_BYTES};
use super::context::Context;
use super::io::{In, Matrix, Out, Place};
use super::launch::Mode;
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::Wait;
use super::Gpu;
use crate::cross_entropy::fast::{fast_inputs, row_losses, FastInputs, RowStats};
use crate::cross_entropy::{
    prepare, reduce, CrossEntropyOptions, CrossEntropyOutput, Loss, LossSums, Prepared, Reduction,
    Targets,
};
use crate::element::{DType, Tensor};
use crate::error::{Error, Result};
use ndarray::Array1;
use std::borrow::Cow;

/// Cross-entropy with the gradient left on the device.
#[derive(Clone, Debug)]
pub struct DeviceCrossEntropy {
    /// The loss (read back: it is `B` floats at most).
    pub loss: Loss,
    /// Per-row logsumexp of the logits used.
    pub lse: Array1<f32>,
    /// The gradient, `[B, C]` contiguous, when asked for (in place: the logits' matrix, with
    /// its row stride).
    pub grad: Option<GpuMatrix>,
    /// The loss's numerator and denominator, to combine batches (see [`LossSums`]).
    pub sums: LossSums,
}

/// A cross-entropy call whose kernels have run or been recorded: each row's statistics and
/// the gradient, on the host or the device, and what the loss is finished from (see
/// [`crate::gpu::Recorded`]).
pub struct CeStaged {
    prepared: Prepared,
    fast: FastInputs,
    reduction: Reduction,
    z_loss: f32,
    /// `[B, 6]` words: each row's [`RowStats`].
    stats: Out,
    grad: Option<Out>,
    /// In place: the logits' matrix, which now holds the gradient.
    over_logits: Option<GpuMatrix>,
}

/// Runs (or records, by `mode`) cross-entropy of `logits`; the gradient (in `out`, by default
/// the logits' type) goes to `place`, or over the logits when `in_place` (device logits only,
/// in their type).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stage(
    ctx: &Context,
    logits: Matrix<'_>,
    targets: &Targets<'_>,
    o: &CrossEntropyOptions<'_>,
    place: Place,
    in_place: bool,
    out: Option<DType>,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<CeStaged> {
    let p = prepare(logits.dim(), targets, o)?;
    let fi = fast_inputs(&p, o, true);
    stage_planned(ctx, logits, p, fi, o, (place, in_place, out), mode, keep).await
}

/// [`stage`] of a prepared call (its checked inputs `p` and kernel inputs `fi`: a whole
/// call's or a vocabulary shard's, see `crate::shard`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stage_planned(
    ctx: &Context,
    logits: Matrix<'_>,
    p: Prepared,
    fi: FastInputs,
    o: &CrossEntropyOptions<'_>,
    (place, in_place, out): (Place, bool, Option<DType>),
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<CeStaged> {
    let x_dtype = logits.dtype();
    let g_dtype = if in_place {
        x_dtype
    } else {
        out.unwrap_or(x_dtype)
    };
    ctx.check_alive()?;
    let over_logits = match (in_place, &logits) {
        (false, _) => None,
        (true, Matrix::Device(m)) if o.gradient => Some((*m).clone()),
        (true, Matrix::Device(_)) => {
            return Err(Error::InvalidInput(
                "an in-place cross-entropy writes the gradient: set options.gradient".into(),
            ))
        }
        (true, Matrix::Host(_)) => {
            return Err(Error::InvalidInput(
                "an in-place cross-entropy writes over device logits, not host data".into(),
            ))
        }
    };
    let (rows, cols) = (p.rows, p.cols);
    let place = mode.place(place);
    let words = ROW_STATS_BYTES / 4;
    // The statistics are small: read back when the call streams, whatever `place` says.
    let mut stats = Out::new(ctx, mode.place(Place::Host), rows, words, 0.0)?;
    let mut grad = (o.gradient && !in_place)
        .then(|| Out::typed(ctx, place, rows, cols, 0.0, g_dtype))
        .transpose()?;
    if rows > 0 && cols == 0 {
        // No classes: zeroed statistics (`row_losses` gives such rows loss 0, lse −inf).
        if let Out::Device(m) = &stats {
            m.fill(ctx, 0.0)?;
        }
    }
    if rows > 0 && cols > 0 {
        let x = In::new(logits);
        let job = CeJob::new(ctx, &p, &fi, o, in_place, (x_dtype, g_dtype))?;
        let k = job
            .run(
                ctx,
                rows,
                &fi,
                x.source()?,
                stats.sink(),
                grad.as_mut().map(Out::sink),
                mode,
            )
            .await?;
        keep.extend(k);
        // Recorded, the uniform and the weights must outlive the caller's submission too.
        keep.extend(job.into_buffers());
    }
    Ok(CeStaged {
        // Only the class list and the denominators are needed to reduce; not a copy of the
        // probability targets.
        prepared: Prepared { probs: None, ..p },
        fast: fi.without_probs(),
        reduction: o.reduction,
        z_loss: o.z_loss,
        stats,
        grad,
        over_logits,
    })
}

impl CeStaged {
    /// The loss and lse, reading the statistics back if they are on the device.
    /// Each row's statistics as words, read back if they are on the device.
    async fn stat_words(&self, gpu: &Gpu, wait: Wait) -> Result<Cow<'_, [f32]>> {
        Ok(match &self.stats {
            Out::Host { .. } => Cow::Borrowed(self.stats.host_data()),
            Out::Device(m) => Cow::Owned(
                gpu.download_with(m, wait)
                    .await?
                    .into_raw_vec_and_offset()
                    .0,
            ),
        })
    }

    /// The gradient in its element type on the host, read back if it is on the device.
    async fn grad_tensor(
        grad: Option<Out>,
        rows: usize,
        gpu: &Gpu,
        wait: Wait,
    ) -> Result<Option<Tensor>> {
        Ok(match grad {
            None => None,
            Some(Out::Device(m)) => {
                Some(Tensor::F32(gpu.download_with(&m, wait).await?.into_dyn()))
            }
            Some(host) => Some(host.into_tensor(rows)?),
        })
    }

    async fn loss(&self, gpu: &Gpu, wait: Wait) -> Result<(Loss, Array1<f32>, LossSums)> {
        let words = self.stat_words(gpu, wait).await?;
        let stats: &[RowStats] = bytemuck::cast_slice(&words);
        let (ce, lse) = row_losses(&self.prepared, &self.fast, stats);
        let o = CrossEntropyOptions {
            reduction: self.reduction,
            z_loss: self.z_loss,
            ..Default::default()
        };
        let (loss, sums) = reduce(&self.prepared, &o, &ce, &lse);
        Ok((loss, Array1::from_vec(lse), sums))
    }

    /// Each row's statistics and the gradient in its element type, on the host.
    pub(crate) async fn finish_raw(
        self,
        gpu: &Gpu,
        wait: Wait,
    ) -> Result<(Vec<RowStats>, Option<Tensor>)> {
        let stats =
            bytemuck::cast_slice::<f32, RowStats>(&self.stat_words(gpu, wait).await?).to_vec();
        let grad = Self::grad_tensor(self.grad, self.prepared.rows, gpu, wait).await?;
        Ok((stats, grad))
    }

    /// Everything on the host, the gradient in its element type (a host output).
    pub(crate) async fn finish_tensor(
        self,
        gpu: &Gpu,
        wait: Wait,
    ) -> Result<CrossEntropyOutput<Tensor>> {
        let (loss, lse, sums) = self.loss(gpu, wait).await?;
        let grad = Self::grad_tensor(self.grad, self.prepared.rows, gpu, wait).await?;
        Ok(CrossEntropyOutput {
            loss,
            grad,
            lse,
            sums,
        })
    }

    /// Everything on the host (a half gradient widened exactly).
    pub(crate) async fn finish_host(self, gpu: &Gpu, wait: Wait) -> Result<CrossEntropyOutput> {
        let (loss, lse, sums) = self.loss(gpu, wait).await?;
        let grad = match self.grad {
            None => None,
            Some(Out::Device(m)) => Some(gpu.download_with(&m, wait).await?),
            Some(host) => Some(host.into_host(self.prepared.rows)?),
        };
        Ok(CrossEntropyOutput {
            loss,
            grad,
            lse,
            sums,
        })
    }

    /// The gradient on the device.
    pub(crate) async fn finish_device(self, gpu: &Gpu, wait: Wait) -> Result<DeviceCrossEntropy> {
        let (loss, lse, sums) = self.loss(gpu, wait).await?;
        let grad =
            match (self.over_logits, self.grad) {
                (Some(m), _) => Some(m),
                (None, Some(g)) => Some(g.into_device().ok_or_else(|| {
                    Error::InvalidInput("the gradient was left on the host".into())
                })?),
                (None, None) => None,
            };
        Ok(DeviceCrossEntropy {
            loss,
            lse,
            grad,
            sums,
        })
    }
}
