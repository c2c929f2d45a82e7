//! Choosing the adapter from code (`GpuOptions`), not only from environment variables.

mod common;

use smoothmax::gpu::GpuOptions;
use smoothmax::{Backend, Error, Gpu};

/// A name no adapter has is a `NoAdapter` error naming the option and listing what exists.
#[test]
fn an_unknown_adapter_name_is_an_error_naming_the_option() {
    let opts = GpuOptions {
        adapter_name: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    };
    match Gpu::with_options(&opts) {
        Err(e @ Error::NoAdapter { .. }) => {
            let m = e.to_string();
            assert!(m.contains("adapter_name=\"no-such-adapter-xyz\""), "{m}");
            assert!(m.contains("found:"), "{m}");
        }
        other => panic!("expected NoAdapter, got {other:?}"),
    }
}

/// The adapter the default opens can be opened again by name and by its backend, and it
/// computes.
#[test]
fn the_default_adapter_opens_by_name_and_backend() {
    let Some(g) = common::gpu() else { return };
    let a = g.adapter();
    let backends = match a.backend.as_str() {
        "Vulkan" => smoothmax::wgpu::Backends::VULKAN,
        "Metal" => smoothmax::wgpu::Backends::METAL,
        "Dx12" => smoothmax::wgpu::Backends::DX12,
        other => panic!("unexpected backend {other}"),
    };
    let opts = GpuOptions {
        backends: Some(backends),
        power_preference: Some(smoothmax::wgpu::PowerPreference::LowPower),
        adapter_name: Some(a.name.to_uppercase()),
    };
    let again = Gpu::with_options(&opts).unwrap();
    assert_eq!(again.adapter().name, a.name);
    let x = ndarray::array![[0.0f32, 1.0]];
    let p = again.softmax(x.view(), 1.0).unwrap();
    assert!((p[[0, 1]] - 0.731_058_6).abs() < 1e-6);
}
