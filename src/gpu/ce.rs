//! Cross-entropy on the GPU: inputs checked and resolved on the host (shared with the CPU path,
//! normalized as `cross_entropy::fast` says); one chunk's passes (the fused kernel, or stats →
//! rows → grad for long rows with few of them and for the gradient on CPU adapters, see
//! `RowSplit::fused`) as a `Job` on the launch path. A call's staging and the loss finished
//! from the per-row statistics in f64: `ce_call`.

use super::context::Context;
use super::encode::{binding, record_pass, Params, Slice};
use super::kernel::uniforms::CeParams;
use super::kernel::{CeFlags, Entry, Family, Kernel, Slot, Spec};
use super::launch::{host, launch, Chunk, Input, Job, Layout, Mode, Output, Sink, Source};
use super::pool::PooledBuffer;
use super::split::{RowSplit, WG};
use crate::cross_entropy::fast::{needs_linear, FastInputs, RowStats};
use crate::cross_entropy::{CrossEntropyOptions, Prepared};
use crate::element::DType;
use crate::error::Result;
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
