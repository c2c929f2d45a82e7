//! An application's own wgpu device, buffers on it, and an engine on that device.

use super::gpu;

/// The application's device, shared with smoothmax through `Gpu::from_device`.
pub fn app_device() -> &'static (wgpu::Device, wgpu::Queue) {
    static DEVICE: std::sync::OnceLock<(wgpu::Device, wgpu::Queue)> = std::sync::OnceLock::new();
    DEVICE.get_or_init(|| {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter =
            pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
                .unwrap();
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .unwrap()
    })
}

/// A buffer of the application's, filled with `data`.
pub fn storage_buffer(data: &[f32], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let (device, queue) = app_device();
    let b = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app buffer"),
        size: (data.len() * 4) as u64,
        usage,
        mapped_at_creation: false,
    });
    if usage.contains(wgpu::BufferUsages::COPY_DST) {
        queue.write_buffer(&b, 0, bytemuck::cast_slice(data));
    }
    b
}

pub fn app_gpu() -> Option<smoothmax::Gpu> {
    gpu()?;
    let (d, q) = app_device();
    Some(smoothmax::Gpu::from_device(d.clone(), q.clone(), None).unwrap())
}
