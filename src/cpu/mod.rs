//! The fast CPU backend: rayon over blocks of rows, one fused pass per row (statistics in one
//! read, then the output written while the row is still in cache), a vectorizable `exp`, and
//! an AVX2 build of the same loops chosen at run time where the processor has it.

mod alloc;
mod arith;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod ce;
mod exp;
mod isa;
mod lanes;
mod pointwise;
mod rows;
pub(crate) mod surrogates;

pub use exp::exp as fast_exp;
pub use isa::{CpuIsa, ISA_ENV};

use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::{Error, Result};
use crate::rows::{check_temperature, RowOp, RowOutput};
use crate::scale::ExpScale;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
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
#[derive(Clone, Debug)]
pub struct Cpu {
    /// The kernel build, or why none could be chosen (an invalid `SMOOTHMAX_CPU_ISA`),
    /// returned by every call.
    isa: Result<CpuIsa>,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::new()
    }
}

impl Cpu {
    /// A CPU backend on rayon's global thread pool (`RAYON_NUM_THREADS` sets its size), running
    /// the kernel build `SMOOTHMAX_CPU_ISA` names, else the widest this processor supports
    /// (see [`CpuIsa`]). When that variable holds an unknown name or a build the processor
    /// cannot run, every call returns that error ([`Cpu::isa`] tells it at once).
    pub fn new() -> Self {
        Cpu {
            isa: CpuIsa::from_env(),
        }
    }

    /// A CPU backend running one given kernel build; an error when this processor cannot run
    /// it.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, CpuIsa};
    /// let x = ndarray::array![[1.0f32, 2.0, 3.0]];
    /// let portable = Cpu::with_isa(CpuIsa::Baseline)?;     // runs everywhere
    /// assert_eq!(portable.isa()?, CpuIsa::Baseline);
    /// assert!((portable.logsumexp(x.view(), 1.0)?[0] - 3.407_605_9).abs() < 1e-6);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    pub fn with_isa(isa: CpuIsa) -> Result<Self> {
        Ok(Cpu {
            isa: Ok(isa.check_supported()?),
        })
    }

    /// The kernel build this backend runs.
    pub fn isa(&self) -> Result<CpuIsa> {
        self.isa.clone()
    }

    /// [`Backend::softmax`] into a caller's `[B, C]` buffer (standard layout), allocating
    /// nothing: for loops that evaluate the same shape again and again. A fresh large output
    /// costs page faults on every call (for `[4096, 32000]`, 524 MB of new pages), which the
    /// reused buffer pays once.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu};
    /// let x = ndarray::array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]];
    /// let mut out = ndarray::Array2::<f32>::zeros((2, 3));
    /// Cpu::new().softmax_into(x.view(), 1.0, out.view_mut())?;
    /// assert_eq!(out, Cpu::new().softmax(x.view(), 1.0)?);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    pub fn softmax_into(
        &self,
        x: ArrayView2<f32>,
        temperature: f32,
        out: ArrayViewMut2<f32>,
    ) -> Result<()> {
        softmax_into(self.isa()?, x, temperature, out, false)
    }

    /// [`Backend::log_softmax`] into a caller's buffer, as [`Cpu::softmax_into`].
    pub fn log_softmax_into(
        &self,
        x: ArrayView2<f32>,
        temperature: f32,
        out: ArrayViewMut2<f32>,
    ) -> Result<()> {
        softmax_into(self.isa()?, x, temperature, out, true)
    }

    /// [`Backend::cross_entropy`] with the gradient written into a caller's `[B, C]` buffer
    /// (standard layout) instead of a new matrix: `options.gradient` must be set, and the
    /// returned output's `grad` is `None`.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
    /// let x = ndarray::array![[2.0f32, 0.5, -1.0]];
    /// let y = ndarray::array![0i64];
    /// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
    /// let mut g = ndarray::Array2::<f32>::zeros((1, 3));
    /// let out = Cpu::new().cross_entropy_into(x.view(), Targets::Classes(y.view()), &o, g.view_mut())?;
    /// let full = Cpu::new().cross_entropy(x.view(), Targets::Classes(y.view()), &o)?;
    /// assert_eq!((out.loss, Some(g)), (full.loss, full.grad));
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    pub fn cross_entropy_into(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
        mut grad: ArrayViewMut2<f32>,
    ) -> Result<CrossEntropyOutput> {
        if !options.gradient {
            return Err(Error::InvalidInput(
                "cross_entropy_into writes the gradient: set options.gradient".into(),
            ));
        }
        let isa = self.isa()?;
        let g = out_slice(logits.dim(), &mut grad)?;
        ce::cross_entropy(isa, logits, &targets, options, Some(g))
    }
}

/// The caller's output buffer as one slice, checked against the input's shape.
fn out_slice<'a>(dim: (usize, usize), out: &'a mut ArrayViewMut2<f32>) -> Result<&'a mut [f32]> {
    if out.dim() != dim {
        let (r, c) = out.dim();
        return Err(Error::InvalidInput(format!(
            "output buffer is [{r}, {c}], the input is [{}, {}]",
            dim.0, dim.1
        )));
    }
    out.as_slice_mut().ok_or_else(|| {
        Error::InvalidInput("output buffer is not contiguous in standard (row-major) layout".into())
    })
}

fn softmax_into(
    isa: CpuIsa,
    x: ArrayView2<f32>,
    t: f32,
    mut out: ArrayViewMut2<f32>,
    log: bool,
) -> Result<()> {
    check_temperature(t)?;
    let dim = x.dim();
    let out = out_slice(dim, &mut out)?;
    softmax_slices(isa, x, t, out, log)
}

/// Softmax or log-softmax of `x` into `out` (`B·C` floats, row-major).
fn softmax_slices(
    isa: CpuIsa,
    x: ArrayView2<f32>,
    t: f32,
    out: &mut [f32],
    log: bool,
) -> Result<()> {
    let cols = x.ncols();
    let x = x.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
    let es = ExpScale::temperature(t, 1.0);
    if let Some(per) = ELEMS_PER_TASK.checked_div(cols) {
        let rows_per_task = per.max(1);
        out.par_chunks_mut(rows_per_task * cols)
            .zip(xs.par_chunks(rows_per_task * cols))
            .for_each(|(o, x)| softmax_rows(isa, x, o, cols, &es, log));
    }
    Ok(())
}

/// Compiles `$body` (which may only call `#[inline(always)]` helpers, generic over the
/// multiply-add `A`) three times: AVX-512 and AVX2 builds with fused multiply-adds, and the
/// baseline build with separate ones; the function's first argument says which runs (the
/// caller's [`CpuIsa`], whose support was checked when it was chosen). Results can differ in
/// the last bits between builds (FMA rounds once), always within the stated tolerance.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident : $ty:ty),*) $body:block) => {
        fn $name(isa: CpuIsa, $($arg: $ty),*) {
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
                match isa {
                    // SAFETY: a `CpuIsa` reaches a kernel only after `check_supported` (or
                    // detection) found the processor has its features.
                    CpuIsa::Avx512 => return unsafe { wide512($($arg),*) },
                    CpuIsa::Avx2 => return unsafe { wide($($arg),*) },
                    CpuIsa::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa; // one build on other targets
            type A = exp::Separate;
            $body
        }
    };
}

multiversion! {
    fn lse_rows(x: &[f32], out: &mut [f32], cols: usize, t: f32, es: &ExpScale) {
        for (i, o) in out.iter_mut().enumerate() {
            let row = &x[i * cols..(i + 1) * cols];
            let next = x.get((i + 1) * cols..(i + 2) * cols).unwrap_or(&[]);
            *o = row_stats::<A>(row, next, es).logsumexp(t);
        }
    }
}

multiversion! {
    fn softmax_rows(x: &[f32], out: &mut [f32], cols: usize, es: &ExpScale, log: bool) {
        for (i, o) in out.chunks_exact_mut(cols).enumerate() {
            let row = &x[i * cols..(i + 1) * cols];
            let next = x.get((i + 1) * cols..(i + 2) * cols).unwrap_or(&[]);
            softmax_row::<A>(row, next, o, es, log);
        }
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn surrogate(&self, call: &crate::Surrogate) -> Result<crate::SurrogateOutput> {
        surrogates::surrogate(self.isa()?, call)
    }

    fn cross_entropy(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput> {
        ce::cross_entropy(self.isa()?, logits, &targets, options, None)
    }

    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput> {
        let isa = self.isa()?;
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
                    let es = ExpScale::temperature(t, 1.0);
                    out.par_chunks_mut(rows_per_task)
                        .zip(xs.par_chunks(rows_per_task * cols))
                        .for_each(|(o, x)| lse_rows(isa, x, o, cols, t, &es));
                }
                RowOutput::PerRow(Array1::from_vec(out))
            }
            RowOp::Softmax | RowOp::LogSoftmax => {
                let mut out = alloc::output_vec(rows * cols);
                softmax_slices(isa, x.view(), t, &mut out, op == RowOp::LogSoftmax)?;
                RowOutput::Matrix(
                    Array2::from_shape_vec((rows, cols), out)
                        .map_err(|e| Error::InvalidInput(e.to_string()))?,
                )
            }
        })
    }
}
