//! Kernel timing on device-resident data, for `smoothmax bench` and the criterion benches:
//! the input is uploaded once, then each timed run records the op over every chunk into one
//! command buffer and measures it with timestamp queries (where the adapter has
//! TIMESTAMP_QUERY and TIMESTAMP_QUERY_INSIDE_ENCODERS), else with the wall clock around
//! submit + wait. The clock therefore covers device work only, never upload or readback.

use super::ce::{ce_params, record_ce, CeBufs, ROW_STATS_BYTES};
use super::context::Context;
use super::encode::{binding, record_pass, Params, Scopes, Slice};
use super::plan::{chunk_rows, WG};
use super::pool::PooledBuffer;
use super::readback::read_f32;
use super::rows::record_rows;
use super::shaders::{Family, ShaderKey};
use crate::cross_entropy::{prepare, CrossEntropyOptions, Targets};
use crate::error::{Error, Result};
use crate::ops::RowOp;
use crate::scale::ExpForm;
use ndarray::ArrayView2;
use std::time::Instant;
use wgpu::BufferUsages as U;

/// What to time on the device.
#[derive(Clone, Debug)]
pub enum KernelJob<'a> {
    /// A row op at a temperature.
    Row(RowOp, f32),
    /// Cross-entropy (class targets) with these options; `options.gradient` picks
    /// forward-only or forward+backward.
    CrossEntropy(ndarray::ArrayView1<'a, i64>, CrossEntropyOptions<'a>),
    /// Yardstick: copy every element (read once, write once).
    Copy,
    /// Yardstick: `y = exp(x)` per element (read, one exp, write).
    ExpMap,
}

/// Device times of the timed runs.
#[derive(Clone, Debug)]
pub struct KernelTimes {
    /// Seconds per run.
    pub seconds: Vec<f64>,
    /// Whether they come from timestamp queries (else from the wall clock).
    pub timestamps: bool,
}

struct Chunk {
    rows: usize,
    bufs: Vec<PooledBuffer>,
}

pub(crate) fn kernel_times(
    ctx: &Context,
    job: &KernelJob,
    x: ArrayView2<f32>,
    warmup: usize,
    runs: usize,
) -> Result<KernelTimes> {
    ctx.check_alive()?;
    let (rows, cols) = x.dim();
    let x = x.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
    let dev = &ctx.device;
    let cap = ctx.max_binding();
    let scopes = Scopes::push(dev);

    // Upload once, chunk by chunk. Yardsticks see the input as one flat vector of vec4s.
    let mut chunks = Vec::new();
    let mut shared = Vec::new();
    let ce_flags;
    match job {
        KernelJob::Copy | KernelJob::ExpMap => {
            ce_flags = 0;
            let n = rows * cols;
            let per = (cap / 16) as usize * 4; // floats per chunk, a whole number of vec4s
            let mut at = 0;
            while at < n {
                let m = per.min(n - at);
                let bytes = (m.div_ceil(4) * 16) as u64;
                let xb = ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, bytes, cap);
                ctx.queue
                    .write_buffer(xb.buffer(), 0, bytemuck::cast_slice(&xs[at..at + m]));
                let yb = ctx.pool.acquire(dev, U::STORAGE, bytes, cap);
                chunks.push(Chunk {
                    rows: m.div_ceil(4),
                    bufs: vec![xb, yb],
                });
                at += m;
            }
        }
        KernelJob::Row(op, _) => {
            ce_flags = 0;
            let chunk = chunk_rows(
                rows,
                cols,
                cap,
                ctx.limits.max_compute_workgroups_per_dimension,
            )?;
            for r0 in (0..rows).step_by(chunk.max(1)) {
                let n = chunk.min(rows - r0);
                let xb =
                    ctx.pool
                        .acquire(dev, U::STORAGE | U::COPY_DST, (n * cols * 4) as u64, cap);
                ctx.queue.write_buffer(
                    xb.buffer(),
                    0,
                    bytemuck::cast_slice(&xs[r0 * cols..(r0 + n) * cols]),
                );
                let out = if *op == RowOp::LogSumExp { n } else { n * cols };
                let yb = ctx.pool.acquire(dev, U::STORAGE, (out * 4) as u64, cap);
                chunks.push(Chunk {
                    rows: n,
                    bufs: vec![xb, yb],
                });
            }
        }
        KernelJob::CrossEntropy(y, o) => {
            let p = prepare((rows, cols), &Targets::Classes(*y), o)?;
            let fi = crate::cross_entropy::fast::fast_inputs(&p, o);
            let cp = ctx.pool.acquire(dev, U::UNIFORM | U::COPY_DST, 32, cap);
            let params = ce_params(&p, &fi, o);
            ce_flags = params.flags;
            ctx.queue
                .write_buffer(cp.buffer(), 0, bytemuck::bytes_of(&params));
            shared.push(cp);
            let chunk = chunk_rows(
                rows,
                cols,
                cap,
                ctx.limits.max_compute_workgroups_per_dimension,
            )?;
            for r0 in (0..rows).step_by(chunk.max(1)) {
                let n = chunk.min(rows - r0);
                let bytes = (n * cols * 4) as u64;
                let xb = ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, bytes, cap);
                ctx.queue.write_buffer(
                    xb.buffer(),
                    0,
                    bytemuck::cast_slice(&xs[r0 * cols..(r0 + n) * cols]),
                );
                let coef = &fi.coef[r0..r0 + n];
                let ib = ctx.pool.acquire(
                    dev,
                    U::STORAGE | U::COPY_DST,
                    std::mem::size_of_val(coef) as u64,
                    cap,
                );
                ctx.queue
                    .write_buffer(ib.buffer(), 0, bytemuck::cast_slice(coef));
                let ob = ctx
                    .pool
                    .acquire(dev, U::STORAGE, (n * ROW_STATS_BYTES) as u64, cap);
                let mut bufs = vec![xb, ib, ob];
                if o.gradient {
                    bufs.push(ctx.pool.acquire(dev, U::STORAGE, bytes, cap));
                }
                chunks.push(Chunk { rows: n, bufs });
            }
        }
    }
    scopes.pop()?;

    let record_all = |enc: &mut wgpu::CommandEncoder| -> Result<Vec<PooledBuffer>> {
        let mut keep = Vec::new();
        for c in &chunks {
            let (xb, yb) = (c.bufs[0].buffer(), c.bufs[1].buffer());
            match job {
                KernelJob::Row(op, t) => keep.extend(record_rows(
                    ctx,
                    enc,
                    *op,
                    *t,
                    Slice::at0(xb, (c.rows * cols * 4) as u64),
                    cols,
                    Slice::at0(
                        yb,
                        (if *op == RowOp::LogSumExp {
                            c.rows
                        } else {
                            c.rows * cols
                        } * 4) as u64,
                    ),
                    c.rows,
                    cols,
                )?),
                KernelJob::CrossEntropy(..) => {
                    let b = CeBufs {
                        x: Slice::at0(xb, (c.rows * cols * 4) as u64),
                        x_stride: cols,
                        row_in: yb,
                        row_out: c.bufs[2].buffer(),
                        grad: c
                            .bufs
                            .get(3)
                            .map(|g| Slice::at0(g.buffer(), (c.rows * cols * 4) as u64)),
                        ce_params: shared[0].buffer(),
                        weight: None,
                        probs: None,
                        in_place: false,
                    };
                    keep.extend(record_ce(ctx, enc, &b, c.rows, cols, ce_flags)?);
                }
                KernelJob::Copy | KernelJob::ExpMap => {
                    let entry = if matches!(job, KernelJob::Copy) {
                        "copy"
                    } else {
                        "exp_map"
                    };
                    let key = ShaderKey {
                        family: Family::Yardstick,
                        vec4: true,
                        row_threads: 1,
                        log_output: false,
                        prob_targets: false,
                        ce_bits: 0,
                        exp_form: ExpForm::Unit,
                    };
                    let bytes = (c.rows * 16) as u64;
                    let params = Params::new(c.rows, 4, 1, 1, 1.0);
                    let b = vec![
                        (1, binding(xb, bytes)),
                        (2, binding(yb, bytes)),
                        (3, ctx.dummy.as_entire_binding()),
                    ];
                    keep.push(record_pass(
                        ctx,
                        enc,
                        key,
                        entry,
                        c.rows.div_ceil(WG),
                        params,
                        b,
                    )?);
                }
            }
        }
        Ok(keep)
    };

    let ts = ctx.features.contains(
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
    );
    let query = ts.then(|| {
        let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("smoothmax/timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = ctx
            .pool
            .acquire(dev, U::QUERY_RESOLVE | U::COPY_SRC, 16, cap);
        let staging = ctx.pool.acquire(dev, U::MAP_READ | U::COPY_DST, 16, cap);
        (qs, resolve, staging)
    });
    let period_ns = ctx.queue.get_timestamp_period() as f64;
    let mut seconds = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let scopes = Scopes::push(dev);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("smoothmax/timing"),
        });
        if let Some((qs, _, _)) = &query {
            enc.write_timestamp(qs, 0);
        }
        let _keep = record_all(&mut enc)?;
        if let Some((qs, resolve, staging)) = &query {
            enc.write_timestamp(qs, 1);
            enc.resolve_query_set(qs, 0..2, resolve.buffer(), 0);
            enc.copy_buffer_to_buffer(resolve.buffer(), 0, staging.buffer(), 0, 16);
        }
        let cmd = enc.finish();
        let t0 = Instant::now();
        ctx.queue.submit([cmd]);
        dev.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Readback(e.to_string()))?;
        let wall = t0.elapsed().as_secs_f64();
        scopes.pop()?;
        let dt = match &query {
            Some((_, _, staging)) => {
                let mut raw = [0.0f32; 4];
                read_f32(ctx, staging.buffer(), &mut raw)?;
                let t: [u64; 2] = bytemuck::cast(raw);
                t[1].saturating_sub(t[0]) as f64 * period_ns * 1e-9
            }
            None => wall,
        };
        if i >= warmup {
            seconds.push(dt);
        }
    }
    ctx.check_uncaptured()?;
    Ok(KernelTimes {
        seconds,
        timestamps: query.is_some(),
    })
}
