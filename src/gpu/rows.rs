//! The row ops (logsumexp, softmax, log-softmax) on the GPU: the passes of one chunk (the
//! split and the kernel variants for it) as a `Job`, and the op's stage and finish around the
//! launch path.

use super::context::Context;
use super::encode::{binding, record_pass, Params, Slice};
use super::io::{In, Matrix, Out, Place};
use super::kernel::{Entry, Family, Kernel, Slot, Spec};
use super::launch::{launch, Chunk, Input, Job, Layout, Mode, Output, Sink, Source};
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::Wait;
use super::split::{RowSplit, WG};
use super::Gpu;
use crate::element::{DType, Tensor};
use crate::error::{Error, Result};
use crate::rows::{check_temperature, RowOp, RowOutput};
use crate::scale::ExpScale;
use wgpu::BufferUsages as U;

/// A row op as a [`Job`]: input `x` (strided), output `y` (`[B]` for logsumexp, else
/// `[B, C]`, packed from its base).
pub(crate) struct RowsJob {
    pub op: RowOp,
    pub temperature: f32,
    pub cols: usize,
    /// Element types of `x` and of the matrix output.
    pub x_dtype: DType,
    pub y_dtype: DType,
}

impl RowsJob {
    /// Elements per output row.
    pub fn out_cols(&self) -> usize {
        if self.op == RowOp::LogSumExp {
            1
        } else {
            self.cols
        }
    }

    /// Runs over `rows` rows from `x` into `y` (the one launch path).
    pub async fn run<'s>(
        &self,
        ctx: &Context,
        rows: usize,
        x: Source<'s>,
        y: Sink<'s>,
        mode: Mode<'_>,
    ) -> Result<Vec<PooledBuffer>> {
        let inputs = [Input {
            source: x,
            layout: Layout::Strided,
        }];
        // Half outputs are written where they lie (with their row stride): a packed copy of
        // half rows would move partial words.
        let layout = if self.op != RowOp::LogSumExp && self.y_dtype != DType::F32 {
            Layout::Strided
        } else {
            Layout::Based
        };
        let mut outputs = [Output { sink: y, layout }];
        launch(ctx, self, rows, self.cols, &inputs, &mut outputs, mode).await
    }
}

impl Job for RowsJob {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let (x, y) = (chunk.inputs[0], chunk.outputs[0]);
        record_rows(
            ctx,
            encoder,
            self,
            (x.slice, x.stride),
            (y.slice, y.stride),
            chunk.rows,
        )
    }
}

/// Runs (or records, by `mode`) a row op on `x`; the output (`[B, 1]` f32 for logsumexp,
/// else `[B, C]` in `out`, by default the input's type) goes to `place`, or into the caller's
/// matrix `into` (in its type).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stage(
    ctx: &Context,
    op: RowOp,
    x: Matrix<'_>,
    t: f32,
    place: Place,
    into: Option<&GpuMatrix>,
    out: Option<DType>,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<Out> {
    check_temperature(t)?;
    ctx.check_alive()?;
    let (rows, cols) = x.dim();
    let y_dtype = match (op, into) {
        (RowOp::LogSumExp, _) => DType::F32,
        (_, Some(m)) => m.dtype(),
        (_, None) => out.unwrap_or(x.dtype()),
    };
    let job = RowsJob {
        op,
        temperature: t,
        cols,
        x_dtype: x.dtype(),
        y_dtype,
    };
    let out_cols = job.out_cols();
    // An empty row's logsumexp is −inf (the empty sum is 0).
    let fill = if cols == 0 { f32::NEG_INFINITY } else { 0.0 };
    let mut out = match into {
        None => Out::typed(ctx, mode.place(place), rows, out_cols, fill, y_dtype)?,
        Some(m) if matches!(x, Matrix::Device(xm) if xm.buffer() == m.buffer()) => {
            return Err(Error::InvalidInput(
                "the output matrix shares the input's buffer: one dispatch cannot bind a \
                 buffer both read-only and read-write"
                    .into(),
            ))
        }
        Some(m) if op == RowOp::LogSumExp && m.dtype() != DType::F32 => {
            return Err(Error::InvalidInput(format!(
                "logsumexp writes f32; the output matrix holds {}",
                m.dtype()
            )))
        }
        Some(m) if m.dim() == (rows, out_cols) => Out::Device(m.clone()),
        Some(m) => {
            return Err(Error::InvalidInput(format!(
            "the output matrix is [{}, {}]; {op:?} of [{rows}, {cols}] writes [{rows}, {out_cols}]",
            m.dim().0,
            m.dim().1
        )))
        }
    };
    if rows > 0 && cols == 0 && op == RowOp::LogSumExp {
        if let Out::Device(m) = &out {
            m.fill(ctx, f32::NEG_INFINITY)?;
        }
    }
    if rows > 0 && cols > 0 {
        let x = In::new(x);
        keep.extend(job.run(ctx, rows, x.source()?, out.sink(), mode).await?);
    }
    Ok(out)
}

/// A row op's host output in its element type: `[B]` f32 for logsumexp, else `[B, C]`.
pub(crate) fn finish_tensor(op: RowOp, out: Out, rows: usize) -> Result<Tensor> {
    let t = out.into_tensor(rows)?;
    match op {
        RowOp::LogSumExp => t.into_shape(&[rows]),
        _ => Ok(t),
    }
}

/// A row op's output on the host (half outputs widened exactly): a vector for logsumexp, else
/// a matrix.
pub(crate) async fn finish_host(
    gpu: &Gpu,
    op: RowOp,
    out: Out,
    rows: usize,
    wait: Wait,
) -> Result<RowOutput> {
    let m = match out {
        Out::Device(m) => gpu.download_with(&m, wait).await?,
        host => host.into_host(rows)?,
    };
    Ok(match op {
        RowOp::LogSumExp => RowOutput::PerRow(m.column(0).to_owned()),
        _ => RowOutput::Matrix(m),
    })
}

/// Records the passes of a row op over one chunk: `x` holds `rows` rows of `cols` elements,
/// `x_stride` elements apart (at most one storage binding); the result goes to `y` (`rows`
/// floats for logsumexp, else `rows × cols` elements, contiguous). Returns the buffers the
/// passes use; keep them until the submission is made (queue order protects them after that).
pub(crate) fn record_rows(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    job: &RowsJob,
    (x, x_stride): (Slice, usize),
    (y, y_stride): (Slice, usize),
    rows: usize,
) -> Result<Vec<PooledBuffer>> {
    let (op, t, cols) = (job.op, job.temperature, job.cols);
    let dev = &ctx.device;
    // vec4 access needs every row start 16-byte aligned.
    let vec4 = cols.is_multiple_of(4)
        && x_stride.is_multiple_of(4)
        && x.base.is_multiple_of(4)
        && y.base.is_multiple_of(4)
        && (op == RowOp::LogSumExp || y_stride.is_multiple_of(4));
    let split = RowSplit::new(rows, cols.div_ceil(4), ctx.policy());
    let part_bytes = (rows * split.segs as usize * 16) as u64;
    let lse_out = op == RowOp::LogSumExp;
    // Partials: for split rows (S > 1), and for an unfused softmax's write pass.
    let partials = (split.segs > 1 || (!lse_out && !split.fused)).then(|| {
        ctx.pool
            .acquire(dev, U::STORAGE, part_bytes, ctx.max_binding())
    });

    // Passes: (family, entry, row_threads, workgroups). Unfused, the first pass is always
    // the logsumexp family's `stats`, writing partials.
    let rt = split.row_threads;
    let main_wgs = split.workgroups(rows);
    let merge_wgs = rows.div_ceil(WG);
    let write = (
        Family::Softmax,
        Entry::Write,
        split.write_threads,
        split.write_workgroups(rows),
    );
    let passes: Vec<(Family, Entry, u32, usize)> = match (op, split.segs) {
        (RowOp::LogSumExp, 1) => vec![(Family::LogSumExp, Entry::Stats, rt, main_wgs)],
        (RowOp::LogSumExp, _) => {
            vec![
                (Family::LogSumExp, Entry::Stats, rt, main_wgs),
                (Family::LogSumExp, Entry::LseMerge, 1, merge_wgs),
            ]
        }
        (_, 1) if split.fused => vec![(Family::Softmax, Entry::Fused, rt, main_wgs)],
        // One segment: the partial is already the row's stats.
        (_, 1) => vec![
            (Family::LogSumExp, Entry::StatsPartial, rt, main_wgs),
            write,
        ],
        (_, _) => vec![
            (Family::LogSumExp, Entry::Stats, rt, main_wgs),
            (Family::LogSumExp, Entry::MergeRows, 1, merge_wgs),
            write,
        ],
    };
    let exp_form = ExpScale::temperature(t, std::f64::consts::LOG2_E).form;
    let mut keep = Vec::new();
    for &(family, entry, row_threads, wgs) in &passes {
        let kernel = Kernel {
            family,
            entry,
            spec: Spec {
                vec4,
                row_threads,
                // Only the write passes read LOG_OUTPUT: the statistics passes are shared.
                log_output: family == Family::Softmax && op == RowOp::LogSoftmax,
                exp_form,
                x_dtype: job.x_dtype,
                y_dtype: job.y_dtype,
                ..Spec::default()
            },
        };
        let mut b = vec![(Slot::X, x.binding())];
        if let Some(p) = &partials {
            b.push((Slot::Partials, binding(p.buffer(), part_bytes)));
        }
        // logsumexp writes `lse`; the other ops write `y`.
        b.push((if lse_out { Slot::Lse } else { Slot::Y }, y.binding()));
        let params = Params::new(rows, cols, split.segs, split.seg_len, t)
            .placed(x.base, x_stride, y.base)
            .y_strided(y_stride);
        keep.push(record_pass(ctx, encoder, kernel, wgs, params, b)?);
    }
    keep.extend(partials);
    Ok(keep)
}
