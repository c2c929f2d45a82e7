//! What the bench measures (ops, shapes, element types) and the helpers every measurement
//! shares: inputs, timing, records.

use super::record::Record;
use super::surrogates::SurrogateBench;
use crate::cross_entropy::{CrossEntropyOptions, Reduction};
use crate::element::DType;
use crate::error::Result;
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
    /// A surrogate, value and gradient (only when asked for with `--op`).
    Surrogate(SurrogateBench),
}

impl BenchOp {
    /// The row ops and cross-entropy, in report order: the default set.
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
            BenchOp::Surrogate(s) => s.name(),
        }
    }

    /// Every op the bench knows: [`BenchOp::ALL`], then every surrogate.
    pub fn every() -> impl Iterator<Item = BenchOp> {
        Self::ALL
            .into_iter()
            .chain(SurrogateBench::ALL.map(BenchOp::Surrogate))
    }

    /// Parses a name as printed by [`BenchOp::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::every().find(|o| o.name() == s)
    }

    /// Whether the op writes a `[B, C]` result the CPU bench writes into a reused buffer
    /// (softmax, log-softmax, the CE gradient; the surrogates allocate theirs per call).
    pub fn writes_matrix(self) -> bool {
        matches!(
            self,
            BenchOp::Softmax | BenchOp::LogSoftmax | BenchOp::CeForwardBackward
        )
    }

    /// Whether the op only reads its input matrix (writing per-row values): its floor is the
    /// row-sum yardstick, not the copy.
    pub fn reads_only(self) -> bool {
        matches!(self, BenchOp::LogSumExp | BenchOp::CeForward)
    }

    /// Compulsory bytes (read, written) for a `[rows, cols]` input of `elem`-byte elements
    /// (matrix outputs in the same type). Class targets are counted as 8-byte integers;
    /// cross-entropy writes an f32 loss and an f32 lse per row, logsumexp an f32 per row.
    pub fn bytes(self, rows: usize, cols: usize, elem: usize) -> (u64, u64) {
        let (b, n, e) = (rows as u64, (rows * cols) as u64, elem as u64);
        match self {
            BenchOp::LogSumExp => (e * n, 4 * b),
            BenchOp::Softmax | BenchOp::LogSoftmax => (e * n, e * n),
            BenchOp::CeForward => (e * n + 8 * b, 8 * b),
            BenchOp::CeForwardBackward => (e * n + 8 * b, e * n + 8 * b),
            BenchOp::Surrogate(s) => s.bytes(rows, cols, elem),
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
    /// Element types of the inputs and matrix outputs (each op and yardstick per type).
    pub dtypes: Vec<DType>,
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
            dtypes: vec![DType::F32],
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
            dtypes: vec![DType::F32],
        }
    }
}

/// `(median, fastest, slowest)` of some timings, in milliseconds.
pub(super) fn summarize(seconds: &[f64]) -> (f64, f64, f64) {
    let mut s = seconds.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2] * 1e3, s[0] * 1e3, s[s.len() - 1] * 1e3)
}

#[allow(clippy::too_many_arguments)]
/// A line's spread, `±` half the range over the median, for the tables.
pub(super) fn spread(min_ms: f64, max_ms: f64, median_ms: f64) -> String {
    format!("±{:.0}%", 50.0 * (max_ms - min_ms) / median_ms.max(1e-12))
}

pub(super) fn record(
    op: &str,
    (rows, cols, dtype): (usize, usize, DType),
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
        dtype: dtype.name().into(),
        device: device.into(),
        median_ms,
        min_ms,
        max_ms,
        bytes,
        gbps: bytes as f64 / (median_ms * 1e-3) / 1e9,
        frac_copy: None,
        frac_exp_map: None,
        frac_row_sum: None,
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

pub(super) fn timed(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
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

/// The read-only CPU yardstick (read `B·C`, write `B`): each row of `src` (`cols` elements)
/// summed into `out`, rows split over the threads as the row kernels split them (tasks of
/// about 64 Ki elements). f32 rows are summed in sixteen f32 lanes; a half row's 16-bit
/// patterns are summed as integers, which reads the same bytes without a conversion's cost
/// (`half`'s scalar f16 widening would make the yardstick slower than the ops it measures).
/// Sixteen independent lanes keep the adds far ahead of memory on any build: SSE2 adds 8
/// floats a cycle, a core reads about 4 G floats a second.
pub fn parallel_row_sum<E: crate::element::Element>(src: &[E], cols: usize, out: &mut [f32]) {
    const L: usize = 16;
    fn row_f32(r: &[f32]) -> f32 {
        let mut acc = [0.0f32; L];
        let mut c = r.chunks_exact(L);
        for b in &mut c {
            for l in 0..L {
                acc[l] += b[l];
            }
        }
        acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
    }
    fn row_u16(r: &[u16]) -> f32 {
        let mut acc = [0u32; L];
        let mut c = r.chunks_exact(L);
        for b in &mut c {
            for l in 0..L {
                acc[l] = acc[l].wrapping_add(b[l] as u32);
            }
        }
        let tail = c.remainder().iter().map(|&v| v as u32);
        acc.into_iter().chain(tail).fold(0u32, u32::wrapping_add) as f32
    }
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let per = (crate::cpu::ELEMS_PER_TASK / cols).max(1);
    out.par_chunks_mut(per)
        .zip(src.par_chunks(per * cols))
        .for_each(|(o, x)| {
            for (o, r) in o.iter_mut().zip(x.chunks_exact(cols)) {
                *o = if std::mem::size_of::<E>() == 4 {
                    row_f32(bytemuck::cast_slice(r))
                } else {
                    row_u16(bytemuck::cast_slice(r))
                };
            }
        });
}

/// Multi-threaded memcpy of `src` into `dst` (the CPU yardstick), in 256 KiB chunks.
pub fn parallel_copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    let chunk = (1 << 18) / std::mem::size_of::<T>().max(1);
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-sum yardstick sums every element of every row (f32 values; a half row's bit
    /// patterns), at widths around its lane count and the task split.
    #[test]
    fn row_sum_reads_every_element() {
        for (rows, cols) in [(3, 1), (5, 15), (2, 16), (4, 33), (70, 1000), (1, 70_000)] {
            let x: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32).collect();
            let mut out = vec![f32::NAN; rows];
            parallel_row_sum(&x, cols, &mut out);
            for (r, &o) in out.iter().enumerate() {
                let want: f32 = x[r * cols..(r + 1) * cols].iter().sum();
                assert_eq!(o, want, "[{rows}, {cols}] row {r}");
            }
            let h: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
            parallel_row_sum(&h, cols, &mut out);
            for (r, &o) in out.iter().enumerate() {
                let want: u32 = h[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|v| v.to_bits() as u32)
                    .sum();
                assert_eq!(o, want as f32, "bf16 [{rows}, {cols}] row {r}");
            }
        }
        let mut none: Vec<f32> = vec![1.0; 2];
        parallel_row_sum::<f32>(&[], 0, &mut none);
        assert_eq!(none, [0.0, 0.0]);
    }
}
