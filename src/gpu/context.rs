//! The device: one `Context` owns device, queue, pipeline cache and buffer pool.

use super::adapter::{select_adapter, AdapterSummary, GpuOptions};
use super::pipelines::PipelineCache;
use super::pool::BufferPool;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Device, queue and the caches that belong to them.
pub(crate) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub pipelines: PipelineCache,
    pub pool: Arc<BufferPool>,
    /// Set by the device-lost callback; checked before every call.
    pub lost: Arc<Mutex<Option<String>>>,
    /// Errors raised outside any error scope (there should be none: every call scopes its
    /// work). Recorded instead of wgpu's default handler, which panics.
    pub uncaptured: Arc<Mutex<Vec<String>>>,
    /// Tiny storage buffers bound where a kernel declares a binding it does not use: one for
    /// read-write slots, one for read-only slots (one buffer cannot be both in a dispatch).
    pub dummy: wgpu::Buffer,
    pub dummy_ro: wgpu::Buffer,
    /// How rows are cut on this device (see `gpu::split::Policy`).
    pub policy: super::split::Policy,
}

/// The kernel layout `SMOOTHMAX_GPU_POLICY` asks for (`gpu` or `cpu`), else the one the
/// adapter's type calls for (a CPU adapter like lavapipe gets `cpu`); an error for any other
/// value, so that a mistyped override cannot silently test the other layout.
fn policy_from_env(device_type: &str) -> Result<super::split::Policy> {
    use super::split::Policy;
    let by_adapter = if device_type == "Cpu" {
        Policy::Cpu
    } else {
        Policy::Gpu
    };
    crate::env::choice(
        "SMOOTHMAX_GPU_POLICY",
        &[("gpu", Policy::Gpu), ("cpu", Policy::Cpu)],
        by_adapter,
    )
}

impl Context {
    /// Opens the adapter [`GpuOptions`] picks with its own (not WebGPU-default) limits.
    pub async fn new(opts: &GpuOptions) -> Result<Self> {
        let adapter = select_adapter(opts).await?;
        let summary = AdapterSummary::of(&adapter);
        // Timestamps (for kernel-time benchmarks) where the adapter has them; nothing else needed.
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("smoothmax"),
                required_features: adapter.features() & wanted,
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        Self::from_parts(device, queue, summary, true)
    }

    /// Wraps an application's device and queue after checking the limits the kernels need.
    /// The application keeps its own uncaptured-error and device-lost handlers: smoothmax
    /// scopes its own work and does not install any.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: AdapterSummary,
    ) -> Result<Self> {
        let l = device.limits();
        let needs: [(&'static str, u64, u64); 7] = [
            (
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup as u64,
                256,
            ),
            (
                "max_compute_workgroup_size_x",
                l.max_compute_workgroup_size_x as u64,
                256,
            ),
            (
                "max_storage_buffers_per_shader_stage",
                l.max_storage_buffers_per_shader_stage as u64,
                7,
            ),
            (
                "max_uniform_buffers_per_shader_stage",
                l.max_uniform_buffers_per_shader_stage as u64,
                2,
            ),
            (
                "max_bindings_per_bind_group",
                l.max_bindings_per_bind_group as u64,
                9,
            ),
            // Eight 256-entry 4-byte arrays (the cross-entropy tree merge).
            (
                "max_compute_workgroup_storage_size",
                l.max_compute_workgroup_storage_size as u64,
                8192,
            ),
            (
                "max_compute_workgroups_per_dimension",
                l.max_compute_workgroups_per_dimension as u64,
                1,
            ),
        ];
        for (what, have, need) in needs {
            if have < need {
                return Err(Error::Unsupported { what, have, need });
            }
        }
        Self::from_parts(device, queue, adapter, false)
    }

    fn from_parts(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: AdapterSummary,
        own_handlers: bool,
    ) -> Result<Self> {
        // The environment first: a bad override is an error before any device state exists.
        let policy = policy_from_env(&adapter.device_type)?;
        let pool = Arc::new(BufferPool::from_env()?);
        let lost = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        if own_handlers {
            let lost_cb = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut l) = lost_cb.lock() {
                    *l = Some(format!("{reason:?}: {msg}"));
                }
            });
            let unc = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut u) = unc.lock() {
                    u.push(e.to_string());
                }
            }));
        }
        let limits = device.limits();
        let features = device.features();
        let make_dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let dummy = make_dummy("smoothmax/dummy");
        let dummy_ro = make_dummy("smoothmax/dummy-read-only");
        let pipelines = PipelineCache::new(&device);
        Ok(Context {
            device,
            queue,
            adapter,
            limits,
            features,
            pipelines,
            pool,
            lost,
            uncaptured,
            dummy,
            dummy_ro,
            policy,
        })
    }

    /// Fails with [`Error::DeviceLost`] once the device-lost callback has fired.
    pub fn check_alive(&self) -> Result<()> {
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(msg) => Err(Error::DeviceLost(msg)),
            None => Ok(()),
        }
    }

    /// Fails with [`Error::Validation`] if wgpu reported an error outside any scope since the
    /// last check (and clears the record).
    pub fn check_uncaptured(&self) -> Result<()> {
        let errs: Vec<String> = self
            .uncaptured
            .lock()
            .map(|mut u| u.drain(..).collect())
            .unwrap_or_default();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(errs.join("; ")))
        }
    }

    /// How rows are cut on this adapter (see `gpu::split::Policy`); `SMOOTHMAX_GPU_POLICY`
    /// (`gpu` or `cpu`) overrides it, so tests can run both layouts on one adapter.
    pub fn policy(&self) -> super::split::Policy {
        self.policy
    }

    /// A pooled buffer of `usage` holding `data`: per-call uniforms and short vectors (class
    /// weights), queued with `write_buffer` (they reach the device before the next
    /// submission). Error-scoped: a refused allocation or write is an error, not a call of the
    /// device's default handler.
    pub fn upload_small(
        &self,
        usage: wgpu::BufferUsages,
        data: &[u8],
    ) -> Result<super::pool::PooledBuffer> {
        let scopes = super::scopes::Scopes::push(&self.device);
        let mut b = self.pool.acquire(
            &self.device,
            usage | wgpu::BufferUsages::COPY_DST,
            (data.len() as u64).max(4),
            self.max_binding(),
        );
        if !data.is_empty() {
            self.queue.write_buffer(b.buffer(), 0, data);
        }
        match scopes.pop() {
            Ok(()) => Ok(b),
            Err(e) => {
                b.discard();
                Err(e)
            }
        }
    }

    /// Largest byte size one storage binding may cover on this device.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}
