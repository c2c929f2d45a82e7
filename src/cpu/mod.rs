//! The fast CPU backend: rayon over blocks of rows, one fused pass per row (statistics in one
//! read, then the output written while the row is still in cache), a vectorizable `exp`, and
//! an AVX2 build of the same loops chosen at run time where the processor has it.

mod alloc;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod ce;
mod exp;
mod rows;
pub(crate) mod surrogates;

pub use exp::exp as fast_exp;

use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::{Error, Result};
use crate::ops::{check_temperature, Backend, RowOp, RowOutput};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;
use rows::{row_stats, softmax_row};

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

/// The widest instruction set the row kernels have a build for, detected once.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F (+ AVX2, FMA): 16 lanes.
    Avx512,
    /// AVX2 + FMA: 8 lanes.
    Avx2,
    /// Whatever the build target has (SSE2 on x86-64).
    Baseline,
}

impl Isa {
    pub(crate) fn detect() -> Isa {
        use std::sync::OnceLock;
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let fma =
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
                if fma
                    && std::is_x86_feature_detected!("avx512f")
                    && std::env::var_os("SMOOTHMAX_NO_AVX512").is_none()
                {
                    return Isa::Avx512;
                }
                if fma {
                    return Isa::Avx2;
                }
            }
            Isa::Baseline
        })
    }
}

/// Compiles `$body` (which may only call `#[inline(always)]` helpers, generic over the
/// multiply-add `A`) three times: AVX-512 and AVX2 builds with fused multiply-adds, and the
/// baseline build with separate ones, picking the widest the processor has at run time.
/// Results can differ in the last bits between builds (FMA rounds once), always within the
/// stated tolerance.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident : $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide512($($arg: $ty),*) {
                    type A = exp::Fused;
                    $body
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    type A = exp::Fused;
                    $body
                }
                match Isa::detect() {
                    // SAFETY: the features each variant was compiled for were just detected.
                    Isa::Avx512 => return unsafe { wide512($($arg),*) },
                    Isa::Avx2 => return unsafe { wide($($arg),*) },
                    Isa::Baseline => {}
                }
            }
            type A = exp::Separate;
            $body
        }
    };
}

multiversion! {
    fn lse_rows(x: &[f32], out: &mut [f32], cols: usize, t: f32) {
        for (i, o) in out.iter_mut().enumerate() {
            let row = &x[i * cols..(i + 1) * cols];
            let next = x.get((i + 1) * cols..(i + 2) * cols).unwrap_or(&[]);
            *o = row_stats::<A>(row, next, 1.0 / t).logsumexp(t);
        }
    }
}

multiversion! {
    fn softmax_rows(x: &[f32], out: &mut [f32], cols: usize, t: f32, log: bool) {
        for (i, o) in out.chunks_exact_mut(cols).enumerate() {
            let row = &x[i * cols..(i + 1) * cols];
            let next = x.get((i + 1) * cols..(i + 2) * cols).unwrap_or(&[]);
            softmax_row::<A>(row, next, o, 1.0 / t, log);
        }
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn surrogate(&self, call: &crate::Surrogate) -> Result<crate::SurrogateOutput> {
        surrogates::surrogate(call)
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
                let mut out = vec![f32::NEG_INFINITY; rows];
                if cols > 0 {
                    out.par_chunks_mut(rows_per_task)
                        .zip(xs.par_chunks(rows_per_task * cols))
                        .for_each(|(o, x)| lse_rows(x, o, cols, t));
                }
                RowOutput::PerRow(Array1::from_vec(out))
            }
            RowOp::Softmax | RowOp::LogSoftmax => {
                let mut out = alloc::output_vec(rows * cols);
                if cols > 0 {
                    let log = op == RowOp::LogSoftmax;
                    out.par_chunks_mut(rows_per_task * cols)
                        .zip(xs.par_chunks(rows_per_task * cols))
                        .for_each(|(o, x)| softmax_rows(x, o, cols, t, log));
                }
                RowOutput::Matrix(
                    Array2::from_shape_vec((rows, cols), out)
                        .map_err(|e| Error::InvalidInput(e.to_string()))?,
                )
            }
        })
    }
}
