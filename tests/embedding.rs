//! Embedding: the application's own device, many threads at once, and a long run that must not
//! grow memory.

mod common;

use common::{assert_close_2d, gpu, logits};
use smoothmax::{Backend, CrossEntropyOptions, Error, Gpu, Reduction, Reference, Targets};
use std::sync::Arc;

fn app_device(
    limits: impl FnOnce(&wgpu::Adapter) -> wgpu::Limits,
) -> Option<(wgpu::Adapter, wgpu::Device, wgpu::Queue)> {
    gpu()?; // skips loudly (or fails under SMOOTHMAX_REQUIRE_GPU=1) like every GPU test
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .ok()?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits(&adapter),
        ..Default::default()
    }))
    .ok()?;
    Some((adapter, device, queue))
}

#[test]
fn runs_on_the_applications_device() {
    let Some((adapter, device, queue)) = app_device(|a| a.limits()) else {
        return;
    };
    let g = Gpu::from_device(device.clone(), queue.clone(), Some(adapter.get_info())).unwrap();
    assert_eq!(g.adapter().name, adapter.get_info().name);
    let x = logits(9, 300, 2.0, 0.0, true, 3);
    let want = Reference.softmax_f64(x.view(), 1.0, false).unwrap();
    assert_close_2d(
        g.softmax(x.view(), 1.0).unwrap().view(),
        want.view(),
        "byo softmax",
    );
    // The application's device is still its own: it keeps working after smoothmax used it.
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&buf, 0, &[0u8; 64]);
    queue.submit([]);
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
}

#[test]
fn a_device_without_the_needed_limits_is_refused_by_name() {
    let Some((_, device, queue)) = app_device(|_| wgpu::Limits::downlevel_defaults()) else {
        return;
    };
    match Gpu::from_device(device, queue, None) {
        Err(Error::Unsupported { what, have, need }) => {
            assert_eq!(what, "max_storage_buffers_per_shader_stage");
            assert!(have < need, "{have} vs {need}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn the_engine_is_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Gpu>();
    send_sync::<smoothmax::Cpu>();
}

#[test]
fn eight_threads_of_mixed_ops_get_correct_results() {
    let Some(g) = gpu() else { return };
    let g = Arc::new(g.clone());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let g = g.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    let (rows, cols) =
                        [(3, 7), (40, 129), (5, 3000), (2, 40_000), (300, 64)][(t + i) % 5];
                    let x = logits(
                        rows,
                        cols,
                        2.0,
                        (t * 10) as f64,
                        i % 2 == 0,
                        (t * 100 + i) as u64,
                    );
                    let what = format!("thread {t} call {i} [{rows}, {cols}]");
                    match (t + i) % 3 {
                        0 => {
                            let want = Reference.logsumexp_f64(x.view(), 0.5).unwrap();
                            common::assert_lse_close(
                                g.logsumexp(x.view(), 0.5).unwrap().view(),
                                want.view(),
                                cols,
                                0.5,
                                &what,
                            );
                        }
                        1 => {
                            let want = Reference.softmax_f64(x.view(), 1.0, true).unwrap();
                            assert_close_2d(
                                g.log_softmax(x.view(), 1.0).unwrap().view(),
                                want.view(),
                                &what,
                            );
                        }
                        _ => {
                            let y = ndarray::Array1::from_shape_fn(rows, |r| {
                                ((r * 7 + i) % cols) as i64
                            });
                            let o = CrossEntropyOptions {
                                gradient: true,
                                reduction: Reduction::Sum,
                                ..Default::default()
                            };
                            let want = Reference
                                .cross_entropy_f64(x.view(), Targets::classes(y.view()), &o)
                                .unwrap();
                            let got = g
                                .cross_entropy(x.view(), Targets::classes(y.view()), &o)
                                .unwrap();
                            common::assert_ce_close(&got, &want, cols, 1.0, &what);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a worker thread failed");
    }
}

/// Resident set size in bytes (Linux), for the long-run memory check.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn ten_thousand_mixed_calls_do_not_grow_memory() {
    let Some(g) = gpu() else { return };
    let g = g.clone();
    let limit = 8 << 20;
    g.set_pool_limit(limit);
    let inputs: Vec<_> = [(3usize, 7usize), (17, 100), (64, 500), (4, 2000), (128, 33)]
        .iter()
        .map(|&(r, c)| {
            (
                logits(r, c, 1.0, 0.0, false, (r * c) as u64),
                ndarray::Array1::from_shape_fn(r, |i| (i % c) as i64),
            )
        })
        .collect();
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.1,
        ..Default::default()
    };
    let call = |k: usize| {
        let (x, y) = &inputs[k % inputs.len()];
        match k % 4 {
            0 => drop(g.logsumexp(x.view(), 1.0).unwrap()),
            1 => drop(g.softmax(x.view(), 2.0).unwrap()),
            2 => drop(g.log_softmax(x.view(), 1.0).unwrap()),
            _ => drop(
                g.cross_entropy(x.view(), Targets::classes(y.view()), &o)
                    .unwrap(),
            ),
        }
    };
    for k in 0..200 {
        call(k); // warm-up: pipelines compiled, pool filled
    }
    let before = rss_bytes();
    let created = g.counters().buffers_created;
    for k in 0..10_000 {
        call(k);
        assert!(
            g.pool_idle_bytes() <= limit,
            "pool holds {} > {limit}",
            g.pool_idle_bytes()
        );
    }
    let after = rss_bytes();
    eprintln!(
        "10,000 calls: RSS before {:?} MiB, after {:?} MiB; buffers created during the run: {}",
        before.map(|b| b >> 20),
        after.map(|b| b >> 20),
        g.counters().buffers_created - created
    );
    if let (Some(b), Some(a)) = (before, after) {
        assert!(
            a < b + (32 << 20),
            "RSS grew from {} to {} MiB",
            b >> 20,
            a >> 20
        );
    }
    // And a lower bound evicts what is idle now.
    g.set_pool_limit(0);
    assert_eq!(g.pool_idle_bytes(), 0);
    g.set_pool_limit(smoothmax_default_limit());
}

fn smoothmax_default_limit() -> u64 {
    1 << 30
}
