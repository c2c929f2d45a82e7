//! Adapter selection: the instance (headless on Linux), which adapter to open, and what is
//! reported about it.

use crate::error::{Error, Result};

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

    pub(crate) fn of(adapter: &wgpu::Adapter) -> Self {
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

/// An instance over `backends` (else `WGPU_BACKEND`, else the primary backends: Vulkan,
/// Metal, DX12; the GL backend offers nothing extra for compute, and probing EGL prints driver
/// noise on headless machines). The other `WGPU_*` instance variables are honored.
fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    match backends {
        Some(b) => desc.backends = b,
        None if std::env::var_os("WGPU_BACKEND").is_none() => {
            desc.backends = wgpu::Backends::PRIMARY
        }
        None => {}
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
    let inst = instance(None);
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(AdapterSummary::of)
        .collect()
}

/// How [`Gpu::with_options`](super::Gpu::with_options) picks an adapter. Each field left
/// `None` falls back to its environment variable, then to the default, so `GpuOptions::default()`
/// is what [`Gpu::new`](super::Gpu::new) does.
///
/// ```no_run
/// use smoothmax::gpu::GpuOptions;
/// let gpu = smoothmax::Gpu::with_options(&GpuOptions {
///     backends: Some(smoothmax::wgpu::Backends::VULKAN),
///     adapter_name: Some("llvmpipe".into()),
///     ..Default::default()
/// })?;
/// # Ok::<(), smoothmax::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to consider; else `WGPU_BACKEND`, else the primary ones (Vulkan, Metal, DX12).
    pub backends: Option<wgpu::Backends>,
    /// Else `WGPU_POWER_PREF`, else high performance.
    pub power_preference: Option<wgpu::PowerPreference>,
    /// The first adapter whose name contains this (case-insensitive); else
    /// `WGPU_ADAPTER_NAME`; else wgpu's choice for the power preference.
    pub adapter_name: Option<String>,
}

/// Picks an adapter as [`GpuOptions`] says.
pub(crate) async fn select_adapter(opts: &GpuOptions) -> Result<wgpu::Adapter> {
    let inst = instance(opts.backends);
    let wanted = match &opts.adapter_name {
        Some(n) => Some((n.clone(), "adapter_name")),
        None => std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .map(|n| (n, "WGPU_ADAPTER_NAME")),
    };
    if let Some((wanted, source)) = wanted {
        let adapters = inst.enumerate_adapters(wgpu::Backends::all()).await;
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let lower = wanted.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&lower))
            .ok_or_else(|| Error::NoAdapter {
                detail: format!(" matching {source}={wanted:?} (found: {names:?})"),
            });
    }
    let power_preference = opts
        .power_preference
        .or_else(wgpu::PowerPreference::from_env)
        .unwrap_or(wgpu::PowerPreference::HighPerformance);
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
