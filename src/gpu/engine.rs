//! The GPU engine: [`Gpu`] owns the device (its own or an application's), and every op runs
//! through [`Gpu::call`].

use super::adapter::{AdapterSummary, GpuOptions};
use super::context::Context;
use super::split;
use crate::error::Result;
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
/// (and every [`GpuMatrix`](crate::GpuMatrix) of it) and create a new one on a new device.
///
/// Adapter choice: [`GpuOptions`] from code ([`Gpu::with_options`]), or `WGPU_BACKEND` (e.g.
/// `vulkan`), `WGPU_POWER_PREF` and `WGPU_ADAPTER_NAME` (a case-insensitive substring of the
/// adapter name) for what the options leave unset. The device is opened with the adapter's own
/// limits, not WebGPU's defaults. Every op runs through [`Gpu::call`], with host or device
/// inputs and outputs, blocking, async or recorded into an application's encoder.
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
    pub(crate) ctx: Arc<Context>,
}

/// Counters of wgpu objects the engine has created, to check that repeated calls reuse them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GpuCounters {
    /// Buffers created by the pool.
    pub buffers_created: u64,
    /// Compute pipelines compiled.
    pub pipelines_created: u64,
    /// The largest buffer the engine has created, in bytes (pooled buffers, and the device
    /// matrices it makes for uploads and device-resident results).
    pub largest_buffer_bytes: u64,
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

    /// The device the engine runs on (its own, or the application's): for encoders that
    /// [`Call::record`](crate::gpu::Call::record) records into, and buffers for
    /// [`crate::GpuMatrix::from_buffer`].
    pub fn device(&self) -> &wgpu::Device {
        &self.ctx.device
    }

    /// The engine's queue: submit recorded encoders here.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.ctx.queue
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
            split::Policy::Gpu => "gpu",
            split::Policy::Cpu => "cpu",
        }
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
            largest_buffer_bytes: self.ctx.pool.largest(),
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
