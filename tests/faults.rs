//! Faults: a failing call returns an error for that call and leaves the engine usable; a lost
//! device is reported as an error, never a panic.

mod common;

use common::{gpu, logits};
use smoothmax::gpu::{CrossEntropy, Rows};
use smoothmax::{Backend, CrossEntropyOptions, Error, Gpu, GpuMatrix, RowOp, Targets};

fn other_device() -> (wgpu::Adapter, wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (d, q) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    (adapter, d, q)
}

/// A call that must still work after a failure.
fn still_works(g: &Gpu) {
    let x = logits(4, 50, 1.0, 0.0, false, 1);
    let p = g
        .softmax(x.view(), 1.0)
        .expect("the engine is usable after the failed call");
    assert!(p.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-5));
}

#[test]
fn bad_input_fails_that_call_only() {
    let Some(g) = gpu() else { return };
    let x = logits(3, 4, 1.0, 0.0, false, 1);
    let y = ndarray::array![0i64, 9, 1];
    let e = g
        .cross_entropy(
            x.view(),
            Targets::classes(y.view()),
            &CrossEntropyOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidInput(ref m) if m.contains("target[1] = 9")),
        "{e}"
    );
    assert!(g.softmax(x.view(), -1.0).is_err());
    still_works(g);
}

#[test]
fn a_validation_error_is_returned_and_the_engine_stays_usable() {
    let Some(g) = gpu() else { return };
    // A buffer of another device: using it is a wgpu validation error, caught by the engine's
    // error scopes instead of reaching wgpu's default handler (which panics).
    let (_, device, _) = other_device();
    let foreign = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("foreign"),
        size: 4 * 64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let m = GpuMatrix::from_buffer(foreign, 0, 8, 8, 8).unwrap();
    match g
        .call(Rows {
            op: RowOp::Softmax,
            x: &m,
            temperature: 1.0,
        })
        .on_device()
        .run()
    {
        Err(Error::Validation(msg)) => eprintln!(
            "validation error returned: {}",
            msg.lines().next().unwrap_or("")
        ),
        other => panic!("expected a validation error, got {other:?}"),
    }
    still_works(g);
    // The same through the recording API, into an encoder of the engine's own device.
    let y = ndarray::array![0i64, 1, 2, 3, 4, 5, 6, 7];
    assert!(g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: CrossEntropyOptions::default()
        })
        .on_device()
        .run()
        .is_err());
    still_works(g);
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    if gpu().is_none() {
        return;
    }
    let (adapter, device, queue) = other_device();
    let g = Gpu::from_device(device.clone(), queue, Some(adapter.get_info())).unwrap();
    still_works(&g);
    device.destroy(); // the application tears its device down
    let x = logits(4, 50, 1.0, 0.0, false, 1);
    let r = g.softmax(x.view(), 1.0);
    eprintln!("after destroy: {r:?}");
    assert!(r.is_err(), "a call on a destroyed device must fail");
    assert!(g.logsumexp(x.view(), 1.0).is_err());
}

#[test]
fn a_buffer_the_device_refuses_is_an_error_and_the_engine_stays_usable() {
    if gpu().is_none() {
        return;
    }
    // An application device that allows no buffer above 1 MiB: creating a 4 MiB one fails.
    // (On lavapipe an oversized buffer is refused by validation before any allocation; real
    // out-of-memory takes the same error-scoped path and comes back as Error::OutOfMemory.)
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let mut limits = adapter.limits();
    limits.max_buffer_size = 1 << 20;
    limits.max_storage_buffer_binding_size = 1 << 20;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits,
        ..Default::default()
    }))
    .unwrap();
    let g = Gpu::from_device(device, queue, None).unwrap();
    let big = logits(1024, 1024, 1.0, 0.0, false, 2); // 4 MiB
    match g.upload(big.view()) {
        Err(Error::Validation(_)) | Err(Error::OutOfMemory(_)) => {}
        other => panic!("expected a refused buffer, got {other:?}"),
    }
    // Host-path calls chunk to the device's limits, so the same data still goes through.
    let p = g.softmax(big.view(), 1.0).unwrap();
    assert!(p.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-4));
    // A device op whose output would exceed the limit fails cleanly too.
    let small = g
        .upload(logits(1024, 200, 1.0, 0.0, false, 3).view())
        .unwrap(); // 800 KiB
    let wide = GpuMatrix::from_buffer(small.buffer().clone(), 0, 250, 800, 800).unwrap();
    assert!(g
        .call(Rows {
            op: RowOp::Softmax,
            x: &wide,
            temperature: 1.0
        })
        .on_device()
        .run()
        .is_ok()); // 800 KiB out: fine
    still_works(&g);
}
