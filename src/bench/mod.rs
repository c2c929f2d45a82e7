//! Benchmarks: every op on the GPU (kernel time on device-resident data, and end to end) and on
//! the CPU, beside yardsticks measured in the same run on the same bytes: on the GPU a copy
//! kernel and an exp-map kernel, on the CPU a multi-threaded memcpy. Throughput counts bytes
//! read plus bytes written (compulsory traffic: each input once, each output once).

mod plot;
mod record;
mod report;

pub use plot::write_svg;
pub use record::Record;
pub use report::{table, to_json};

use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, Reduction, Targets};
use crate::error::Result;
use crate::gpu::KernelJob;
use crate::rows::RowOp;
use crate::{Cpu, Gpu};
use ndarray::{Array1, Array2};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// An op the bench measures.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BenchOp {
    /// Per-row logsumexp.
    LogSumExp,
    /// Softmax.
    Softmax,
    /// Log-softmax.
    LogSoftmax,
    /// Cross-entropy, loss only (mean, ignore_index, label smoothing 0.1).
    CeForward,
    /// Cross-entropy, loss and gradient (same options).
    CeForwardBackward,
}

impl BenchOp {
    /// Every op, in report order.
    pub const ALL: [BenchOp; 5] = [
        BenchOp::LogSumExp,
        BenchOp::Softmax,
        BenchOp::LogSoftmax,
        BenchOp::CeForward,
        BenchOp::CeForwardBackward,
    ];

    /// The op's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::LogSumExp => "logsumexp",
            BenchOp::Softmax => "softmax",
            BenchOp::LogSoftmax => "log-softmax",
            BenchOp::CeForward => "ce-fwd",
            BenchOp::CeForwardBackward => "ce-fwd-bwd",
        }
    }

    /// Parses a name as printed by [`BenchOp::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }

    /// Whether the op writes a `[B, C]` result (softmax, log-softmax, the CE gradient).
    pub fn writes_matrix(self) -> bool {
        matches!(
            self,
            BenchOp::Softmax | BenchOp::LogSoftmax | BenchOp::CeForwardBackward
        )
    }

    /// Compulsory bytes (read, written) for a `[rows, cols]` input. Class targets are counted
    /// as 8-byte integers; cross-entropy writes a loss and an lse per row.
    pub fn bytes(self, rows: usize, cols: usize) -> (u64, u64) {
        let (b, n) = (rows as u64, (rows * cols) as u64);
        match self {
            BenchOp::LogSumExp => (4 * n, 4 * b),
            BenchOp::Softmax | BenchOp::LogSoftmax => (4 * n, 4 * n),
            BenchOp::CeForward => (4 * n + 8 * b, 8 * b),
            BenchOp::CeForwardBackward => (4 * n + 8 * b, 4 * n + 8 * b),
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// `[B, C]` shapes.
    pub shapes: Vec<(usize, usize)>,
    /// Ops.
    pub ops: Vec<BenchOp>,
    /// Untimed runs before timing.
    pub warmup: usize,
    /// Timed runs (the median and the spread are reported).
    pub runs: usize,
    /// Measure the CPU path.
    pub cpu: bool,
    /// Measure the GPU (needs an adapter).
    pub gpu: bool,
}

impl BenchConfig {
    /// The default shapes: LLM vocabularies and a short-row case.
    pub fn default_shapes() -> Vec<(usize, usize)> {
        vec![
            (4096, 32_000),
            (512, 128_256),
            (8, 256_000),
            (65_536, 1000),
            (32, 1000),
        ]
    }

    /// `--quick`: a subset that runs in well under a minute on lavapipe.
    pub fn quick() -> Self {
        BenchConfig {
            shapes: vec![(1024, 32_000), (8, 256_000), (32, 1000)],
            ops: BenchOp::ALL.to_vec(),
            warmup: 1,
            runs: 3,
            cpu: true,
            gpu: true,
        }
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            shapes: Self::default_shapes(),
            ops: BenchOp::ALL.to_vec(),
            warmup: 1,
            runs: 5,
            cpu: true,
            gpu: true,
        }
    }
}

fn summarize(seconds: &[f64]) -> (f64, f64, f64) {
    let mut s = seconds.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2] * 1e3, s[0] * 1e3, s[s.len() - 1] * 1e3)
}

#[allow(clippy::too_many_arguments)]
fn record(
    op: &str,
    rows: usize,
    cols: usize,
    device: &str,
    seconds: &[f64],
    bytes: u64,
    clock: &str,
) -> Record {
    let (median_ms, min_ms, max_ms) = summarize(seconds);
    Record {
        op: op.into(),
        rows,
        cols,
        device: device.into(),
        median_ms,
        min_ms,
        max_ms,
        bytes,
        gbps: bytes as f64 / (median_ms * 1e-3) / 1e9,
        frac_copy: None,
        frac_exp_map: None,
        speedup_vs_cpu: None,
        clock: clock.into(),
    }
}

/// Deterministic bench inputs: logits ~ N(0, 2²) and class targets, 10% ignored (−100).
pub fn bench_inputs(rows: usize, cols: usize) -> (Array2<f32>, Array1<i64>) {
    let mut state = 0x5eed_u64 ^ (rows as u64) << 32 ^ cols as u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32) / (1u64 << 24) as f32
    };
    let x = Array2::from_shape_simple_fn((rows, cols), || {
        (next() + next() + next() + next() - 2.0) * 3.46
    });
    let y = Array1::from_shape_simple_fn(rows, || {
        let u = next();
        if u < 0.1 {
            -100
        } else {
            ((next() * cols as f32) as i64).min(cols as i64 - 1)
        }
    });
    (x, y)
}

/// The cross-entropy options the bench uses: mean, ignore_index −100, label smoothing 0.1.
pub fn bench_ce_options<'a>(gradient: bool) -> CrossEntropyOptions<'a> {
    CrossEntropyOptions {
        label_smoothing: 0.1,
        reduction: Reduction::Mean,
        gradient,
        ..Default::default()
    }
}

/// Warm-up lasts at least this long as well as `warmup` runs. A fresh 524 MB output lands on
/// pages the process has not touched yet, and on a virtual machine such pages can cost far
/// more than a page fault (measured on this project's CI machine kind: touching 6 GB of new
/// memory took 7.3 s, and a process's first ten CPU softmax calls at [4096, 32000] took
/// 107-353 ms against a steady 87 ms); time-based warm-up, as criterion does, lets those
/// first touches happen before the timed runs.
const WARMUP_MIN: Duration = Duration::from_millis(500);

fn timed(warmup: usize, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let t0 = Instant::now();
    let mut done = 0;
    while done < warmup || (warmup > 0 && t0.elapsed() < WARMUP_MIN) {
        f()?;
        done += 1;
    }
    (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f()?;
            Ok(t0.elapsed().as_secs_f64())
        })
        .collect()
}

/// Multi-threaded memcpy of `src` into `dst` (the CPU yardstick).
pub fn parallel_copy(src: &[f32], dst: &mut [f32]) {
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Runs the configured measurements; `progress(done, total, what)` is called before each one.
pub fn run(
    cfg: &BenchConfig,
    gpu: Option<&Gpu>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<Record>> {
    let cpu = Cpu::new();
    // Yardsticks are measured twice per shape, before and after its ops.
    let per_shape = cfg.ops.len() * (cfg.cpu as usize + 2 * gpu.is_some() as usize)
        + 2 * (cfg.cpu as usize + 2 * gpu.is_some() as usize);
    let total = per_shape * cfg.shapes.len();
    let mut done = 0;
    let mut out = Vec::new();
    for &(rows, cols) in &cfg.shapes {
        let (x, y) = bench_inputs(rows, cols);
        let n = rows * cols;
        let mut tick = |what: &str| {
            progress(done, total, &format!("{what} [{rows}, {cols}]"));
            done += 1;
        };
        // Yardsticks, same bytes as a read-B·C-write-B·C op, measured before and after the
        // shape's ops and pooled: on a shared machine whose speed drifts during a run, the
        // yardstick then brackets the ops instead of describing only the start.
        // (name, device, seconds, clock)
        let mut sticks: Vec<(&str, &str, Vec<f64>, &str)> = Vec::new();
        let mut measure_sticks = |tick: &mut dyn FnMut(&str)| -> Result<()> {
            let mut k = 0;
            let mut add = |name, device, t: Vec<f64>, clock| {
                match sticks.get_mut(k) {
                    Some(s) => s.2.extend(t),
                    None => sticks.push((name, device, t, clock)),
                }
                k += 1;
            };
            if let Some(g) = gpu {
                for (job, name) in [(KernelJob::Copy, "copy"), (KernelJob::ExpMap, "exp-map")] {
                    tick(&format!("gpu {name}"));
                    let t = g.kernel_times(&job, x.view(), cfg.warmup, cfg.runs)?;
                    let clock = if t.timestamps { "timestamps" } else { "wall" };
                    add(name, "gpu-kernel", t.seconds, clock);
                }
            }
            if cfg.cpu {
                tick("cpu memcpy");
                let src = x.as_slice().ok_or_else(|| {
                    crate::Error::InvalidInput("bench input is not contiguous".into())
                })?;
                let mut dst = vec![0.0f32; n];
                let t = timed(cfg.warmup, cfg.runs, || {
                    parallel_copy(src, &mut dst);
                    Ok(())
                })?;
                add("memcpy", "cpu", t, "wall");
            }
            Ok(())
        };
        measure_sticks(&mut tick)?;
        let first_op = out.len();
        for &op in &cfg.ops {
            let (rd, wr) = op.bytes(rows, cols);
            let bytes = rd + wr;
            let run_cpu = |b: &dyn Backend| -> Result<()> {
                match op {
                    BenchOp::LogSumExp => b.row_op(RowOp::LogSumExp, x.view(), 1.0).map(drop),
                    BenchOp::Softmax => b.row_op(RowOp::Softmax, x.view(), 1.0).map(drop),
                    BenchOp::LogSoftmax => b.row_op(RowOp::LogSoftmax, x.view(), 1.0).map(drop),
                    BenchOp::CeForward | BenchOp::CeForwardBackward => {
                        let o = bench_ce_options(op == BenchOp::CeForwardBackward);
                        b.cross_entropy_tensor(
                            x.view().into(),
                            Targets::classes(y.view()),
                            &o,
                            None,
                        )
                        .map(drop)
                    }
                }
            };
            let mut cpu_ms = None;
            if cfg.cpu {
                tick(&format!("cpu {}", op.name()));
                // Into one reused output buffer, as the memcpy yardstick and the GPU kernel
                // lines do: the timed runs measure the kernel, not the first touch of a fresh
                // output's pages (see Cpu::softmax_into and WARMUP_MIN).
                let mut buf = Array2::<f32>::zeros(if op.writes_matrix() {
                    (rows, cols)
                } else {
                    (0, 0)
                });
                let t = timed(cfg.warmup, cfg.runs, || match op {
                    BenchOp::Softmax => cpu.softmax_into(x.view(), 1.0, buf.view_mut()),
                    BenchOp::LogSoftmax => cpu.log_softmax_into(x.view(), 1.0, buf.view_mut()),
                    BenchOp::CeForwardBackward => cpu
                        .cross_entropy_into(
                            x.view(),
                            Targets::classes(y.view()),
                            &bench_ce_options(true),
                            buf.view_mut(),
                        )
                        .map(drop),
                    _ => run_cpu(&cpu),
                })?;
                let r = record(op.name(), rows, cols, "cpu", &t, bytes, "wall");
                cpu_ms = Some(r.median_ms);
                out.push(r);
            }
            if let Some(g) = gpu {
                tick(&format!("gpu {} kernel", op.name()));
                let job = match op {
                    BenchOp::LogSumExp => KernelJob::Row(RowOp::LogSumExp, 1.0),
                    BenchOp::Softmax => KernelJob::Row(RowOp::Softmax, 1.0),
                    BenchOp::LogSoftmax => KernelJob::Row(RowOp::LogSoftmax, 1.0),
                    BenchOp::CeForward | BenchOp::CeForwardBackward => KernelJob::CrossEntropy(
                        y.view(),
                        bench_ce_options(op == BenchOp::CeForwardBackward),
                    ),
                };
                let t = g.kernel_times(&job, x.view(), cfg.warmup, cfg.runs)?;
                let mut r = record(
                    op.name(),
                    rows,
                    cols,
                    "gpu-kernel",
                    &t.seconds,
                    bytes,
                    if t.timestamps { "timestamps" } else { "wall" },
                );
                r.speedup_vs_cpu = cpu_ms.map(|c| c / r.median_ms);
                out.push(r);
                tick(&format!("gpu {} end to end", op.name()));
                let t = timed(cfg.warmup, cfg.runs, || run_cpu(g))?;
                let mut r = record(op.name(), rows, cols, "gpu-e2e", &t, bytes, "wall");
                r.speedup_vs_cpu = cpu_ms.map(|c| c / r.median_ms);
                out.push(r);
            }
        }
        measure_sticks(&mut tick)?;
        let sticks: Vec<Record> = sticks
            .iter()
            .map(|(name, device, t, clock)| {
                record(name, rows, cols, device, t, 8 * n as u64, clock)
            })
            .collect();
        let gbps = |name: &str| sticks.iter().find(|s| s.op == name).map(|s| s.gbps);
        let (copy, expmap, memcpy) = (gbps("copy"), gbps("exp-map"), gbps("memcpy"));
        for r in &mut out[first_op..] {
            match r.device.as_str() {
                "gpu-kernel" => {
                    r.frac_copy = copy.map(|c| r.gbps / c);
                    r.frac_exp_map = expmap.map(|e| r.gbps / e);
                }
                "cpu" => r.frac_copy = memcpy.map(|m| r.gbps / m),
                _ => {}
            }
        }
        out.splice(first_op..first_op, sticks);
    }
    progress(total, total, "done");
    Ok(out)
}
