//! The fast CPU backend: rayon over blocks of rows, one fused pass per row (statistics in one
//! read, then the output written while the row is still in cache), a vectorizable `exp`, and
//! an AVX2 build of the same loops chosen at run time where the processor has it.

mod ce;
mod exp;
mod rows;

pub use exp::exp as fast_exp;

use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::{Error, Result};
use crate::ops::{check_temperature, Backend, RowOp, RowOutput};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;
use rows::{row_stats, write_softmax};

/// Target number of elements per rayon task: large enough to amortize scheduling, small
/// enough to balance short matrices over the cores.
const ELEMS_PER_TASK: usize = 1 << 16;

/// The multi-threaded f32 CPU backend.
///
/// ```
/// use smoothmax::{Backend, Cpu};
/// let x = ndarray::array![[1.0f32, 2.0, 3.0]];
/// let lse = Cpu::new().logsumexp(x.view(), 1.0).unwrap();
/// assert!((lse[0] - 3.407_605_9).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Cpu {
    _private: (),
}

impl Cpu {
    /// A CPU backend on rayon's global thread pool (`RAYON_NUM_THREADS` sets its size).
    pub fn new() -> Self {
        Cpu { _private: () }
    }
}

/// Runs `$body` (an expression using only `#[inline(always)]` helpers) compiled twice: once
/// for the baseline target and once with AVX2 + FMA enabled, picking at run time. The
/// arithmetic is identical (Rust never contracts `a*b+c` into an FMA on its own), so both
/// give the same bits; AVX2 only makes the vector loops twice as wide.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident : $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $body
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features `wide` was compiled for were just detected.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body
        }
    };
}

multiversion! {
    fn lse_rows(x: &[f32], out: &mut [f32], cols: usize, t: f32) {
        for (row, o) in x.chunks_exact(cols).zip(out.iter_mut()) {
            *o = row_stats(row, 1.0 / t).logsumexp(t);
        }
    }
}

multiversion! {
    fn softmax_rows(x: &[f32], out: &mut [f32], cols: usize, t: f32, log: bool) {
        for (row, o) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
            let st = row_stats(row, 1.0 / t);
            write_softmax(row, o, 1.0 / t, &st, log);
        }
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn cross_entropy(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        ce::cross_entropy(logits, &targets, options)
    }

    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput> {
        check_temperature(temperature)?;
        let (rows, cols) = x.dim();
        let x = x.as_standard_layout();
        let xs = x
            .as_slice()
            .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
        let rows_per_task = (ELEMS_PER_TASK / cols.max(1)).max(1);
        let t = temperature;
        Ok(match op {
            RowOp::LogSumExp => {
                let mut out = Array1::<f32>::from_elem(rows, f32::NEG_INFINITY);
                if cols > 0 {
                    let o = out.as_slice_mut().expect("a fresh Array1 is contiguous");
                    o.par_chunks_mut(rows_per_task)
                        .zip(xs.par_chunks(rows_per_task * cols))
                        .for_each(|(o, x)| lse_rows(x, o, cols, t));
                }
                RowOutput::PerRow(out)
            }
            RowOp::Softmax | RowOp::LogSoftmax => {
                let mut out = Array2::<f32>::zeros((rows, cols));
                if cols > 0 {
                    let log = op == RowOp::LogSoftmax;
                    let o = out.as_slice_mut().expect("a fresh Array2 is contiguous");
                    o.par_chunks_mut(rows_per_task * cols)
                        .zip(xs.par_chunks(rows_per_task * cols))
                        .for_each(|(o, x)| softmax_rows(x, o, cols, t, log));
                }
                RowOutput::Matrix(out)
            }
        })
    }
}
