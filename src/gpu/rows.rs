//! The dispatcher for the row ops (logsumexp, softmax, log-softmax): chunks rows to the
//! binding limit, picks the split and the shader variants, records the passes, reads back.

use super::context::Context;
use super::encode::{binding, record_pass, Params, Scopes, Slice};
use super::plan::{chunk_rows, RowSplit, WG};
use super::pool::PooledBuffer;
use super::readback::{read_f32_parts, Wait};
use super::shaders::{Family, ShaderKey};
use crate::error::{Error, Result};
use crate::ops::{check_temperature, RowOp, RowOutput};
use crate::scale::ExpScale;
use ndarray::{Array1, Array2, ArrayView2};
use wgpu::BufferUsages as U;

/// What the outputs of an empty matrix are, with no device work: `C = 0` rows have
/// logsumexp −inf (the empty sum is 0) and empty (log-)softmax rows.
fn empty_output(op: RowOp, rows: usize, cols: usize) -> RowOutput {
    match op {
        RowOp::LogSumExp => RowOutput::PerRow(Array1::from_elem(rows, f32::NEG_INFINITY)),
        _ => RowOutput::Matrix(Array2::zeros((rows, cols))),
    }
}

/// Runs one row op on the GPU and reads the result back.
pub(crate) async fn row_op(
    ctx: &Context,
    op: RowOp,
    x: ArrayView2<'_, f32>,
    t: f32,
    wait: Wait,
) -> Result<RowOutput> {
    check_temperature(t)?;
    ctx.check_alive()?;
    let (rows, cols) = x.dim();
    if rows == 0 || cols == 0 {
        return Ok(empty_output(op, rows, cols));
    }
    let x = x.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
    let cap = ctx.max_binding();
    let chunk = chunk_rows(rows, cols, cap, max_dim)?;
    let out_cols = if op == RowOp::LogSumExp { 1 } else { cols };
    let mut out = vec![0.0f32; rows * out_cols];

    let pool = &ctx.pool;
    let dev = &ctx.device;
    let xbuf = pool.acquire(
        dev,
        U::STORAGE | U::COPY_DST,
        (chunk * cols * 4) as u64,
        cap,
    );
    let ybuf = pool.acquire(
        dev,
        U::STORAGE | U::COPY_SRC,
        (chunk * out_cols * 4) as u64,
        cap,
    );
    let staging = pool.acquire(
        dev,
        U::MAP_READ | U::COPY_DST,
        (chunk * out_cols * 4) as u64,
        cap,
    );
    let mut loans = vec![xbuf, ybuf, staging];

    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = run_chunk(
            ctx,
            op,
            &xs[r0 * cols..(r0 + n) * cols],
            &mut out[r0 * out_cols..(r0 + n) * out_cols],
            n,
            cols,
            t,
            &loans,
            wait,
        )
        .await;
        if let Err(e) = res {
            // State of these buffers is unknown after a failure: do not reuse them.
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    ctx.check_uncaptured()?;
    Ok(match op {
        RowOp::LogSumExp => RowOutput::PerRow(Array1::from_vec(out)),
        _ => RowOutput::Matrix(
            Array2::from_shape_vec((rows, cols), out)
                .map_err(|e| Error::InvalidInput(e.to_string()))?,
        ),
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_chunk(
    ctx: &Context,
    op: RowOp,
    x: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    t: f32,
    loans: &[PooledBuffer],
    wait: Wait,
) -> Result<()> {
    let (xbuf, ybuf, staging) = (loans[0].buffer(), loans[1].buffer(), loans[2].buffer());
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    ctx.queue.write_buffer(xbuf, 0, bytemuck::cast_slice(x));
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/rows"),
    });
    let xs = Slice::at0(xbuf, (rows * cols * 4) as u64);
    let ys = Slice::at0(ybuf, (out.len() * 4) as u64);
    let _keep = record_rows(ctx, &mut encoder, op, t, xs, cols, ys, rows, cols)?;
    encoder.copy_buffer_to_buffer(ybuf, 0, staging, 0, (out.len() * 4) as u64);
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    read_f32_parts(ctx, staging, &mut [out], wait).await
}

/// Records the passes of a row op over one chunk: `x` holds `rows` rows of `cols` floats,
/// `x_stride` floats apart (at most one storage binding); the result goes to `y` (`rows`
/// floats for logsumexp, else `rows × cols`, contiguous). Returns the buffers the passes use;
/// keep them until the submission is made (queue order protects them after that).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_rows(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: RowOp,
    t: f32,
    x: Slice,
    x_stride: usize,
    y: Slice,
    rows: usize,
    cols: usize,
) -> Result<Vec<PooledBuffer>> {
    let dev = &ctx.device;
    // vec4 access needs every row start 16-byte aligned.
    let vec4 = cols.is_multiple_of(4)
        && x_stride.is_multiple_of(4)
        && x.base.is_multiple_of(4)
        && y.base.is_multiple_of(4);
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
        "write",
        split.write_threads,
        split.write_workgroups(rows),
    );
    let passes: Vec<(Family, &'static str, u32, usize)> = match (op, split.segs) {
        (RowOp::LogSumExp, 1) => vec![(Family::LogSumExp, "stats", rt, main_wgs)],
        (RowOp::LogSumExp, _) => {
            vec![
                (Family::LogSumExp, "stats", rt, main_wgs),
                (Family::LogSumExp, "lse_merge", 1, merge_wgs),
            ]
        }
        (_, 1) if split.fused => vec![(Family::Softmax, "fused", rt, main_wgs)],
        // One segment: the partial is already the row's stats.
        (_, 1) => vec![(Family::LogSumExp, "stats_partial", rt, main_wgs), write],
        (_, _) => vec![
            (Family::LogSumExp, "stats", rt, main_wgs),
            (Family::LogSumExp, "merge_rows", 1, merge_wgs),
            write,
        ],
    };
    let part_binding = || match &partials {
        Some(p) => binding(p.buffer(), part_bytes),
        None => ctx.dummy.as_entire_binding(),
    };
    let mut keep = Vec::new();
    for &(family, entry, row_threads, wgs) in &passes {
        let key = ShaderKey {
            family,
            vec4,
            row_threads,
            log_output: op == RowOp::LogSoftmax,
            prob_targets: false,
            ce_bits: 0,
            exp_form: ExpScale::temperature(t, std::f64::consts::LOG2_E).form,
        };
        let yb = if lse_out {
            ctx.dummy.as_entire_binding()
        } else {
            y.binding()
        };
        let mut b = vec![(1, x.binding()), (2, yb), (3, part_binding())];
        if family == Family::LogSumExp {
            b.push((
                4,
                if lse_out {
                    y.binding()
                } else {
                    ctx.dummy.as_entire_binding()
                },
            ));
        }
        let params =
            Params::new(rows, cols, split.segs, split.seg_len, t).placed(x.base, x_stride, y.base);
        keep.push(record_pass(ctx, encoder, key, entry, wgs, params, b)?);
    }
    keep.extend(partials);
    Ok(keep)
}
