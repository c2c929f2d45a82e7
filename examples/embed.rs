//! An application that owns its wgpu device and keeps its logits on the GPU: it produces the
//! logits with its own GPU work, records smoothmax's cross-entropy into the same command
//! encoder, submits once, and reads back only the loss. The gradient stays on the device for
//! the application's next step.
//!
//! ```sh
//! cargo run --release --example embed
//! ```

use smoothmax::gpu::CrossEntropy;
use smoothmax::{CrossEntropyOptions, Gpu, GpuMatrix, Reduction, Reference, Targets};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's own device (smoothmax does not create it).
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(
        instance.request_adapter(&wgpu::RequestAdapterOptions::default()),
    )
    .map_err(|e| {
        format!("no GPU adapter ({e}); for a software GPU: apt-get install -y mesa-vulkan-drivers")
    })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    let smooth = Gpu::from_device(device.clone(), queue.clone(), Some(adapter.get_info()))?;
    println!("device: {}", adapter.get_info().name);

    // A batch of logits produced on the GPU by "the model": here the application uploads a
    // staging copy and moves it into its logits buffer with its own GPU command.
    let (batch, vocab) = (64usize, 32_000usize);
    let host: Vec<f32> = (0..batch * vocab)
        .map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    let upload = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app: upload"),
        size: (host.len() * 4) as u64,
        usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&upload, 0, bytemuck::cast_slice(&host));
    let logits_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app: logits"),
        size: (host.len() * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let targets: Vec<i64> = (0..batch)
        .map(|i| {
            if i % 8 == 7 {
                -100
            } else {
                (i * 997 % vocab) as i64
            }
        })
        .collect();
    let targets = ndarray::Array1::from_vec(targets);

    // One encoder: the application's work, then smoothmax's loss and gradient.
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("app: step"),
    });
    encoder.copy_buffer_to_buffer(&upload, 0, &logits_buf, 0, upload.size());
    let logits = GpuMatrix::from_buffer(logits_buf, 0, batch, vocab, vocab)?;
    let options = CrossEntropyOptions {
        label_smoothing: 0.1,
        reduction: Reduction::Mean,
        gradient: true,
        ..Default::default()
    };
    let recorded = smooth
        .call(CrossEntropy {
            logits: &logits,
            targets: Targets::classes(targets.view()),
            options: options.clone(),
        })
        .on_device()
        .record(&mut encoder)?;
    queue.submit([encoder.finish()]);

    // Only the per-row values come back; the gradient stays on the device.
    let out = recorded.finish()?;
    let loss = out.loss.scalar().expect("mean gives a scalar");
    let grad = out.grad.as_ref().expect("gradient asked for");
    println!("loss (GPU, recorded in the application's encoder): {loss:.6}");
    println!(
        "gradient left on the device: {:?} in the application's device memory",
        grad.dim()
    );

    // Check against the f64 reference on the host copy.
    let x = ndarray::Array2::from_shape_vec((batch, vocab), host)?;
    let want = Reference
        .cross_entropy_f64(x.view(), Targets::classes(targets.view()), &options)?
        .reduced;
    println!("loss (f64 reference):                               {want:.6}");
    let rel = ((loss as f64 - want) / want).abs();
    println!("relative difference: {rel:.1e}");
    if rel > 1e-5 {
        return Err(format!("GPU loss {loss} disagrees with the reference {want}").into());
    }
    Ok(())
}
