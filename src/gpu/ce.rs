//! Cross-entropy on the GPU: inputs checked and resolved on the host (shared with the CPU path,
//! normalized as `cross_entropy::fast` says); one chunk's passes (the fused kernel, or stats →
//! rows → grad for long rows with few of them and for the gradient on CPU adapters, see
//! `RowSplit::fused`) as a `Job` on the launch path; the per-row statistics finished into the
//! loss in f64.

use super::context::Context;
use super::encode::{binding, record_pass, Params, Slice};
use super::io::{In, Matrix, Out, Place};
use super::kernel::uniforms::CeParams;
use super::kernel::{CeFlags, Entry, Family, Kernel, Slot, Spec};
use super::launch::{host, launch, Chunk, Input, Job, Layout, Mode, Output, Sink, Source};
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::Wait;
use super::split::{RowSplit, WG};
use super::Gpu;
use crate::cross_entropy::fast::{fast_inputs, needs_linear, row_losses, FastInputs, RowStats};
use crate::cross_entropy::{
    prepare, reduce, CrossEntropyOptions, CrossEntropyOutput, Loss, LossSums, Prepared, Reduction,
    Targets,
};
use crate::element::{DType, Tensor};
use crate::error::{Error, Result};
use ndarray::Array1;
use wgpu::BufferUsages as U;

const CE_PARAMS_BYTES: u64 = std::mem::size_of::<CeParams>() as u64;

/// Bytes of one row's [`RowStats`] on the device.
pub(crate) const ROW_STATS_BYTES: usize = std::mem::size_of::<RowStats>();

/// Cross-entropy as a [`Job`]. Inputs: the logits (strided), each row's `RowCoef` and,
/// for probability targets, the normalized targets `[B, C]`; outputs: each row's
/// [`RowStats`] and, when asked for and not in place, the gradient `[B, C]`.
pub(crate) struct CeJob {
    cols: usize,
    flags: CeFlags,
    /// Element types of the logits and of the gradient.
    x_dtype: DType,
    g_dtype: DType,
    /// The gradient is written over the logits.
    in_place: bool,
    prob_targets: bool,
    /// The `CeParams` uniform and the normalized class weights, uploaded once per call.
    ce_params: PooledBuffer,
    weight: Option<PooledBuffer>,
}

/// Input and output positions of a [`CeJob`]'s streams.
const X: usize = 0;
const COEF: usize = 1;
const PROBS: usize = 2;
const STATS: usize = 0;
const GRAD: usize = 1;

impl CeJob {
    /// The job for logits of type `x_dtype` and a gradient of type `g_dtype`.
    pub fn new(
        ctx: &Context,
        p: &Prepared,
        fi: &FastInputs,
        o: &CrossEntropyOptions,
        in_place: bool,
        (x_dtype, g_dtype): (DType, DType),
    ) -> Result<Self> {
        let flags = ce_flags(p, o);
        let params = ce_params(fi, o, flags);
        Ok(CeJob {
            cols: p.cols,
            flags,
            x_dtype,
            g_dtype,
            in_place,
            prob_targets: fi.probs.is_some(),
            ce_params: ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&params))?,
            weight: fi
                .weight
                .as_ref()
                .map(|w| ctx.upload_small(U::STORAGE, bytemuck::cast_slice(w)))
                .transpose()?,
        })
    }

    /// Runs over every row: `x` the logits, `stats` and `grad` the outputs (`grad` must be
    /// `Some` exactly when the gradient is asked for and not written in place).
    #[allow(clippy::too_many_arguments)]
    pub async fn run<'s>(
        &self,
        ctx: &Context,
        rows: usize,
        fi: &'s FastInputs,
        x: Source<'s>,
        stats: Sink<'s>,
        grad: Option<Sink<'s>>,
        mode: Mode<'_>,
    ) -> Result<Vec<PooledBuffer>> {
        let mut inputs = vec![
            Input {
                source: x,
                layout: Layout::Strided,
            },
            Input {
                source: host(&fi.coef, 1),
                layout: Layout::Packed,
            },
        ];
        if let Some(q) = fi.probs_slice()? {
            inputs.push(Input {
                source: host(q, self.cols),
                layout: Layout::Packed,
            });
        }
        let mut outputs = vec![Output {
            sink: stats,
            layout: Layout::Packed,
        }];
        // A half gradient is written where it lies (with its row stride): a packed copy of
        // half rows would move partial words.
        let layout = if self.g_dtype == DType::F32 {
            Layout::Based
        } else {
            Layout::Strided
        };
        outputs.extend(grad.map(|sink| Output { sink, layout }));
        launch(ctx, self, rows, self.cols, &inputs, &mut outputs, mode).await
    }
}

impl CeJob {
    /// The per-call buffers the kernels read (the `CeParams` uniform, the weights): a
    /// recorded call keeps them until its encoder has been submitted.
    pub fn into_buffers(self) -> Vec<PooledBuffer> {
        std::iter::once(self.ce_params).chain(self.weight).collect()
    }
}

impl Job for CeJob {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let b = CeBufs {
            x: chunk.inputs[X].slice,
            x_stride: chunk.inputs[X].stride,
            grad: chunk.outputs.get(GRAD).map(|g| g.slice),
            grad_stride: chunk.outputs.get(GRAD).map_or(self.cols, |g| g.stride),
            row_out: chunk.outputs[STATS].slice,
            row_in: chunk.inputs[COEF].slice,
            ce_params: self.ce_params.buffer(),
            weight: self.weight.as_ref().map(|w| w.buffer()),
            probs: chunk.inputs.get(PROBS).map(|q| q.slice),
            in_place: self.in_place,
            dtypes: (self.x_dtype, self.g_dtype),
        };
        debug_assert_eq!(b.probs.is_some(), self.prob_targets);
        record_ce(ctx, encoder, &b, chunk.rows, self.cols, self.flags)
    }
}

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
    let fi = fast_inputs(&p, o);
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
    async fn loss(&self, gpu: &Gpu, wait: Wait) -> Result<(Loss, Array1<f32>, LossSums)> {
        let downloaded;
        let words: &[f32] = match &self.stats {
            Out::Host { .. } => self.stats.host_data(),
            Out::Device(m) => {
                downloaded = gpu.download_with(m, wait).await?;
                downloaded
                    .as_slice()
                    .ok_or_else(|| Error::InvalidInput("statistics not contiguous".into()))?
            }
        };
        let stats: &[RowStats] = bytemuck::cast_slice(words);
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
        let stats = match &self.stats {
            Out::Host { .. } => self.stats.host_data().to_vec(),
            Out::Device(m) => gpu.download_with(m, wait).await?.iter().copied().collect(),
        };
        let stats = bytemuck::cast_slice::<f32, RowStats>(&stats).to_vec();
        let grad = match self.grad {
            None => None,
            Some(Out::Device(m)) => {
                Some(Tensor::F32(gpu.download_with(&m, wait).await?.into_dyn()))
            }
            Some(host) => Some(host.into_tensor(self.prepared.rows)?),
        };
        Ok((stats, grad))
    }

    /// Everything on the host, the gradient in its element type (a host output).
    pub(crate) async fn finish_tensor(
        self,
        gpu: &Gpu,
        wait: Wait,
    ) -> Result<CrossEntropyOutput<Tensor>> {
        let (loss, lse, sums) = self.loss(gpu, wait).await?;
        let grad = match self.grad {
            None => None,
            Some(Out::Device(m)) => {
                Some(Tensor::F32(gpu.download_with(&m, wait).await?.into_dyn()))
            }
            Some(host) => Some(host.into_tensor(self.prepared.rows)?),
        };
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

/// The device buffers one chunk of a cross-entropy call reads and writes.
pub(crate) struct CeBufs<'a> {
    /// Logits: `rows` rows of `cols` floats, `x_stride` floats apart.
    pub x: Slice<'a>,
    pub x_stride: usize,
    /// Gradient output, `rows` rows of `cols` elements, `grad_stride` apart (`cols` but for a
    /// half gradient written into a strided device matrix), when asked for.
    pub grad: Option<Slice<'a>>,
    pub grad_stride: usize,
    /// [`RowStats`] per row.
    pub row_out: Slice<'a>,
    /// `RowCoef` per row.
    pub row_in: Slice<'a>,
    /// The `CeParams` uniform.
    pub ce_params: &'a wgpu::Buffer,
    /// Normalized class weights, `cols` floats.
    pub weight: Option<&'a wgpu::Buffer>,
    /// Normalized smoothed probability targets, `rows × cols` floats.
    pub probs: Option<Slice<'a>>,
    /// Write the gradient over the logits (`grad` is then unused).
    pub in_place: bool,
    /// Element types of the logits and of the gradient.
    pub dtypes: (DType, DType),
}

/// Records the passes of cross-entropy over one chunk of `rows` rows. Returns the buffers the
/// passes use, which must live until the submission completes.
pub(crate) fn record_ce(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    b: &CeBufs,
    rows: usize,
    cols: usize,
    flags: CeFlags,
) -> Result<Vec<PooledBuffer>> {
    let gradient = flags.contains(CeFlags::GRAD);
    let dev = &ctx.device;
    let split = RowSplit::new(rows, cols.div_ceil(4), ctx.policy());
    let part_bytes = (rows * split.segs as usize * 32) as u64;
    // Unfused, the gradient pass reads the statistics from partials (see RowSplit::fused).
    let fused = split.segs == 1 && (split.fused || !gradient);
    let partials = (!fused).then(|| {
        ctx.pool
            .acquire(dev, U::STORAGE, part_bytes, ctx.max_binding())
    });
    let family = if b.in_place {
        Family::CrossEntropyInPlace
    } else {
        Family::CrossEntropy
    };
    let spec = |row_threads| Spec {
        vec4: cols.is_multiple_of(4)
            && b.x_stride.is_multiple_of(4)
            && b.x.base.is_multiple_of(4)
            && b.grad.is_none_or(|g| g.base % 4 == 0)
            && b.grad_stride.is_multiple_of(4),
        row_threads,
        prob_targets: b.probs.is_some(),
        ce: flags,
        x_dtype: b.dtypes.0,
        y_dtype: b.dtypes.1,
        ..Spec::default() // T = 1: the unit exponent form
    };
    let bindings = || {
        let mut v = vec![
            (Slot::X, b.x.binding()),
            (Slot::RowOut, b.row_out.binding()),
            (Slot::RowIn, b.row_in.binding()),
            (Slot::CeParams, binding(b.ce_params, CE_PARAMS_BYTES)),
        ];
        v.extend(b.grad.map(|g| (Slot::Y, g.binding())));
        v.extend(
            partials
                .as_ref()
                .map(|p| (Slot::Partials, binding(p.buffer(), part_bytes))),
        );
        v.extend(
            b.weight
                .map(|w| (Slot::Weight, binding(w, (cols * 4) as u64))),
        );
        v.extend(b.probs.map(|q| (Slot::Q, q.binding())));
        v
    };
    let rt = split.row_threads;
    let main_wgs = split.workgroups(rows);
    let mut passes = vec![];
    if fused {
        passes.push((Entry::CeFused, rt, main_wgs));
    } else {
        passes.push((Entry::CeStats, rt, main_wgs));
        passes.push((Entry::CeRows, 1, rows.div_ceil(WG)));
        if gradient {
            passes.push((
                Entry::CeGrad,
                split.write_threads,
                split.write_workgroups(rows),
            ));
        }
    }
    let mut keep = Vec::new();
    for (entry, row_threads, wgs) in passes {
        let params = Params::new(rows, cols, split.segs, split.seg_len, 1.0)
            .placed(b.x.base, b.x_stride, b.grad.map_or(0, |g| g.base))
            .y_strided(b.grad_stride);
        let kernel = Kernel {
            family,
            entry,
            spec: spec(row_threads),
        };
        keep.push(record_pass(ctx, encoder, kernel, wgs, params, bindings())?);
    }
    keep.extend(partials);
    Ok(keep)
}

/// The kernel's option bits for a prepared call.
fn ce_flags(p: &Prepared, o: &CrossEntropyOptions) -> CeFlags {
    CeFlags::default()
        .with(CeFlags::SOFTCAP, o.softcap.is_some())
        .with(CeFlags::WEIGHT, o.weight.is_some())
        .with(CeFlags::LINEAR, needs_linear(p, o))
        .with(CeFlags::GRAD, o.gradient)
}

/// The `CeParams` uniform for a prepared call.
fn ce_params(fi: &FastInputs, o: &CrossEntropyOptions, flags: CeFlags) -> CeParams {
    CeParams {
        softcap: o.softcap.unwrap_or(1.0),
        sigma: fi.sigma,
        sigma2: fi.sigma,
        _pad3: 0,
        flags: flags.bits(),
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    }
}
