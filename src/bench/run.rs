//! The bench's loop: per shape and element type, the yardsticks (before and after), then each
//! op on the CPU and the GPU (kernel and end to end), every line beside its same-type
//! yardstick.

use super::config::{
    bench_ce_options, bench_inputs, parallel_copy, parallel_row_sum, record, timed, BenchConfig,
    BenchOp,
};
use super::record::Record;
use super::surrogates::SurrogateInputs;
use crate::backend::Backend;
use crate::cross_entropy::Targets;
use crate::element::{DType, Element, Tensor};
use crate::error::{Error, Result};
use crate::gpu::KernelJob;
use crate::rows::RowOp;
use crate::{Cpu, Gpu};
use ndarray::{Array1, Array2, Ix2};

/// Runs the configured measurements; `progress(done, total, what)` is called before each one.
pub fn run(
    cfg: &BenchConfig,
    gpu: Option<&Gpu>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<Record>> {
    // Yardsticks are measured twice per shape and type, before and after its ops: two on the
    // CPU, three on the GPU; each op once on the CPU, twice (kernel, end to end) on the GPU.
    let ops = cfg.ops.len();
    let per_type = cfg.cpu as usize * (ops + 4) + gpu.is_some() as usize * (2 * ops + 6);
    let per_shape = per_type * cfg.dtypes.len();
    let total = per_shape * cfg.shapes.len();
    let mut done = 0;
    let mut out = Vec::new();
    for &(rows, cols) in &cfg.shapes {
        let (x, y) = bench_inputs(rows, cols);
        for &dtype in &cfg.dtypes {
            let mut tick = |what: &str| {
                progress(done, total, &format!("{what} [{rows}, {cols}] {dtype}"));
                done += 1;
            };
            let lines = match dtype {
                DType::F32 => shape::<f32>(cfg, gpu, x.clone(), &y, &mut tick)?,
                DType::F16 => shape::<half::f16>(cfg, gpu, narrow(&x, dtype)?, &y, &mut tick)?,
                DType::BF16 => shape::<half::bf16>(cfg, gpu, narrow(&x, dtype)?, &y, &mut tick)?,
            };
            out.extend(lines);
        }
    }
    progress(total, total, "done");
    Ok(out)
}

/// The f32 bench input rounded to `dtype`.
fn narrow<E: Element>(x: &Array2<f32>, dtype: DType) -> Result<Array2<E>> {
    Tensor::narrow(x.clone().into_dyn(), dtype).into_typed::<E, Ix2>()
}

/// One shape in one element type: yardsticks (pooled from before and after), then the ops.
fn shape<E: Element>(
    cfg: &BenchConfig,
    gpu: Option<&Gpu>,
    x: Array2<E>,
    y: &Array1<i64>,
    tick: &mut dyn FnMut(&str),
) -> Result<Vec<Record>> {
    let (rows, cols) = x.dim();
    let key = (rows, cols, E::DTYPE);
    let n = rows * cols;
    let elem = std::mem::size_of::<E>();
    // Yardsticks, same bytes as a read-B·C-write-B·C op of this type, measured before and
    // after the shape's ops and pooled: on a shared machine whose speed drifts during a run,
    // the yardstick then brackets the ops instead of describing only the start.
    // The copies read and write B·C elements, the row sums read B·C and write B floats.
    let (copied, summed) = ((2 * n * elem) as u64, (n * elem + 4 * rows) as u64);
    // (name, device, seconds, clock, bytes)
    let mut sticks: Vec<(&str, &str, Vec<f64>, &str, u64)> = Vec::new();
    let mut measure_sticks = |tick: &mut dyn FnMut(&str)| -> Result<()> {
        let mut k = 0;
        let mut add = |name, device, t: Vec<f64>, clock, bytes| {
            match sticks.get_mut(k) {
                Some(s) => s.2.extend(t),
                None => sticks.push((name, device, t, clock, bytes)),
            }
            k += 1;
        };
        if let Some(g) = gpu {
            for (job, name, bytes) in [
                (KernelJob::Copy, "copy", copied),
                (KernelJob::ExpMap, "exp-map", copied),
                (KernelJob::RowSum, "row-sum", summed),
            ] {
                tick(&format!("gpu {name}"));
                let t = g.kernel_times(&job, x.view().into(), cfg.warmup, cfg.runs)?;
                let clock = if t.timestamps { "timestamps" } else { "wall" };
                add(name, "gpu-kernel", t.seconds, clock, bytes);
            }
        }
        if cfg.cpu {
            tick("cpu memcpy");
            let src = x
                .as_slice()
                .ok_or_else(|| Error::InvalidInput("bench input is not contiguous".into()))?;
            let mut dst = vec![E::default(); n];
            let t = timed(cfg.warmup, cfg.runs, || {
                parallel_copy(src, &mut dst);
                Ok(())
            })?;
            add("memcpy", "cpu", t, "wall", copied);
            tick("cpu row-sum");
            let mut sums = vec![0.0f32; rows];
            let t = timed(cfg.warmup, cfg.runs, || {
                parallel_row_sum(src, cols, &mut sums);
                std::hint::black_box(&sums);
                Ok(())
            })?;
            add("row-sum", "cpu", t, "wall", summed);
        }
        Ok(())
    };
    measure_sticks(tick)?;
    let cpu = Cpu::new();
    let mut out = Vec::new();
    // The op of each line in `out`.
    let mut line_ops = Vec::new();
    for &op in &cfg.ops {
        let (rd, wr) = op.bytes(rows, cols, elem);
        let bytes = rd + wr;
        // A surrogate's extra inputs, made once before its timed runs.
        let extra = match op {
            BenchOp::Surrogate(s) => Some((s, SurrogateInputs::new(s, &x, y))),
            _ => None,
        };
        let run_on = |b: &dyn Backend| -> Result<()> {
            let t = match op {
                BenchOp::Surrogate(_) => {
                    let Some((s, inputs)) = &extra else {
                        return Ok(());
                    };
                    return b
                        .surrogate_matrix(&inputs.call(*s, x.view().into()), None)
                        .map(drop);
                }
                BenchOp::LogSumExp => RowOp::LogSumExp,
                BenchOp::Softmax => RowOp::Softmax,
                BenchOp::LogSoftmax => RowOp::LogSoftmax,
                BenchOp::CeForward | BenchOp::CeForwardBackward => {
                    let o = bench_ce_options(op == BenchOp::CeForwardBackward);
                    let y = Targets::classes(y.view());
                    return b
                        .cross_entropy_tensor(x.view().into(), y, &o, None)
                        .map(drop);
                }
            };
            b.row_op_tensor(t, x.view().into(), 1.0, None).map(drop)
        };
        let mut cpu_ms = None;
        if cfg.cpu {
            tick(&format!("cpu {}", op.name()));
            // Into one reused output buffer, as the memcpy yardstick and the GPU kernel lines
            // do: the timed runs measure the kernel, not the first touch of a fresh output's
            // pages (see Cpu::softmax_into and WARMUP_MIN).
            let mut buf = Array2::<E>::from_elem(
                if op.writes_matrix() {
                    (rows, cols)
                } else {
                    (0, 0)
                },
                E::default(),
            );
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
                _ => run_on(&cpu),
            })?;
            let r = record(op.name(), key, "cpu", &t, bytes, "wall");
            cpu_ms = Some(r.median_ms);
            out.push(r);
            line_ops.push(op);
        }
        if let Some(g) = gpu {
            tick(&format!("gpu {} kernel", op.name()));
            let job = match (op, &extra) {
                (BenchOp::Surrogate(_), Some((s, inputs))) => {
                    KernelJob::Surrogate(inputs.call(*s, x.view().into()))
                }
                (BenchOp::Surrogate(_), None) => continue,
                (BenchOp::LogSumExp, _) => KernelJob::Row(RowOp::LogSumExp, 1.0),
                (BenchOp::Softmax, _) => KernelJob::Row(RowOp::Softmax, 1.0),
                (BenchOp::LogSoftmax, _) => KernelJob::Row(RowOp::LogSoftmax, 1.0),
                (BenchOp::CeForward | BenchOp::CeForwardBackward, _) => KernelJob::CrossEntropy(
                    y.view(),
                    bench_ce_options(op == BenchOp::CeForwardBackward),
                ),
            };
            let t = g.kernel_times(&job, x.view().into(), cfg.warmup, cfg.runs)?;
            let clock = if t.timestamps { "timestamps" } else { "wall" };
            let mut r = record(op.name(), key, "gpu-kernel", &t.seconds, bytes, clock);
            r.speedup_vs_cpu = cpu_ms.map(|c| c / r.median_ms);
            out.push(r);
            line_ops.push(op);
            tick(&format!("gpu {} end to end", op.name()));
            let t = timed(cfg.warmup, cfg.runs, || run_on(g))?;
            let mut r = record(op.name(), key, "gpu-e2e", &t, bytes, "wall");
            r.speedup_vs_cpu = cpu_ms.map(|c| c / r.median_ms);
            out.push(r);
            line_ops.push(op);
        }
    }
    measure_sticks(tick)?;
    let sticks: Vec<Record> = sticks
        .iter()
        .map(|(name, device, t, clock, bytes)| record(name, key, device, t, *bytes, clock))
        .collect();
    let gbps = |name: &str, device: &str| {
        sticks
            .iter()
            .find(|s| s.op == name && s.device == device)
            .map(|s| s.gbps)
    };
    let (copy, expmap) = (gbps("copy", "gpu-kernel"), gbps("exp-map", "gpu-kernel"));
    let memcpy = gbps("memcpy", "cpu");
    for (r, op) in out.iter_mut().zip(&line_ops) {
        let row_sum = gbps("row-sum", &r.device).filter(|_| op.reads_only());
        r.frac_row_sum = row_sum.map(|s| r.gbps / s);
        match r.device.as_str() {
            "gpu-kernel" => {
                r.frac_copy = copy.map(|c| r.gbps / c);
                r.frac_exp_map = expmap.map(|e| r.gbps / e);
            }
            "cpu" => r.frac_copy = memcpy.map(|m| r.gbps / m),
            _ => {}
        }
    }
    Ok(sticks.into_iter().chain(out).collect())
}
