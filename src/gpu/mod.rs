//! The GPU backend (wgpu): context, shader registry, pipeline cache, buffer pool, dispatcher.
//!
//! Any shape works: rows are chunked so each chunk fits one storage binding (lavapipe allows
//! 128 MiB), long rows with few of them are split over several workgroups and merged, short
//! rows share a workgroup, and grids larger than 65535 workgroups are folded into 2-D.

mod adapter;
mod ce;
mod context;
mod encode;
mod matrix;
mod pipelines;
mod plan;
mod pool;
mod readback;
mod rows;
mod shaders;
mod surrogates;
mod timing;

pub use adapter::{list_adapters, AdapterSummary, GpuOptions};
pub use matrix::{DeviceCrossEntropy, GpuMatrix, Recorded, RecordedCrossEntropy};
pub use timing::{KernelJob, KernelTimes};

use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::Result;
use crate::ops::{Backend, RowOp, RowOutput};
use context::Context;
use ndarray::ArrayView2;
use readback::Wait;
use std::sync::Arc;

/// The GPU backend. Cheap to clone (the device and caches are shared); `Send + Sync`, so
/// any number of threads may call it at once.
///
/// # Faults
///
/// Every call returns its own failure and leaves the engine usable: bad input is
/// [`crate::Error::InvalidInput`] (checked before any GPU work), a wgpu validation error is
/// [`crate::Error::Validation`] (caught by error scopes, never wgpu's panicking default handler),
/// an allocation the device refuses is [`crate::Error::OutOfMemory`]. Buffers of a failed call
/// are not returned to the pool, and no path leaves a buffer mapped. A lost device (driver
/// reset, GPU removed, `destroy()`) makes every later call fail: with an engine-created device
/// the error is [`crate::Error::DeviceLost`]; on an application's device (see
/// [`Gpu::from_device`]), where the engine installs no device-lost handler, it shows as the
/// failing call's [`crate::Error::Readback`] or validation error. Either way: drop this engine
/// (and every [`GpuMatrix`] of it) and create a new one on a new device.
///
/// Adapter choice honors `WGPU_BACKEND` (e.g. `vulkan`) and `WGPU_ADAPTER_NAME` (a
/// case-insensitive substring of the adapter name). The device is opened with the adapter's
/// own limits, not WebGPU's defaults.
///
/// ```no_run
/// use smoothmax::{Backend, Gpu};
/// let gpu = Gpu::new()?; // Err(Error::NoAdapter { .. }) on a machine without one
/// let x = ndarray::Array2::<f32>::zeros((4096, 32000));
/// let p = gpu.softmax(x.view(), 1.0)?;
/// assert_eq!(p.dim(), (4096, 32000));
/// # Ok::<(), smoothmax::Error>(())
/// ```
#[derive(Clone)]
pub struct Gpu {
    ctx: Arc<Context>,
}

/// Counters of wgpu objects the engine has created, to check that repeated calls reuse them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GpuCounters {
    /// Buffers created by the pool.
    pub buffers_created: u64,
    /// Compute pipelines compiled.
    pub pipelines_created: u64,
}

impl Gpu {
    /// Opens the default adapter (see the type docs), blocking.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Opens the default adapter (see the type docs).
    pub async fn new_async() -> Result<Self> {
        Self::with_options_async(&GpuOptions::default()).await
    }

    /// Opens the adapter `options` pick (backends, power preference, name; each unset field
    /// falls back to its environment variable), blocking.
    pub fn with_options(options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// [`Gpu::with_options`], async.
    pub async fn with_options_async(options: &GpuOptions) -> Result<Self> {
        Ok(Gpu {
            ctx: Arc::new(Context::new(options).await?),
        })
    }

    /// [`Backend::row_op`], async: the readback is awaited through `map_async` and a
    /// channel while a helper thread waits on the device, so an executor thread (tokio,
    /// async-std, ...) is never blocked and nothing busy-loops. The blocking methods are thin
    /// wrappers over the same code.
    ///
    /// ```
    /// # let Ok(gpu) = smoothmax::Gpu::new() else { return };
    /// let x = ndarray::array![[1.0f32, 2.0, 3.0]];
    /// let lse = pollster::block_on(gpu.logsumexp_async(x.view(), 1.0)).unwrap();
    /// assert!((lse[0] - 3.407_606).abs() < 1e-5);
    /// ```
    pub async fn row_op_async(
        &self,
        op: RowOp,
        x: ArrayView2<'_, f32>,
        temperature: f32,
    ) -> Result<RowOutput> {
        rows::row_op(&self.ctx, op, x, temperature, Wait::Thread).await
    }

    /// [`Backend::surrogate`], async: the readbacks are awaited without blocking the
    /// executor thread (see [`Gpu::row_op_async`]).
    pub async fn surrogate_async(
        &self,
        call: &crate::Surrogate<'_>,
    ) -> Result<crate::SurrogateOutput> {
        surrogates::surrogate(&self.ctx, call, Wait::Thread).await
    }

    /// [`Backend::logsumexp`], async (see [`Gpu::row_op_async`]).
    pub async fn logsumexp_async(
        &self,
        x: ArrayView2<'_, f32>,
        temperature: f32,
    ) -> Result<ndarray::Array1<f32>> {
        match self.row_op_async(RowOp::LogSumExp, x, temperature).await? {
            RowOutput::PerRow(v) => Ok(v),
            RowOutput::Matrix(_) => unreachable!("logsumexp returns one value per row"),
        }
    }

    /// [`Backend::softmax`], async (see [`Gpu::row_op_async`]).
    pub async fn softmax_async(
        &self,
        x: ArrayView2<'_, f32>,
        temperature: f32,
    ) -> Result<ndarray::Array2<f32>> {
        match self.row_op_async(RowOp::Softmax, x, temperature).await? {
            RowOutput::Matrix(m) => Ok(m),
            RowOutput::PerRow(_) => unreachable!("softmax returns a matrix"),
        }
    }

    /// [`Backend::log_softmax`], async (see [`Gpu::row_op_async`]).
    pub async fn log_softmax_async(
        &self,
        x: ArrayView2<'_, f32>,
        temperature: f32,
    ) -> Result<ndarray::Array2<f32>> {
        match self.row_op_async(RowOp::LogSoftmax, x, temperature).await? {
            RowOutput::Matrix(m) => Ok(m),
            RowOutput::PerRow(_) => unreachable!("log_softmax returns a matrix"),
        }
    }

    /// [`Backend::cross_entropy`], async (see [`Gpu::row_op_async`]).
    pub async fn cross_entropy_async(
        &self,
        logits: ArrayView2<'_, f32>,
        targets: Targets<'_>,
        options: &CrossEntropyOptions<'_>,
    ) -> Result<CrossEntropyOutput> {
        ce::cross_entropy(&self.ctx, logits, &targets, options, Wait::Thread).await
    }

    /// Runs on an application's own device and queue (wgpu handles are shared, the
    /// application keeps using them). Fails with [`crate::Error::Unsupported`] naming the first
    /// limit that is too low. `info` (from the application's `wgpu::Adapter::get_info`) is only
    /// used for reports; with `None` the adapter type is unknown and long rows are split as for
    /// a discrete GPU.
    ///
    /// The engine installs no uncaptured-error or device-lost handler on a device it did not
    /// create: its own work is error-scoped, and device loss shows up as errors from its calls.
    ///
    /// ```
    /// # let Ok(probe) = smoothmax::Gpu::new() else { return Ok(()) };
    /// let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    /// let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    /// let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
    ///     required_limits: adapter.limits(),
    ///     ..Default::default()
    /// })).unwrap();
    /// let gpu = smoothmax::Gpu::from_device(device.clone(), queue.clone(), Some(adapter.get_info()))?;
    /// use smoothmax::Backend;
    /// let p = gpu.softmax(ndarray::array![[0.0f32, 1.0]].view(), 1.0)?;
    /// assert!((p[[0, 1]] - 0.731_058_6).abs() < 1e-6);
    /// # drop(probe);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: Option<wgpu::AdapterInfo>,
    ) -> Result<Self> {
        let summary = AdapterSummary::external(info, &device.limits());
        Ok(Gpu {
            ctx: Arc::new(Context::from_device(device, queue, summary)?),
        })
    }

    /// Bounds the bytes of idle buffers the engine keeps for reuse (default 1 GiB), evicting
    /// the least recently used ones down to it now and whenever it is exceeded.
    pub fn set_pool_limit(&self, bytes: u64) {
        self.ctx.pool.set_limit(bytes);
    }

    /// Bytes held by idle pooled buffers now.
    pub fn pool_idle_bytes(&self) -> u64 {
        self.ctx.pool.idle_bytes()
    }

    /// The adapter this engine runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.ctx.adapter
    }

    /// The kernel layout this engine uses: `"gpu"` (many invocations per row, fused passes)
    /// or `"cpu"` (long serial loops, for CPU adapters such as lavapipe), as the adapter type
    /// calls for or `SMOOTHMAX_GPU_POLICY` overrides.
    pub fn kernel_layout(&self) -> &'static str {
        match self.ctx.policy() {
            plan::Policy::Gpu => "gpu",
            plan::Policy::Cpu => "cpu",
        }
    }

    /// Times `job` on device-resident data: uploads `x` once, runs `warmup` untimed and `runs`
    /// timed repetitions, each measured with timestamp queries where the adapter has them
    /// (else the wall clock around submit + wait). For benchmarks; results are discarded.
    pub fn kernel_times(
        &self,
        job: &KernelJob,
        x: ArrayView2<f32>,
        warmup: usize,
        runs: usize,
    ) -> Result<KernelTimes> {
        timing::kernel_times(&self.ctx, job, x, warmup, runs)
    }

    /// The device's submit-and-wait round trip with no work, in seconds (median of `runs`):
    /// the floor under any end-to-end call.
    pub fn round_trip_seconds(&self, runs: usize) -> Result<f64> {
        let mut t = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            let t0 = std::time::Instant::now();
            self.ctx.queue.submit([enc.finish()]);
            self.ctx
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| crate::Error::Readback(e.to_string()))?;
            t.push(t0.elapsed().as_secs_f64());
        }
        t.sort_by(f64::total_cmp);
        Ok(t[t.len() / 2])
    }

    /// How many buffers and pipelines the engine has created so far.
    pub fn counters(&self) -> GpuCounters {
        GpuCounters {
            buffers_created: self.ctx.pool.created(),
            pipelines_created: self.ctx.pipelines.created(),
        }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.ctx.adapter.name)
            .finish()
    }
}

impl Backend for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn surrogate(&self, call: &crate::Surrogate) -> Result<crate::SurrogateOutput> {
        pollster::block_on(surrogates::surrogate(&self.ctx, call, Wait::Inline))
    }

    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput> {
        pollster::block_on(rows::row_op(&self.ctx, op, x, temperature, Wait::Inline))
    }

    fn cross_entropy(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        pollster::block_on(ce::cross_entropy(
            &self.ctx,
            logits,
            &targets,
            options,
            Wait::Inline,
        ))
    }
}
