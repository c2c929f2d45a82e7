//! Adapter selection and the device: one `Context` owns device, queue, pipeline cache and
//! buffer pool.

use super::pipelines::PipelineCache;
use super::pool::BufferPool;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// What smoothmax knows about an adapter: for `smoothmax info` and for reports.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Backend: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU.
    pub device_type: String,
    /// Driver name and version string.
    pub driver: String,
    /// The limits smoothmax depends on, as `(name, value)` pairs.
    pub limits: Vec<(&'static str, u64)>,
    /// Optional features the adapter has, space-separated wgpu flag names.
    pub features: String,
}

impl AdapterSummary {
    /// What an application-provided device is known as (it has no `wgpu::Adapter` to ask).
    pub(crate) fn external(info: Option<wgpu::AdapterInfo>, limits: &wgpu::Limits) -> Self {
        let (name, backend, device_type, driver) = match info {
            Some(i) => (
                i.name,
                format!("{:?}", i.backend),
                format!("{:?}", i.device_type),
                format!("{} {}", i.driver, i.driver_info).trim().to_string(),
            ),
            None => (
                "application device".into(),
                "unknown".into(),
                "unknown".into(),
                String::new(),
            ),
        };
        AdapterSummary {
            name,
            backend,
            device_type,
            driver,
            limits: vec![
                (
                    "max_storage_buffer_binding_size",
                    limits.max_storage_buffer_binding_size,
                ),
                ("max_buffer_size", limits.max_buffer_size),
            ],
            features: String::new(),
        }
    }

    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let l = adapter.limits();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            limits: vec![
                (
                    "max_storage_buffer_binding_size",
                    l.max_storage_buffer_binding_size,
                ),
                ("max_buffer_size", l.max_buffer_size),
                (
                    "max_compute_workgroups_per_dimension",
                    l.max_compute_workgroups_per_dimension as u64,
                ),
                (
                    "max_compute_invocations_per_workgroup",
                    l.max_compute_invocations_per_workgroup as u64,
                ),
                (
                    "max_compute_workgroup_storage_size",
                    l.max_compute_workgroup_storage_size as u64,
                ),
                (
                    "max_storage_buffers_per_shader_stage",
                    l.max_storage_buffers_per_shader_stage as u64,
                ),
            ],
            features: {
                let f = adapter.features();
                let names: Vec<&str> = f
                    .features_webgpu
                    .iter_names()
                    .map(|(n, _)| n)
                    .chain(f.features_wgpu.iter_names().map(|(n, _)| n))
                    .collect();
                names.join(" ")
            },
        }
    }
}

fn instance() -> wgpu::Instance {
    // Honors WGPU_BACKEND (and the other WGPU_* instance variables). Without it, only the
    // primary backends (Vulkan, Metal, DX12): the GL backend offers nothing extra for compute,
    // and probing EGL prints driver noise on headless machines.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::PRIMARY;
    }
    #[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
    if desc.backends == wgpu::Backends::VULKAN || desc.backends == wgpu::Backends::PRIMARY {
        if let Some(inst) = headless_vulkan(&desc) {
            return inst;
        }
    }
    wgpu::Instance::new(desc)
}

/// A Vulkan instance without the window-system surface extensions (Xlib, XCB, Wayland).
///
/// smoothmax only computes, never presents. Mesa's device-select layer (an implicit layer
/// every Mesa install enables) connects to the Wayland display when the instance enables
/// `VK_KHR_wayland_surface`, and Mesa 22's version does so even when no display exists, so
/// libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice
/// on every headless machine (CI, servers, containers: where lavapipe is used). Without the
/// surface extensions the layer does not probe. On Linux PRIMARY is Vulkan alone, so this
/// instance offers the same adapters. `None` when the Vulkan loader cannot be initialized
/// (wgpu then reports it the usual way).
#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
fn headless_vulkan(desc: &wgpu::InstanceDescriptor) -> Option<wgpu::Instance> {
    use wgpu::hal::{self, api::Vulkan, vulkan};
    let hal_desc = hal::InstanceDescriptor {
        name: "smoothmax",
        flags: desc.flags,
        memory_budget_thresholds: desc.memory_budget_thresholds,
        backend_options: desc.backend_options.clone(),
        telemetry: None,
        display: None,
    };
    let drop_wsi = Box::new(|args: vulkan::CreateInstanceCallbackArgs| {
        let wsi: [&std::ffi::CStr; 3] = [
            c"VK_KHR_xlib_surface",
            c"VK_KHR_xcb_surface",
            c"VK_KHR_wayland_surface",
        ];
        args.extensions.retain(|e| !wsi.contains(e));
    });
    // SAFETY: wgpu-hal asks callbacks not to remove extensions because it would otherwise
    // assume a surface extension it found is enabled; it only consults these three when
    // creating a surface from a window handle (and then checks the enabled list and returns
    // an error), and smoothmax creates no surfaces. The instance is handed to wgpu whole.
    let raw = unsafe { vulkan::Instance::init_with_callback(&hal_desc, Some(drop_wsi)) }.ok()?;
    // SAFETY: `raw` is a valid Vulkan instance just created by wgpu-hal itself.
    Some(unsafe { wgpu::Instance::from_hal::<Vulkan>(raw) })
}

/// Every adapter wgpu finds (after `WGPU_BACKEND` filtering).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(AdapterSummary::of)
        .collect()
}

/// Picks an adapter: the first whose name contains `WGPU_ADAPTER_NAME` (case-insensitive)
/// when that is set, else wgpu's choice for high performance.
async fn select_adapter(inst: &wgpu::Instance) -> Result<wgpu::Adapter> {
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let adapters = inst.enumerate_adapters(wgpu::Backends::all()).await;
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let lower = wanted.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&lower))
            .ok_or_else(|| Error::NoAdapter {
                detail: format!(" matching WGPU_ADAPTER_NAME={wanted:?} (found: {names:?})"),
            });
    }
    let power_preference =
        wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance);
    inst.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference,
        force_fallback_adapter: false,
        compatible_surface: None,
        // Bucketing would round limits down to common tiers; smoothmax wants the real ones.
        apply_limit_buckets: false,
    })
    .await
    .map_err(|e| Error::NoAdapter {
        detail: format!(" ({e})"),
    })
}

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
    /// How rows are cut on this device (see `gpu::plan::Policy`).
    pub policy: super::plan::Policy,
}

/// The kernel layout `SMOOTHMAX_GPU_POLICY` asks for (`gpu` or `cpu`), else the one the
/// adapter's type calls for (a CPU adapter like lavapipe gets `cpu`); an error for any other
/// value, so that a mistyped override cannot silently test the other layout.
fn policy_from_env(device_type: &str) -> Result<super::plan::Policy> {
    use super::plan::Policy;
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
    /// Opens the adapter chosen by [`select_adapter`] with its own (not WebGPU-default) limits.
    pub async fn new() -> Result<Self> {
        let inst = instance();
        let adapter = select_adapter(&inst).await?;
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

    /// How rows are cut on this adapter (see `gpu::plan::Policy`); `SMOOTHMAX_GPU_POLICY`
    /// (`gpu` or `cpu`) overrides it, so tests can run both layouts on one adapter.
    pub fn policy(&self) -> super::plan::Policy {
        self.policy
    }

    /// Largest byte size one storage binding may cover on this device.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}
