//! Criterion benches: every op on the CPU and the GPU (kernel time on device-resident data,
//! and end to end) beside the yardsticks (GPU copy and exp-map kernels, CPU memcpy), with
//! throughput in bytes read plus written. For comparing changes:
//!
//! ```sh
//! cargo bench --bench ops                       # [1024, 32000] and [32, 1000]
//! SMOOTHMAX_BENCH_SHAPES=4096x32000 cargo bench --bench ops -- softmax
//! ```
//!
//! GPU kernel times come from `Gpu::kernel_times` (timestamp queries where the adapter has
//! them, else wall clock around submit + wait), so the clock covers device work only.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smoothmax::bench::{bench_ce_options, bench_inputs, parallel_copy, parallel_row_sum, BenchOp};
use smoothmax::gpu::KernelJob;
use smoothmax::{Backend, Cpu, Gpu, RowOp, Targets};
use std::time::Duration;

fn shapes() -> Vec<(usize, usize)> {
    let parse = |s: &str| {
        let (b, c) = s.split_once('x')?;
        Some((b.parse().ok()?, c.parse().ok()?))
    };
    match std::env::var("SMOOTHMAX_BENCH_SHAPES") {
        Ok(v) => v.split(',').filter_map(parse).collect(),
        Err(_) => vec![(1024, 32_000), (32, 1000)],
    }
}

fn gpu_kernel(g: &Gpu, job: &KernelJob, x: ndarray::ArrayView2<f32>, iters: u64) -> Duration {
    let t = g
        .kernel_times(job, x.into(), 0, iters as usize)
        .expect("kernel timing");
    Duration::from_secs_f64(t.seconds.iter().sum())
}

fn ops(c: &mut Criterion) {
    let cpu = Cpu::new();
    let gpu = match Gpu::new() {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("no GPU ({e}): CPU benches only");
            None
        }
    };
    for (rows, cols) in shapes() {
        let (x, y) = bench_inputs(rows, cols);
        let mut group = c.benchmark_group(format!("{rows}x{cols}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        let n = (rows * cols) as u64;
        // Yardsticks: read B·C, write B·C.
        group.throughput(Throughput::Bytes(8 * n));
        let mut dst = vec![0.0f32; rows * cols];
        let src = x.as_slice().expect("contiguous");
        group.bench_function(BenchmarkId::new("memcpy", "cpu"), |b| {
            b.iter(|| parallel_copy(src, &mut dst))
        });
        if let Some(g) = &gpu {
            for (job, name) in [(KernelJob::Copy, "copy"), (KernelJob::ExpMap, "exp-map")] {
                group.bench_function(BenchmarkId::new(name, "gpu-kernel"), |b| {
                    b.iter_custom(|iters| gpu_kernel(g, &job, x.view(), iters))
                });
            }
        }
        // The read-only yardstick: read B·C, write B.
        group.throughput(Throughput::Bytes(4 * n + 4 * rows as u64));
        let mut sums = vec![0.0f32; rows];
        group.bench_function(BenchmarkId::new("row-sum", "cpu"), |b| {
            b.iter(|| parallel_row_sum(src, cols, &mut sums))
        });
        if let Some(g) = &gpu {
            group.bench_function(BenchmarkId::new("row-sum", "gpu-kernel"), |b| {
                b.iter_custom(|iters| gpu_kernel(g, &KernelJob::RowSum, x.view(), iters))
            });
        }
        for op in BenchOp::ALL {
            let (rd, wr) = op.bytes(rows, cols, 4);
            group.throughput(Throughput::Bytes(rd + wr));
            let call = |be: &dyn Backend| match op {
                // (`ALL` holds no surrogate: they are measured by `smoothmax bench --op NAME`.)
                BenchOp::Surrogate(_) => {}
                BenchOp::LogSumExp => drop((&be).logsumexp(x.view(), 1.0).expect("lse")),
                BenchOp::Softmax => drop((&be).softmax(x.view(), 1.0).expect("softmax")),
                BenchOp::LogSoftmax => drop((&be).log_softmax(x.view(), 1.0).expect("log_softmax")),
                BenchOp::CeForward | BenchOp::CeForwardBackward => {
                    let o = bench_ce_options(op == BenchOp::CeForwardBackward);
                    drop(
                        (&be)
                            .cross_entropy(x.view(), Targets::classes(y.view()), &o)
                            .expect("ce"),
                    )
                }
            };
            group.bench_function(BenchmarkId::new(op.name(), "cpu"), |b| {
                b.iter(|| call(&cpu))
            });
            if let Some(g) = &gpu {
                let job = match op {
                    BenchOp::LogSumExp => KernelJob::Row(RowOp::LogSumExp, 1.0),
                    BenchOp::Softmax => KernelJob::Row(RowOp::Softmax, 1.0),
                    BenchOp::LogSoftmax => KernelJob::Row(RowOp::LogSoftmax, 1.0),
                    BenchOp::Surrogate(_) => continue,
                    _ => KernelJob::CrossEntropy(
                        y.view(),
                        bench_ce_options(op == BenchOp::CeForwardBackward),
                    ),
                };
                group.bench_function(BenchmarkId::new(op.name(), "gpu-kernel"), |b| {
                    b.iter_custom(|iters| gpu_kernel(g, &job, x.view(), iters))
                });
                group.bench_function(BenchmarkId::new(op.name(), "gpu-e2e"), |b| {
                    b.iter(|| call(g))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, ops);
criterion_main!(benches);
