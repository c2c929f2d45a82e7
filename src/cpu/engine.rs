//! The CPU engine: [`Cpu`] picks the kernel build and runs every op through the batch, the
//! cross-entropy and the surrogate kernels.

use super::batch::{self, out_slice, softmax_into};
use super::isa::CpuIsa;
use super::{ce, surrogates};
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::element::{DType, Element, MatrixView, Tensor};
use crate::error::{Error, Result};
use crate::linear_ce::pass::{LinearPass, LinearPassResult};
use crate::rows::RowOp;
use crate::shard::pass::{ShardPass, ShardResult};
use ndarray::{ArrayView2, ArrayViewMut2, Ix1};

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
    /// Matrix outputs of at least this many bytes (log-softmax; softmax and the cross-entropy
    /// gradient in f16 / bf16, and in f32 for rows of 512 columns or more, whose terms are
    /// kept in a row buffer first) are written with non-temporal stores, past the caches, by
    /// the AVX-512 build (every type) and the AVX2 build (f32 rows into f32): a matrix that
    /// large leaves them before anyone reads it, and a plain store would first read each line
    /// it writes. Smaller outputs stay in cache for the caller.
    pub const STREAM_MIN_BYTES: usize = super::arith::STREAM_MIN_BYTES;

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

    /// [`Backend::softmax`] into a caller's `[B, C]` buffer of the input's element type
    /// (standard layout), allocating
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
    pub fn softmax_into<E: Element>(
        &self,
        x: ArrayView2<E>,
        temperature: f32,
        out: ArrayViewMut2<E>,
    ) -> Result<()> {
        softmax_into(self.isa()?, x, temperature, out, false)
    }

    /// [`Backend::log_softmax`] into a caller's buffer, as [`Cpu::softmax_into`].
    pub fn log_softmax_into<E: Element>(
        &self,
        x: ArrayView2<E>,
        temperature: f32,
        out: ArrayViewMut2<E>,
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
    /// let out = Cpu::new().cross_entropy_into(x.view(), Targets::classes(y.view()), &o, g.view_mut())?;
    /// let full = Cpu::new().cross_entropy(x.view(), Targets::classes(y.view()), &o)?;
    /// assert_eq!((out.loss, Some(g)), (full.loss, full.grad));
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    pub fn cross_entropy_into<E: Element>(
        &self,
        logits: ArrayView2<E>,
        targets: Targets,
        options: &CrossEntropyOptions,
        mut grad: ArrayViewMut2<E>,
    ) -> Result<CrossEntropyOutput> {
        if !options.gradient {
            return Err(Error::InvalidInput(
                "cross_entropy_into writes the gradient: set options.gradient".into(),
            ));
        }
        let isa = self.isa()?;
        let g = out_slice(logits.dim(), &mut grad)?;
        let r = ce::cross_entropy_into(isa, logits, &targets, options, g)?;
        Ok(CrossEntropyOutput {
            loss: r.loss,
            grad: None,
            lse: r.lse,
            sums: r.sums,
        })
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn surrogate(&self, call: &crate::Surrogate) -> Result<crate::SurrogateOutput> {
        surrogates::surrogate(self.isa()?, call)
    }

    fn cross_entropy_matrix(
        &self,
        logits: MatrixView<'_>,
        targets: Targets,
        options: &CrossEntropyOptions,
        out: DType,
    ) -> Result<CrossEntropyOutput<Tensor, Ix1>> {
        ce::cross_entropy(self.isa()?, logits, &targets, options, out)
    }

    fn cross_entropy_shard(
        &self,
        logits: MatrixView<'_>,
        pass: &ShardPass<'_>,
    ) -> Result<ShardResult> {
        let (p, fi, o) = pass.fast_call();
        let (stats, grad) = ce::planned(self.isa()?, logits, p, fi, o, pass.out)?;
        Ok(pass.fast_result(&stats, grad))
    }

    fn linear_ce_pass(&self, pass: &LinearPass<'_, '_>) -> Result<LinearPassResult> {
        self.isa()?;
        super::linear::pass(self, pass)
    }

    fn row_op_matrix(
        &self,
        op: RowOp,
        x: MatrixView<'_>,
        temperature: f32,
        out: DType,
    ) -> Result<Tensor> {
        batch::row_op(self.isa()?, op, x, temperature, out)
    }
}
