//! The dispatcher for cross-entropy: checks and resolves inputs on the host (shared with the
//! CPU path, normalized as `cross_entropy::fast` says), uploads logits / per-row coefficients /
//! weights per chunk of rows, records the fused kernel (or stats → rows → grad for long rows
//! with few of them, and for the gradient on CPU adapters, see `RowSplit::fused`), reads back
//! the per-row statistics and the gradient, and finishes the loss in f64.

use super::context::Context;
use super::encode::{binding, record_pass, Params, Scopes, Slice};
use super::plan::{chunk_rows, RowSplit, WG};
use super::pool::PooledBuffer;
use super::readback::{read_f32_parts, Wait};
use super::shaders::{Family, ShaderKey};
use crate::cross_entropy::fast::{fast_inputs, needs_linear, FastInputs, RowCoef, RowStats};
use crate::cross_entropy::{
    finish, prepare, CrossEntropyOptions, CrossEntropyOutput, Prepared, Targets,
};
use crate::error::{Error, Result};
use crate::scale::ExpForm;
use ndarray::ArrayView2;
use wgpu::BufferUsages as U;

/// Mirrors `struct CeParams` in shaders/cross_entropy.wgsl (32 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CeParams {
    softcap: f32,
    sigma: f32,
    /// `sigma` again (see `shifted` in the prelude for why two).
    sigma2: f32,
    _pad3: u32,
    pub(crate) flags: u32,
    _pad: [u32; 3],
}

/// Bytes of one row's [`RowStats`] / [`RowCoef`] on the device.
pub(crate) const ROW_STATS_BYTES: usize = std::mem::size_of::<RowStats>();
const ROW_COEF_BYTES: usize = std::mem::size_of::<RowCoef>();

const CE_SOFTCAP: u32 = 1;
const CE_WEIGHT: u32 = 2;
const CE_LINEAR: u32 = 4;
const CE_GRAD: u32 = 8;
// Every bit is compiled into the shader (`ShaderKey::ce_bits`), the weight bit too: lavapipe
// runs a masked-off `loadw4` at nearly the cost of a real one (its storage loads are per-lane
// loops), which cost the unweighted forward pass about 10%.

pub(crate) async fn cross_entropy(
    ctx: &Context,
    logits: ArrayView2<'_, f32>,
    targets: &Targets<'_>,
    o: &CrossEntropyOptions<'_>,
    wait: Wait,
) -> Result<CrossEntropyOutput> {
    let p = prepare(logits.dim(), targets, o)?;
    let fi = fast_inputs(&p, o);
    ctx.check_alive()?;
    let (rows, cols) = (p.rows, p.cols);
    let mut stats = vec![RowStats::default(); rows];
    let mut grad = if o.gradient {
        vec![0.0f32; rows * cols]
    } else {
        Vec::new()
    };
    if rows > 0 && cols > 0 {
        run(ctx, logits, &p, &fi, o, &mut stats, &mut grad, wait).await?;
    }
    finish(&p, &fi, o, &stats, o.gradient.then_some(grad))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: &Context,
    logits: ArrayView2<'_, f32>,
    p: &Prepared,
    fi: &FastInputs,
    o: &CrossEntropyOptions<'_>,
    stats: &mut [RowStats],
    grad: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let (rows, cols) = (p.rows, p.cols);
    let x = logits.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("logits could not be made contiguous".into()))?;
    let qs = fi.probs_slice()?;
    let cap = ctx.max_binding();
    let chunk = chunk_rows(
        rows,
        cols,
        cap,
        ctx.limits.max_compute_workgroups_per_dimension,
    )?;
    let dev = &ctx.device;
    let ce_params = ce_params(p, fi, o);

    let scopes = Scopes::push(dev);
    let block = (chunk * cols * 4) as u64;
    let (out_bytes, in_bytes) = (
        (chunk * ROW_STATS_BYTES) as u64,
        (chunk * ROW_COEF_BYTES) as u64,
    );
    let mut loans = vec![
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_SRC, out_bytes, cap), // row_out
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_DST, in_bytes, cap), // row_in
        ctx.pool.acquire(dev, U::UNIFORM | U::COPY_DST, 32, cap),    // ce params
        ctx.pool.acquire(
            dev,
            U::MAP_READ | U::COPY_DST,
            block * o.gradient as u64 + out_bytes,
            cap,
        ),
    ];
    if o.gradient {
        loans.push(ctx.pool.acquire(dev, U::STORAGE | U::COPY_SRC, block, cap));
        // grad
    }
    let weight = fi.weight.as_ref().map(|w| {
        let b = ctx
            .pool
            .acquire(dev, U::STORAGE | U::COPY_DST, (cols * 4) as u64, cap);
        ctx.queue
            .write_buffer(b.buffer(), 0, bytemuck::cast_slice(w));
        b
    });
    let probs = qs.map(|_| ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap));
    ctx.queue
        .write_buffer(loans[3].buffer(), 0, bytemuck::bytes_of(&ce_params));
    scopes.pop()?;

    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = run_chunk(
            ctx,
            p,
            ce_params.flags,
            r0,
            n,
            (xs, qs, &fi.coef),
            &loans,
            weight.as_ref(),
            probs.as_ref(),
            stats,
            grad,
            wait,
        )
        .await;
        if let Err(e) = res {
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    ctx.check_uncaptured()
}

/// The device buffers one chunk of a cross-entropy call reads and writes.
pub(crate) struct CeBufs<'a> {
    /// Logits: `rows` rows of `cols` floats, `x_stride` floats apart.
    pub x: Slice<'a>,
    pub x_stride: usize,
    /// Gradient output, `rows × cols` floats, contiguous, when asked for.
    pub grad: Option<Slice<'a>>,
    /// [`RowStats`] per row.
    pub row_out: &'a wgpu::Buffer,
    /// [`RowCoef`] per row.
    pub row_in: &'a wgpu::Buffer,
    /// The `CeParams` uniform.
    pub ce_params: &'a wgpu::Buffer,
    /// Normalized class weights, `cols` floats.
    pub weight: Option<&'a wgpu::Buffer>,
    /// Normalized smoothed probability targets, `rows × cols` floats.
    pub probs: Option<&'a wgpu::Buffer>,
    /// Write the gradient over the logits (`grad` is then unused).
    pub in_place: bool,
}

/// Records the passes of cross-entropy over one chunk of `rows` rows. Returns the buffers the
/// passes use, which must live until the submission completes.
pub(crate) fn record_ce(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    b: &CeBufs,
    rows: usize,
    cols: usize,
    flags: u32,
) -> Result<Vec<PooledBuffer>> {
    let gradient = flags & CE_GRAD != 0;
    let dev = &ctx.device;
    let bytes = (rows * cols * 4) as u64;
    let split = RowSplit::new(rows, cols.div_ceil(4), ctx.policy());
    let part_bytes = (rows * split.segs as usize * 32) as u64;
    // Unfused, the gradient pass reads the statistics from partials (see RowSplit::fused).
    let fused = split.segs == 1 && (split.fused || !gradient);
    let partials = (!fused).then(|| {
        ctx.pool
            .acquire(dev, U::STORAGE, part_bytes, ctx.max_binding())
    });
    let key = |row_threads| ShaderKey {
        family: if b.in_place {
            Family::CrossEntropyInPlace
        } else {
            Family::CrossEntropy
        },
        vec4: cols.is_multiple_of(4)
            && b.x_stride.is_multiple_of(4)
            && b.x.base.is_multiple_of(4)
            && b.grad.is_none_or(|g| g.base % 4 == 0),
        row_threads,
        log_output: false,
        prob_targets: b.probs.is_some(),
        ce_bits: flags,
        exp_form: ExpForm::Unit, // T = 1
    };
    let bindings = || {
        vec![
            (1, b.x.binding()),
            (
                2,
                b.grad
                    .map_or(ctx.dummy.as_entire_binding(), |g| g.binding()),
            ),
            (
                3,
                partials
                    .as_ref()
                    .map_or(ctx.dummy.as_entire_binding(), |p| {
                        binding(p.buffer(), part_bytes)
                    }),
            ),
            (4, binding(b.row_out, (rows * ROW_STATS_BYTES) as u64)),
            (5, binding(b.row_in, (rows * ROW_COEF_BYTES) as u64)),
            (
                6,
                b.weight.map_or(ctx.dummy_ro.as_entire_binding(), |w| {
                    binding(w, (cols * 4) as u64)
                }),
            ),
            (
                7,
                b.probs
                    .map_or(ctx.dummy_ro.as_entire_binding(), |q| binding(q, bytes)),
            ),
            (8, binding(b.ce_params, 32)),
        ]
    };
    let rt = split.row_threads;
    let main_wgs = split.workgroups(rows);
    let mut passes = vec![];
    if fused {
        passes.push(("ce_fused", rt, main_wgs));
    } else {
        passes.push(("ce_stats", rt, main_wgs));
        passes.push(("ce_rows", 1, rows.div_ceil(WG)));
        if gradient {
            passes.push(("ce_grad", split.write_threads, split.write_workgroups(rows)));
        }
    }
    let mut keep = Vec::new();
    for (entry, row_threads, wgs) in passes {
        let params = Params::new(rows, cols, split.segs, split.seg_len, 1.0).placed(
            b.x.base,
            b.x_stride,
            b.grad.map_or(0, |g| g.base),
        );
        keep.push(record_pass(
            ctx,
            encoder,
            key(row_threads),
            entry,
            wgs,
            params,
            bindings(),
        )?);
    }
    keep.extend(partials);
    Ok(keep)
}

/// The `CeParams` uniform for a prepared call.
pub(crate) fn ce_params(p: &Prepared, fi: &FastInputs, o: &CrossEntropyOptions) -> CeParams {
    let mut flags = 0;
    if o.softcap.is_some() {
        flags |= CE_SOFTCAP;
    }
    if o.weight.is_some() {
        flags |= CE_WEIGHT;
    }
    if needs_linear(p, o) {
        flags |= CE_LINEAR;
    }
    if o.gradient {
        flags |= CE_GRAD;
    }
    CeParams {
        softcap: o.softcap.unwrap_or(1.0),
        sigma: fi.sigma,
        sigma2: fi.sigma,
        _pad3: 0,
        flags,
        _pad: [0; 3],
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_chunk(
    ctx: &Context,
    p: &Prepared,
    flags: u32,
    r0: usize,
    n: usize,
    (xs, qs, coef): (&[f32], Option<&[f32]>, &[RowCoef]),
    loans: &[PooledBuffer],
    weight: Option<&PooledBuffer>,
    probs: Option<&PooledBuffer>,
    stats: &mut [RowStats],
    grad: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = p.cols;
    let dev = &ctx.device;
    let (xbuf, outbuf, inbuf, cebuf, staging) = (
        loans[0].buffer(),
        loans[1].buffer(),
        loans[2].buffer(),
        loans[3].buffer(),
        loans[4].buffer(),
    );
    let gbuf = loans.get(5).map(|b| b.buffer());
    let elems = n * cols;
    let bytes = (elems * 4) as u64;
    let out_bytes = (n * ROW_STATS_BYTES) as u64;

    let scopes = Scopes::push(dev);
    ctx.queue.write_buffer(
        xbuf,
        0,
        bytemuck::cast_slice(&xs[r0 * cols..r0 * cols + elems]),
    );
    ctx.queue
        .write_buffer(inbuf, 0, bytemuck::cast_slice(&coef[r0..r0 + n]));
    if let (Some(q), Some(qb)) = (qs, probs) {
        ctx.queue.write_buffer(
            qb.buffer(),
            0,
            bytemuck::cast_slice(&q[r0 * cols..r0 * cols + elems]),
        );
    }
    let bufs = CeBufs {
        x: Slice::at0(xbuf, bytes),
        x_stride: cols,
        grad: gbuf.map(|g| Slice::at0(g, bytes)),
        row_out: outbuf,
        row_in: inbuf,
        ce_params: cebuf,
        weight: weight.map(|w| w.buffer()),
        probs: probs.map(|q| q.buffer()),
        in_place: false,
    };
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/ce"),
    });
    let _keep = record_ce(ctx, &mut encoder, &bufs, n, cols, flags)?;
    let gradient = flags & CE_GRAD != 0;
    let grad_bytes = if gradient { bytes } else { 0 };
    if let Some(g) = gbuf {
        encoder.copy_buffer_to_buffer(g, 0, staging, 0, bytes);
    }
    encoder.copy_buffer_to_buffer(outbuf, 0, staging, grad_bytes, out_bytes);
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;

    let mut row_out = vec![0.0f32; n * ROW_STATS_BYTES / 4];
    let gdst: &mut [f32] = if gradient {
        &mut grad[r0 * cols..r0 * cols + elems]
    } else {
        &mut []
    };
    read_f32_parts(ctx, staging, &mut [gdst, &mut row_out], wait).await?;
    stats[r0..r0 + n].copy_from_slice(bytemuck::cast_slice(&row_out));
    Ok(())
}
