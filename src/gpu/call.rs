//! One call design for every GPU op. An op is a value ([`Rows`], [`CrossEntropy`],
//! [`Surrogate`]) whose matrix inputs are host views or device matrices ([`GpuInput`]);
//! [`Gpu::call`] takes it, the placement of its outputs is chosen by
//! [`Call::on_device`] / [`Call::in_place`] (host arrays by default), and the execution by the
//! last method: [`run`](Call::run) (blocking), [`run_async`](Call::run_async) (awaits the
//! readback without blocking the executor thread) or [`record`](Call::record) (into the
//! caller's encoder; the returned [`Recorded`] is finished after the encoder was submitted).
//! Every combination works for every op, with one exception the types state: in place is
//! cross-entropy on device logits only. (The surrogates' batch reductions, the F1 scores'
//! included, are made on the device: a recorded call's scalars are read in `finish`.)
//!
//! ```
//! # let Ok(gpu) = smoothmax::Gpu::new() else { return Ok(()) };
//! use smoothmax::gpu::Rows;
//! use smoothmax::RowOp;
//! let host = ndarray::array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]];
//! // Host in, host out, blocking:
//! let p = gpu.call(Rows { op: RowOp::Softmax, x: host.view(), temperature: 1.0 }).run()?;
//! // Device in, device out: a chain that never touches the host until the download.
//! let x = gpu.upload(host.view())?;
//! let logp = gpu.call(Rows { op: RowOp::LogSoftmax, x: &x, temperature: 1.0 }).on_device().run()?;
//! let lse = gpu.call(Rows { op: RowOp::LogSumExp, x: &logp, temperature: 1.0 }).on_device().run()?;
//! assert!(gpu.download(&lse)?.iter().all(|v| v.abs() < 1e-6)); // [2, 1], both ≈ 0
//! # let _ = p;
//! # Ok::<(), smoothmax::Error>(())
//! ```

use super::ce_call::{self as ce, CeStaged, DeviceCrossEntropy};
use super::io::{GpuInput, Out, Place};
use super::launch::Mode;
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::Wait;
use super::rows;
use super::surrogates::{self, DeviceSurrogateOutput, Raw};
use super::Gpu;
use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::element::DType;
use crate::error::Result;
use crate::rows::{RowOp, RowOutput};
use crate::surrogates::{Surrogate, SurrogateOutput};
use std::marker::PhantomData;

/// A row op (logsumexp, softmax, log-softmax) of `x` at a temperature.
#[derive(Clone, Copy, Debug)]
pub struct Rows<M> {
    /// Which op.
    pub op: RowOp,
    /// The input, `[B, C]`.
    pub x: M,
    /// `T > 0`.
    pub temperature: f32,
}

/// Cross-entropy of `logits` against `targets`, with PyTorch's options and more.
#[derive(Clone, Debug)]
pub struct CrossEntropy<'t, 'o, M> {
    /// The logits, `[B, C]`.
    pub logits: M,
    /// Class indices or probabilities.
    pub targets: Targets<'t>,
    /// Every option (the gradient is computed when `options.gradient`).
    pub options: CrossEntropyOptions<'o>,
}

/// Outputs as host arrays (the default placement).
#[derive(Clone, Copy, Debug)]
pub struct Host;
/// Outputs left on the device as [`GpuMatrix`]es (small ones, such as a loss, read back).
#[derive(Clone, Copy, Debug)]
pub struct Device;
/// Cross-entropy's gradient written over the device logits (Liger-Kernel's in-place trick: no
/// second `[B, C]` buffer).
#[derive(Clone, Copy, Debug)]
pub struct InPlace;

/// An op about to run on a [`Gpu`], with its outputs' placement `P`.
#[must_use = "a call does nothing until run, run_async or record"]
pub struct Call<'g, O, P = Host> {
    gpu: &'g Gpu,
    op: O,
    /// A caller's matrix the output goes into (row ops on the device).
    into: Option<GpuMatrix>,
    /// The element type of the matrix output (softmax, log-softmax, the cross-entropy
    /// gradient); `None`: the input's.
    dtype: Option<DType>,
    place: PhantomData<P>,
}

/// An op recorded into an encoder: its scratch buffers, and what its outputs are finished
/// from. Keep it until the encoder has been submitted (dropping it earlier lets another call
/// reuse the scratch before this work runs); then [`finish`](Recorded::finish) reads back
/// what must come back (a loss, per-row values) and returns the op's output.
#[must_use = "keep this until the encoder is submitted, then finish it"]
pub struct Recorded<'g, S> {
    gpu: &'g Gpu,
    staged: S,
    _keep: Vec<PooledBuffer>,
}

impl<S> std::fmt::Debug for Recorded<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("scratch_buffers", &self._keep.len())
            .finish()
    }
}

impl Gpu {
    /// Starts a call of `op` (see [`Call`] for the modes).
    pub fn call<O>(&self, op: O) -> Call<'_, O, Host> {
        Call {
            gpu: self,
            op,
            into: None,
            dtype: None,
            place: PhantomData,
        }
    }
}

impl<'g, O> Call<'g, O, Host> {
    /// Leave the outputs on the device.
    pub fn on_device(self) -> Call<'g, O, Device> {
        Call {
            gpu: self.gpu,
            op: self.op,
            into: None,
            dtype: self.dtype,
            place: PhantomData,
        }
    }
}

impl<'g, M> Call<'g, Rows<M>, Host> {
    /// The element type of the softmax / log-softmax output (default: the input's; host
    /// results come back as f32 values of that type). A matrix given to `on_device_into` has
    /// its own type, which wins.
    pub fn output_dtype(mut self, dtype: DType) -> Self {
        self.dtype = Some(dtype);
        self
    }
}

impl<'g, 't, 'o, M> Call<'g, CrossEntropy<'t, 'o, M>, Host> {
    /// The element type of the gradient (default: the logits'; host results come back as f32
    /// values of that type). An in-place gradient has the logits' type.
    pub fn output_dtype(mut self, dtype: DType) -> Self {
        self.dtype = Some(dtype);
        self
    }
}

impl<'g, M> Call<'g, Rows<M>, Host> {
    /// Write the output into the caller's device matrix `out` (`[B, 1]` for logsumexp, else
    /// `[B, C]`; any row stride), which the call then returns.
    pub fn on_device_into(self, out: &GpuMatrix) -> Call<'g, Rows<M>, Device> {
        Call {
            gpu: self.gpu,
            op: self.op,
            into: Some(out.clone()),
            dtype: self.dtype,
            place: PhantomData,
        }
    }
}

impl<'g, 't, 'o, 'm> Call<'g, CrossEntropy<'t, 'o, &'m GpuMatrix>, Host> {
    /// Write the gradient over the (device) logits; needs `options.gradient`. Afterwards the
    /// logits' matrix holds the gradient, and the output's `grad` is that matrix.
    pub fn in_place(self) -> Call<'g, CrossEntropy<'t, 'o, &'m GpuMatrix>, InPlace> {
        Call {
            gpu: self.gpu,
            op: self.op,
            into: None,
            dtype: None,
            place: PhantomData,
        }
    }
}

/// A recorded row op: its output and what it is finished from (see [`Recorded`]).
pub struct RowsStaged {
    op: RowOp,
    rows: usize,
    out: Out,
}

/// A recorded surrogate: what its kernels leave and what it is finished from (see
/// [`Recorded`]).
pub struct SurrogateStaged {
    raw: Raw,
    rows: usize,
}

/// Generates `run`, `run_async` and `record` for one (op, placement): `$stage` runs or records
/// the op's kernels by `mode`, `$finish` turns what they left into the output.
macro_rules! modes {
    (
        impl[$($g:tt)*] $op:ty, $place:ty => $out:ty, $staged:ty;
        stage($s:ident, $mode:ident, $keep:ident) $stage:block
        finish($st:ident, $gpu:ident, $wait:ident) $finish:block
    ) => {
        impl<'g, $($g)*> Call<'g, $op, $place> {
            async fn stage_with<'e>(
                &self,
                $mode: Mode<'e>,
                $keep: &mut Vec<PooledBuffer>,
            ) -> Result<$staged> {
                let $s = self;
                $stage
            }

            /// Runs the op, blocking until its outputs are ready.
            pub fn run(self) -> Result<$out> {
                pollster::block_on(self.go(Wait::Inline))
            }

            /// Runs the op; the readback is awaited through `map_async` while a helper
            /// thread polls the device, so an executor thread is never blocked.
            pub async fn run_async(self) -> Result<$out> {
                self.go(Wait::Thread).await
            }

            async fn go(self, wait: Wait) -> Result<$out> {
                let mut keep = Vec::new();
                let staged = self.stage_with(Mode::Stream(wait), &mut keep).await?;
                drop(keep);
                Recorded::<$staged>::finish_with(self.gpu, staged, wait).await
            }

            /// Records the op into `encoder` without submitting; finish the returned
            /// [`Recorded`] after the encoder was submitted. On an error, work of the chunks
            /// before the failing one may already be in `encoder`: drop it.
            pub fn record(
                self,
                encoder: &mut wgpu::CommandEncoder,
            ) -> Result<Recorded<'g, $staged>> {
                let mut keep = Vec::new();
                let staged =
                    pollster::block_on(self.stage_with(Mode::Record(encoder), &mut keep))?;
                Ok(Recorded {
                    gpu: self.gpu,
                    staged,
                    _keep: keep,
                })
            }
        }

        impl<'g> Recorded<'g, $staged> {
            async fn finish_with($gpu: &Gpu, $st: $staged, $wait: Wait) -> Result<$out> {
                $finish
            }
        }
    };
}

/// `finish` and `finish_async` for one staged type.
macro_rules! finishes {
    ($staged:ty => $out:ty) => {
        impl Recorded<'_, $staged> {
            /// The op's output (call after the encoder was submitted), blocking.
            pub fn finish(self) -> Result<$out> {
                pollster::block_on(Self::finish_with(self.gpu, self.staged, Wait::Inline))
            }

            /// [`Recorded::finish`], awaiting the readback without blocking the executor.
            pub async fn finish_async(self) -> Result<$out> {
                Self::finish_with(self.gpu, self.staged, Wait::Thread).await
            }
        }
    };
}

/// A recorded call whose outputs stay on the device (the same staging as the host
/// placement, a different finish).
pub struct OnDevice<S>(S);

modes! {
    impl[M: GpuInput] Rows<M>, Host => RowOutput, RowsStaged;
    stage(s, mode, keep) {
        let x = s.op.x.matrix();
        let n = x.dim().0;
        let out = rows::stage(&s.gpu.ctx, s.op.op, x, s.op.temperature, Place::Host, None, s.dtype, mode, keep).await?;
        Ok(RowsStaged { op: s.op.op, rows: n, out })
    }
    finish(st, gpu, wait) { rows::finish_host(gpu, st.op, st.out, st.rows, wait).await }
}
finishes!(RowsStaged => RowOutput);

modes! {
    impl[M: GpuInput] Rows<M>, Device => GpuMatrix, OnDevice<RowsStaged>;
    stage(s, mode, keep) {
        let x = s.op.x.matrix();
        let n = x.dim().0;
        let into = s.into.as_ref();
        let out = rows::stage(&s.gpu.ctx, s.op.op, x, s.op.temperature, Place::Device, into, s.dtype, mode, keep).await?;
        Ok(OnDevice(RowsStaged { op: s.op.op, rows: n, out }))
    }
    finish(st, gpu, wait) {
        let _ = (gpu, wait);
        st.0.out.into_device().ok_or_else(|| crate::Error::InvalidInput("the output was left on the host".into()))
    }
}
finishes!(OnDevice<RowsStaged> => GpuMatrix);

modes! {
    impl['t, 'o, M: GpuInput] CrossEntropy<'t, 'o, M>, Host => CrossEntropyOutput, CeStaged;
    stage(s, mode, keep) {
        let o = &s.op;
        ce::stage(&s.gpu.ctx, o.logits.matrix(), &o.targets, &o.options, Place::Host, false, s.dtype, mode, keep).await
    }
    finish(st, gpu, wait) { st.finish_host(gpu, wait).await }
}
finishes!(CeStaged => CrossEntropyOutput);

modes! {
    impl['t, 'o, M: GpuInput] CrossEntropy<'t, 'o, M>, Device => DeviceCrossEntropy, OnDevice<CeStaged>;
    stage(s, mode, keep) {
        let o = &s.op;
        ce::stage(&s.gpu.ctx, o.logits.matrix(), &o.targets, &o.options, Place::Device, false, s.dtype, mode, keep)
            .await
            .map(OnDevice)
    }
    finish(st, gpu, wait) { st.0.finish_device(gpu, wait).await }
}
finishes!(OnDevice<CeStaged> => DeviceCrossEntropy);

/// A recorded in-place cross-entropy.
pub struct OverLogits(CeStaged);

modes! {
    impl['t, 'o, 'm] CrossEntropy<'t, 'o, &'m GpuMatrix>, InPlace => DeviceCrossEntropy, OverLogits;
    stage(s, mode, keep) {
        let o = &s.op;
        ce::stage(&s.gpu.ctx, o.logits.matrix(), &o.targets, &o.options, Place::Device, true, None, mode, keep)
            .await
            .map(OverLogits)
    }
    finish(st, gpu, wait) { st.0.finish_device(gpu, wait).await }
}
finishes!(OverLogits => DeviceCrossEntropy);

modes! {
    impl['a, M: GpuInput] Surrogate<'a, M>, Host => SurrogateOutput, SurrogateStaged;
    stage(s, mode, keep) {
        let raw = surrogates::surrogate(&s.gpu.ctx, &s.op, Place::Host, mode, keep).await?;
        Ok(SurrogateStaged { raw, rows: s.op.shape().0 })
    }
    finish(st, gpu, wait) { surrogates::finish_host(gpu, st.raw, st.rows, wait).await }
}
finishes!(SurrogateStaged => SurrogateOutput);

modes! {
    impl['a, M: GpuInput] Surrogate<'a, M>, Device => DeviceSurrogateOutput, OnDevice<SurrogateStaged>;
    stage(s, mode, keep) {
        let raw = surrogates::surrogate(&s.gpu.ctx, &s.op, Place::Device, mode, keep).await?;
        Ok(OnDevice(SurrogateStaged { raw, rows: s.op.shape().0 }))
    }
    finish(st, gpu, wait) { surrogates::finish_device(gpu, st.0.raw, st.0.rows, wait).await }
}
finishes!(OnDevice<SurrogateStaged> => DeviceSurrogateOutput);
