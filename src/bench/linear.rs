//! `smoothmax bench --op linear-ce`: the fused linear cross-entropy at `[N, D]·[V, D]ᵀ`,
//! forward and forward+backward, beside a plain matrix product of the same size on the same
//! device (the yardstick: `gemm` on the CPU, the same product kernels on the GPU), and on the
//! CPU beside the materialized path (the product into `[N, V]` logits, then cross-entropy,
//! then the two gradient products, all through the same `gemm`), with each path's peak extra
//! heap.
//!
//! FLOP counts are the useful ones: `2NVD` forward, `6NVD` forward+backward (the fused
//! backward recomputes the logits; that product is not counted).

use super::config::{spread, summarize, timed};
use super::memory::peak_heap;
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, Targets};
use crate::element::{DType, Element, MatrixView, Tensor};
use crate::error::Result;
use crate::gpu::Matrix;
use crate::linear_ce::linear_cross_entropy_rows;
use crate::linear_ce::product::gemm;
use crate::{Cpu, Gpu};
use ndarray::{Array1, Array2};
use std::fmt::Write;

/// The default shapes `(N, D, V)`: a 32k and a 128k vocabulary.
pub const LINEAR_SHAPES: [(usize, usize, usize); 2] = [(2048, 1024, 32_000), (512, 1024, 128_256)];

/// One line of the linear cross-entropy bench.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinearRecord {
    /// `matmul` (the yardstick), `materialized-fwd`, `materialized-fwd-bwd`, `fused-fwd`,
    /// `fused-fwd-bwd`.
    pub op: String,
    /// `(N, D, V)`.
    pub shape: (usize, usize, usize),
    /// Element type of the hidden states and weights.
    pub dtype: String,
    /// `cpu` or `gpu` (end to end on device-resident inputs).
    pub device: String,
    /// Median of the timed runs, milliseconds.
    pub median_ms: f64,
    /// Fastest run, milliseconds.
    pub min_ms: f64,
    /// Slowest run, milliseconds.
    pub max_ms: f64,
    /// Useful FLOP per second (1e9).
    pub gflops: f64,
    /// `gflops` over the same device's plain product's.
    pub frac_matmul: Option<f64>,
    /// Time over the materialized path's (CPU, fused lines).
    pub vs_materialized: Option<f64>,
    /// Peak heap beyond the inputs and the results (CPU), or the largest device buffer the
    /// call created (GPU), in bytes.
    pub extra_bytes: Option<u64>,
}

/// Deterministic inputs: `H ~ N(0, 1)`, `W ~ N(0, 1/D)` (the row bench's logits rescaled),
/// class targets with every tenth row ignored (the fused path leaves ignored rows out of its
/// backward; the materialized path here, like PyTorch's, does not).
fn inputs(n: usize, d: usize, v: usize) -> (Array2<f32>, Array2<f32>, Array1<i64>) {
    let (h, _) = super::bench_inputs(n, d);
    let (w, _) = super::bench_inputs(v, d);
    let w = w / (3.46 * (d as f32).sqrt());
    let y = Array1::from_shape_fn(n, |i| {
        if i % 10 == 9 {
            -100
        } else {
            ((i as u64 * 2_654_435_761) % v as u64) as i64
        }
    });
    (h / 3.46, w, y)
}

fn options(gradient: bool) -> CrossEntropyOptions<'static> {
    CrossEntropyOptions {
        gradient,
        ..super::bench_ce_options(gradient)
    }
}

/// Runs the bench over `shapes` and `dtypes`; `progress` as in [`super::run`].
#[allow(clippy::too_many_arguments)]
pub fn run_linear(
    shapes: &[(usize, usize, usize)],
    dtypes: &[DType],
    (warmup, runs): (usize, usize),
    cpu: bool,
    gpu: Option<&Gpu>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<LinearRecord>> {
    let total = shapes.len() * dtypes.len() * (5 * cpu as usize + 3 * gpu.is_some() as usize);
    let mut done = 0;
    let mut out = Vec::new();
    for &(n, d, v) in shapes {
        let (h, w, y) = inputs(n, d, v);
        for &dtype in dtypes {
            let mut tick = |what: &str| {
                progress(
                    done,
                    total,
                    &format!("{what} [{n}, {d}]·[{v}, {d}] {dtype}"),
                );
                done += 1;
            };
            let hh = Tensor::narrow(h.clone().into_dyn(), dtype);
            let ww = Tensor::narrow(w.clone().into_dyn(), dtype);
            let (hm, wm) = (hh.matrix()?, ww.matrix()?);
            let ctx = Shape {
                n,
                d,
                v,
                dtype,
                warmup,
                runs,
            };
            if cpu {
                out.extend(ctx.cpu(hm.view(), wm.view(), &y, &mut tick)?);
            }
            if let Some(g) = gpu {
                out.extend(ctx.gpu(g, hm.view(), wm.view(), &y, &mut tick)?);
            }
        }
    }
    progress(total, total, "done");
    Ok(out)
}

struct Shape {
    n: usize,
    d: usize,
    v: usize,
    dtype: DType,
    warmup: usize,
    runs: usize,
}

impl Shape {
    fn record(&self, op: &str, device: &str, t: &[f64], flop: f64) -> LinearRecord {
        let (median_ms, min_ms, max_ms) = summarize(t);
        LinearRecord {
            op: op.into(),
            shape: (self.n, self.d, self.v),
            dtype: self.dtype.name().into(),
            device: device.into(),
            median_ms,
            min_ms,
            max_ms,
            gflops: flop / (median_ms * 1e-3) / 1e9,
            frac_matmul: None,
            vs_materialized: None,
            extra_bytes: None,
        }
    }

    fn flop(&self, backward: bool) -> f64 {
        2.0 * (self.n * self.v * self.d) as f64 * if backward { 3.0 } else { 1.0 }
    }

    /// Bytes of the results a call returns: lse and loss, and with the gradient `dH`, `dW`
    /// in the inputs' type.
    fn result_bytes(&self, backward: bool) -> usize {
        let e = self.dtype.size();
        4 * self.n
            + if backward {
                (self.n + self.v) * self.d * e
            } else {
                0
            }
    }

    fn cpu(
        &self,
        h: MatrixView,
        w: MatrixView,
        y: &Array1<i64>,
        tick: &mut dyn FnMut(&str),
    ) -> Result<Vec<LinearRecord>> {
        let cpu = Cpu::new();
        let (h32, w32) = (h.to_f32(), w.to_f32());
        let mut z = Array2::<f32>::zeros((self.n, self.v));
        tick("cpu matmul");
        let t = timed(self.warmup, self.runs, || {
            gemm(z.view_mut(), false, h32.view(), w32.t())
        })?;
        let mm = self.record("matmul", "cpu", &t, self.flop(false));
        drop(z);
        let mut lines = vec![mm.clone()];
        for backward in [false, true] {
            let suffix = if backward { "fwd-bwd" } else { "fwd" };
            tick(&format!("cpu materialized-{suffix}"));
            // The results' buffers first, as the fused path holds them from its start, so
            // that both paths' peaks minus their results are what each needs besides.
            let materialized = || -> Result<()> {
                let grads =
                    |rows| Array2::<f32>::zeros(if backward { (rows, self.d) } else { (0, 0) });
                let (mut dh, mut dw) = (grads(self.n), grads(self.v));
                let mut z = Array2::<f32>::zeros((self.n, self.v));
                gemm(z.view_mut(), false, h32.view(), w32.t())?;
                let o = options(backward);
                let r = cpu.cross_entropy(z.view(), Targets::classes(y.view()), &o)?;
                drop(z);
                if let Some(g) = r.grad {
                    gemm(dh.view_mut(), false, g.view(), w32.view())?;
                    gemm(dw.view_mut(), false, g.t(), h32.view())?;
                    drop(g);
                    // The results in the inputs' type, as the fused call returns them.
                    let _ = (
                        Tensor::narrow(dh.into_dyn(), self.dtype),
                        Tensor::narrow(dw.into_dyn(), self.dtype),
                    );
                }
                Ok(())
            };
            let t = timed(self.warmup, self.runs, materialized)?;
            let mut m = self.record(
                &format!("materialized-{suffix}"),
                "cpu",
                &t,
                self.flop(backward),
            );
            let (r, peak) = peak_heap(materialized);
            r?;
            m.extra_bytes = peak.map(|p| p.saturating_sub(self.result_bytes(backward)) as u64);
            tick(&format!("cpu fused-{suffix}"));
            let fused = || -> Result<()> {
                let o = options(backward);
                let (hm, wm) = (Matrix::Host(h.view()), Matrix::Host(w.view()));
                linear_cross_entropy_rows(&cpu, hm, wm, None, Targets::classes(y.view()), &o)
                    .map(drop)
            };
            let t = timed(self.warmup, self.runs, fused)?;
            let mut f = self.record(&format!("fused-{suffix}"), "cpu", &t, self.flop(backward));
            let (r, peak) = peak_heap(fused);
            r?;
            f.extra_bytes = peak.map(|p| p.saturating_sub(self.result_bytes(backward)) as u64);
            f.vs_materialized = Some(f.median_ms / m.median_ms);
            for r in [&mut m, &mut f] {
                r.frac_matmul = Some(r.gflops / mm.gflops);
            }
            lines.push(m);
            lines.push(f);
        }
        Ok(lines)
    }

    fn gpu(
        &self,
        g: &Gpu,
        h: MatrixView,
        w: MatrixView,
        y: &Array1<i64>,
        tick: &mut dyn FnMut(&str),
    ) -> Result<Vec<LinearRecord>> {
        fn up<E: Element>(g: &Gpu, m: ndarray::ArrayView2<E>) -> Result<crate::GpuMatrix> {
            g.upload(m)
        }
        let hd = crate::element::with_dtype!(MatrixView, h, |a: E| up::<E>(g, a.view()))?;
        let wd = crate::element::with_dtype!(MatrixView, w, |a: E| up::<E>(g, a.view()))?;
        tick("gpu matmul");
        let t = timed(self.warmup, self.runs, || g.plain_product(&hd, &wd))?;
        let mm = self.record("matmul", "gpu", &t, self.flop(false));
        let mut lines = vec![mm.clone()];
        for backward in [false, true] {
            let suffix = if backward { "fwd-bwd" } else { "fwd" };
            tick(&format!("gpu fused-{suffix}"));
            let fused = || -> Result<()> {
                let o = options(backward);
                linear_cross_entropy_rows(
                    g,
                    Matrix::Device(&hd),
                    Matrix::Device(&wd),
                    None,
                    Targets::classes(y.view()),
                    &o,
                )
                .map(drop)
            };
            let t = timed(self.warmup, self.runs, fused)?;
            let mut f = self.record(&format!("fused-{suffix}"), "gpu", &t, self.flop(backward));
            g.ctx.pool.reset_largest();
            fused()?;
            f.extra_bytes = Some(g.ctx.pool.largest());
            f.frac_matmul = Some(f.gflops / mm.gflops);
            lines.push(f);
        }
        Ok(lines)
    }
}

/// The table: one line per record, and what the materialized path's logits would take.
pub fn linear_table(records: &[LinearRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<21} {:>19} {:<5} {:<6} {:>10} {:>7} {:>8} {:>8} {:>8} {:>11} {:>11}",
        "op",
        "N x D x V",
        "type",
        "device",
        "median ms",
        "spread",
        "GFLOP/s",
        "/matmul",
        "vs mat.",
        "extra MB",
        "logits MB"
    );
    for r in records {
        let (n, d, v) = r.shape;
        let opt = |x: Option<f64>, scale: f64, suffix: &str| {
            x.map_or("-".to_string(), |x| format!("{:.0}{suffix}", x * scale))
        };
        let _ = writeln!(
            s,
            "{:<21} {:>19} {:<5} {:<6} {:>10.1} {:>7} {:>8.1} {:>8} {:>8} {:>11} {:>11.1}",
            r.op,
            format!("{n}x{d}x{v}"),
            r.dtype,
            r.device,
            r.median_ms,
            spread(r.min_ms, r.max_ms, r.median_ms),
            r.gflops,
            opt(r.frac_matmul, 100.0, "%"),
            r.vs_materialized.map_or("-".into(), |x| format!("{x:.2}x")),
            r.extra_bytes
                .map_or("-".into(), |b| format!("{:.1}", b as f64 / 1e6)),
            (n * v * 4) as f64 / 1e6,
        );
    }
    s
}
