//! Kernel timing on device-resident data, for `smoothmax bench` and the criterion benches:
//! the input is uploaded once, then each timed run records the op over every chunk (the one
//! launch path, into one command buffer) and measures it with timestamp queries (where the
//! adapter has TIMESTAMP_QUERY and TIMESTAMP_QUERY_INSIDE_ENCODERS), else with the wall clock
//! around submit + wait. The clock therefore covers device work only, never upload or
//! readback.

use super::ce::{CeJob, ROW_STATS_BYTES};
use super::context::Context;
use super::kernel::Entry;
use super::launch::{launch, Extent, Input, Layout, Mode, Output, Sink, Source};
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::read_f32;
use super::rows::RowsJob;
use super::scopes::Scopes;
use super::yardstick::Yardstick;
use super::Gpu;
use crate::cross_entropy::fast::{fast_inputs, FastInputs};
use crate::cross_entropy::{prepare, CrossEntropyOptions, Targets};
use crate::element::{with_dtype, Element, MatrixView};
use crate::error::{Error, Result};
use crate::rows::RowOp;
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
    /// Yardstick: each row's sum (read `B·C`, write `B`), the floor of the ops that only
    /// read their rows.
    RowSum,
    /// A surrogate call: its score matrices (not `kernel_times`' `x`) uploaded once, each
    /// run recorded with every output on the device (its host labels, targets and weights
    /// uploaded by the recorded call, as a device-resident call does).
    Surrogate(crate::surrogates::Surrogate<'a, MatrixView<'a>>),
}

/// Device times of the timed runs.
#[derive(Clone, Debug)]
pub struct KernelTimes {
    /// Seconds per run.
    pub seconds: Vec<f64>,
    /// Whether they come from timestamp queries (else from the wall clock).
    pub timestamps: bool,
}

/// One timed op: its job and what it binds.
enum Timed {
    Rows(RowsJob),
    /// The job, its per-row inputs, whether it writes the gradient.
    CrossEntropy(Box<(CeJob, FastInputs, bool)>),
    Yardstick(Yardstick),
}

impl Gpu {
    /// Times `job` on device-resident data: uploads `x` once (in its element type; outputs
    /// are written in the same type), runs `warmup` untimed and `runs` timed repetitions,
    /// each measured with timestamp queries where the adapter has them (else the wall clock
    /// around submit + wait). For benchmarks; results are discarded.
    pub fn kernel_times(
        &self,
        job: &KernelJob,
        x: MatrixView<'_>,
        warmup: usize,
        runs: usize,
    ) -> Result<KernelTimes> {
        with_dtype!(MatrixView, x, |a: E| self
            .kernel_times_of::<E>(job, a, warmup, runs))
    }

    /// [`KernelJob::Surrogate`].
    fn surrogate_times(
        &self,
        call: &crate::surrogates::Surrogate<'_, MatrixView<'_>>,
        warmup: usize,
        runs: usize,
    ) -> Result<KernelTimes> {
        let mut mats = Vec::new();
        let mut failed = Ok(());
        let _ = call.map(|m| {
            if failed.is_ok() {
                match with_dtype!(MatrixView, m.clone(), |a: E| self.upload(a)) {
                    Ok(g) => mats.push(g),
                    Err(e) => failed = Err(e),
                }
            }
        });
        failed?;
        let mut k = 0;
        let on_device = call.map(|_| {
            k += 1;
            &mats[k - 1]
        });
        self.timed_runs(warmup, runs, &mut |enc| {
            let rec = self.call(on_device.clone()).on_device().record(enc)?;
            Ok(Box::new(move || rec.finish().map(drop)))
        })
    }

    fn kernel_times_of<E: Element>(
        &self,
        job: &KernelJob,
        x: ArrayView2<E>,
        warmup: usize,
        runs: usize,
    ) -> Result<KernelTimes> {
        let ctx = &*self.ctx;
        ctx.check_alive()?;
        let (rows, cols) = x.dim();
        let dtype = E::DTYPE;
        let (timed, m) = match job {
            KernelJob::Surrogate(call) => return self.surrogate_times(call, warmup, runs),
            KernelJob::Copy | KernelJob::ExpMap => {
                // The input as one flat vector of vec4s (zero-padded to a whole one).
                let mut flat: Vec<E> = x.iter().copied().collect();
                flat.resize(flat.len().div_ceil(4) * 4, E::default());
                let n4 = flat.len() / 4;
                let m = self.upload(
                    ArrayView2::from_shape((n4, 4), &flat)
                        .map_err(|e| Error::InvalidInput(e.to_string()))?,
                )?;
                let entry = if matches!(job, KernelJob::Copy) {
                    Entry::Copy
                } else {
                    Entry::ExpMap
                };
                (Timed::Yardstick(Yardstick::elementwise(entry, dtype)), m)
            }
            KernelJob::RowSum => {
                // Rows zero-padded to whole groups of four (sums unchanged) where they are not.
                let c4 = cols.div_ceil(4) * 4;
                let m = if c4 == cols {
                    self.upload(x)?
                } else {
                    let mut padded = ndarray::Array2::<E>::default((rows, c4));
                    padded.slice_mut(ndarray::s![.., ..cols]).assign(&x);
                    self.upload(padded.view())?
                };
                let job = Yardstick::row_sum(dtype, rows, c4, ctx.policy());
                (Timed::Yardstick(job), m)
            }
            KernelJob::Row(op, t) => (
                Timed::Rows(RowsJob {
                    op: *op,
                    temperature: *t,
                    cols,
                    x_dtype: dtype,
                    y_dtype: dtype,
                }),
                self.upload(x)?,
            ),
            KernelJob::CrossEntropy(y, o) => {
                let p = prepare((rows, cols), &Targets::classes(*y), o)?;
                let fi = fast_inputs(&p, o, true);
                let job = CeJob::new(ctx, &p, &fi, o, false, (dtype, dtype))?;
                (
                    Timed::CrossEntropy(Box::new((job, fi, o.gradient))),
                    self.upload(x)?,
                )
            }
        };
        let (mrows, mcols) = m.dim();
        self.timed_runs(warmup, runs, &mut |enc| {
            let keep = record_timed(ctx, &timed, &m, mrows, mcols, enc)?;
            Ok(Box::new(move || {
                drop(keep);
                Ok(())
            }))
        })
    }

    /// Runs `warmup` untimed and `runs` timed submissions of what `record` puts into an
    /// encoder, each measured with timestamp queries around it where the adapter has them,
    /// else by the wall clock around submit + wait; what `record` returns is called once the
    /// work is done (releasing scratch, finishing a recorded call), outside the clock.
    fn timed_runs(
        &self,
        warmup: usize,
        runs: usize,
        record: &mut Recorder<'_>,
    ) -> Result<KernelTimes> {
        let ctx = &*self.ctx;
        let ts = ctx.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        );
        let dev = &ctx.device;
        let query = ts.then(|| {
            let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("smoothmax/timing"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let cap = ctx.max_binding();
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
            let done = record(&mut enc)?;
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
            done()?;
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
}

/// Records one timed run into an encoder; returns what to do once it has run.
type Recorder<'a> =
    dyn FnMut(&mut wgpu::CommandEncoder) -> Result<Box<dyn FnOnce() -> Result<()> + 'a>> + 'a;

/// Records one run of `timed` over the device matrix `m` into `enc`, through the launch
/// path; outputs go to scratch.
fn record_timed(
    ctx: &Context,
    timed: &Timed,
    m: &GpuMatrix,
    rows: usize,
    cols: usize,
    enc: &mut wgpu::CommandEncoder,
) -> Result<Vec<PooledBuffer>> {
    let x = || Source::Device(m);
    let elem = m.elem();
    let scratch = |elems: usize, elem: usize| Sink::Scratch(Extent::PerRow(elems * elem), elem);
    let fut = async {
        match timed {
            Timed::Rows(job) => {
                job.run(
                    ctx,
                    rows,
                    x(),
                    if job.op == RowOp::LogSumExp {
                        scratch(1, 4)
                    } else {
                        scratch(cols, elem)
                    },
                    Mode::Record(enc),
                )
                .await
            }
            Timed::CrossEntropy(ce) => {
                let (job, fi, gradient) = &**ce;
                let grad = gradient.then(|| scratch(cols, elem));
                job.run(
                    ctx,
                    rows,
                    fi,
                    x(),
                    scratch(ROW_STATS_BYTES / 4, 4),
                    grad,
                    Mode::Record(enc),
                )
                .await
            }
            Timed::Yardstick(job) => {
                let inputs = [Input {
                    source: x(),
                    layout: Layout::Based,
                }];
                let mut outputs = [Output {
                    sink: scratch(job.out_per_row(), elem),
                    layout: Layout::Based,
                }];
                launch(
                    ctx,
                    job,
                    rows,
                    cols,
                    &inputs,
                    &mut outputs,
                    Mode::Record(enc),
                )
                .await
            }
        }
    };
    // Recording never waits on the device: the future completes at its first poll.
    pollster::block_on(fut)
}
