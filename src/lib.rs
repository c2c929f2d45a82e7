//! # smoothmax
//!
//! Batched, numerically stable smooth-max functions — logsumexp (the smooth maximum, with
//! temperature), softmax and log-softmax — and the losses built on them, over the last axis
//! of arrays `[d0, ..., C]` of f32, f16 or bf16, on any GPU that wgpu reaches (Vulkan, Metal,
//! DX12, and lavapipe on a machine without a GPU), with a fast multi-threaded CPU path and an
//! f64 reference that checks both.
//!
//! Three backends implement one [`Backend`] trait: [`Gpu`], [`Cpu`] and [`Reference`].
//!
//! ```
//! use smoothmax::{Backend, Cpu, Reference};
//! let x = ndarray::array![[1.0f32, 2.0, 3.0], [1e30, 0.0, f32::NEG_INFINITY]];
//! let lse = Cpu::new().logsumexp(x.view(), 1.0)?;
//! let exact = Reference.logsumexp_f64(x.view(), 1.0)?;
//! assert!((lse[0] as f64 - exact[0]).abs() < 1e-6);
//! assert_eq!(lse[1], 1e30);
//! # Ok::<(), smoothmax::Error>(())
//! ```
//!
//! ## Element types and shapes
//!
//! Every op takes inputs of any shape `[d0, d1, ..., C]` (at least one axis; reduced over the
//! last) as `ArrayView<E, D>` for `E` = `f32`, [`half::f16`] or [`half::bf16`]: the leading
//! axes are merged into `B = d0·d1·…` rows (a view when their strides allow, a row-major copy
//! otherwise), and results come back in the leading shape (per-row values) or the input's
//! shape (matrices). Class targets have the leading shape, probability targets the input's.
//! The typed methods ([`Backend::softmax`], [`Backend::cross_entropy`], ...) return matrices in
//! the input's element type, as PyTorch does; the type-erased ones
//! ([`Backend::row_op_tensor`], [`Backend::cross_entropy_tensor`],
//! [`Backend::surrogate_tensor`], [`Backend::surrogate_matrix`]) take the output type as an
//! argument ([`DType`]). The surrogates take scores of any shape through
//! [`Backend::surrogate_tensor`] (labels of the scores' shape, weights broadcast to it). Per-row
//! values (logsumexp, per-row losses, surrogate values) and reduced losses are f32 in every
//! case.
//!
//! ```
//! use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
//! use smoothmax::half::bf16;
//! let logits = ndarray::Array3::from_elem((2, 4, 32), bf16::from_f32(0.5)); // [batch, seq, vocab]
//! let y = ndarray::Array2::<i64>::zeros((2, 4));                              // [batch, seq]
//! let o = CrossEntropyOptions { gradient: true, ..Default::default() };
//! let out = Cpu::new().cross_entropy(logits.view(), Targets::classes(y.view()), &o)?;
//! let g: ndarray::Array3<bf16> = out.grad.unwrap();                           // bf16, [2, 4, 32]
//! assert!((out.loss.scalar().unwrap() - 32f32.ln()).abs() < 1e-5);
//! assert_eq!(g[[1, 3, 5]], bf16::from_f32(1.0 / 32.0 / 8.0));
//! # Ok::<(), smoothmax::Error>(())
//! ```
//!
//! **Accuracy per element type.** Half inputs are widened exactly to f32 (every f16 and bf16
//! value is an f32 value) and everything is accumulated as for f32 inputs: in f32 on the GPU
//! and the CPU, in f64 in the reference. So every f32 result (statistics, per-row values,
//! losses, f32 outputs) meets the f32 bound below against the f64 reference computed from the
//! widened inputs. A half output is the f32 result rounded to the type — round-to-nearest-even,
//! a value past the type's range the infinity of its sign (f16's largest finite value is
//! 65504: a finite f32 result beyond `65520` is `±inf`), NaN kept NaN, with the same integer
//! bit conversion on every backend ([`bf16_bits`]; the GPU kernels in WGSL, no `SHADER_F16`
//! needed) — so it is within the f32 bound plus one unit in the last place of its type
//! (`2⁻¹⁰` relative for f16, `2⁻⁷` for bf16; [`DType::epsilon`]). tests/dtypes.rs checks every
//! op, type, layout and backend against it; tools/dtype_check.py checks the CLI against
//! PyTorch in float64.
//!
//! On the GPU, half matrices live in `u32` words, two elements per word; rows may start in
//! the middle of a word (odd column counts, offsets and row strides of device matrices), and
//! half outputs are written where they lie, a word shared by two rows through atomic
//! half-word updates. The CPU widens each row into an f32 buffer in cache inside the row
//! kernels (F16C through the `half` crate for f16, shifts for bf16) and narrows the output row
//! back. The surrogates read f32: half scores are widened first, host data on the host
//! ([`Backend::surrogate_matrix`]), device matrices on the device ([`Gpu::convert`], which any
//! application can call too).
//!
//! ## The numeric contract
//!
//! The input rows are `[B, C]` (any `B ≥ 0`, `C ≥ 0`, any memory layout). Temperature
//! `T` must be finite and `> 0` ([`Error::BadTemperature`] otherwise):
//! `logsumexp_T(x) = T · ln Σ exp(x/T)`, `softmax_T(x) = softmax(x/T)`,
//! `log_softmax_T(x) = log_softmax(x/T)`.
//!
//! The GPU and CPU accumulate in f32 with the online (max, sum) merge (Milakov & Gimelshein
//! 2018); the reference in f64. With `m` the row max of the raw `x` (`max(x/T) = max(x)/T`)
//! and `s = Σ exp((x − m)/T)`: `logsumexp_T = m + T·ln s`, `softmax = exp((x − m)/T) / s`,
//! `log_softmax = (x − m)/T − ln s`. Forming `x − m` before dividing by `T` keeps it exact for
//! nearby values (`x/T` in f32 would lose `ε·|x/T|` first), and log-softmax never goes through
//! `x/T − lse`, so a common shift of `+1e7` loses nothing. Every accepted temperature works,
//! from the smallest subnormal (`1/T` overflows f32) to `f32::MAX`, on every finite row, also
//! one spanning more than `f32::MAX` (`[3e38, −3e38]`): the exponent is formed so that it
//! overflows only where the exact one does (`scale` module docs, in the source).
//!
//! Non-finite inputs give PyTorch's results on every backend:
//!
//! | row                          | logsumexp | softmax          | log_softmax        |
//! |------------------------------|-----------|------------------|--------------------|
//! | `C = 0` (empty row)          | −inf      | (empty)          | (empty)            |
//! | all −inf                     | −inf      | NaN everywhere   | NaN everywhere     |
//! | some −inf, rest finite       | finite    | exactly 0 there  | −inf there         |
//! | any +inf, no NaN             | +inf      | NaN everywhere   | NaN everywhere     |
//! | any NaN                      | NaN       | NaN everywhere   | NaN everywhere     |
//! | huge finite `(1e30, 0)`      | 1e30      | `[1, 0]`         | `[0, −1e30]`       |
//!
//! ## Accuracy
//!
//! Against the f64 reference, every finite f32 result `a` of a row of length `C` satisfies
//! `|a − r| ≤ tol · (1 + |r|)` with `tol = ε · (32 + 4·√C)`, `ε = 2⁻²³`; a logsumexp at
//! temperature `T` satisfies `|a − r| ≤ tol · (T + |r|)`, since `lse_T(x) = T·lse(x/T)` is `T`
//! times a value computed at unit scale (`m + T·ln s`: an error `δ` in `s` moves it by `T·δ`,
//! so at `T = 20` a sum exact to 16 ε would miss a `1 + |r|` bound). The `4·√C·ε` term is
//! the probabilistic bound on the relative error of an f32 sum of `C` positive terms (Higham
//! & Mary 2019, with a safety factor of 4), and `32·ε` covers `exp`/`ln` (Vulkan allows
//! `3 + 2·|x|` ulp for `exp`) and the final rounding. NaN and ±inf appear exactly where the
//! reference has them.
//!
//! Results are also exact to `2⁻¹²⁶` (the smallest normal f32) in absolute terms, whatever
//! their relative accuracy: subnormal values may be flushed to zero (Vulkan allows it, and
//! lavapipe does; the CPU's vectorized `exp` flushes results below it too). Where the exact
//! result is beyond f32's range, the result is the infinity of its sign. Results made of
//! several terms (a gradient, a weighted loss) are exact relative to the sum of the absolute
//! values of those terms; tests/parameter_sweep*.rs derive each op's, and sweep every numeric
//! parameter from the smallest subnormal to `f32::MAX` on every backend.
//!
//! The probabilistic bound assumes rounding errors that do not line up; they do when a
//! dominant term is followed by many equal terms near half an ulp of it, and a running f32 sum
//! then loses half an ulp per addition. So every long sum is blocked, which keeps the worst
//! case inside the same tolerance: on the CPU each block of 512 floats is summed in fresh f32
//! lanes (at most 64 additions per lane) and the block sums in f64; on the GPU an invocation
//! sums 32 steps of its loop into fresh statistics before merging them into its running ones
//! (at most 32 + 2048/32 additions per running sum, then a tree). tests/summation.rs holds
//! such inputs for every op.
//!
//! ## Cross-entropy
//!
//! [`Backend::cross_entropy`] is `torch.nn.functional.cross_entropy`: class targets (i64 or
//! i32) or probability targets, per-class `weight`, `ignore_index` (default −100, any integer,
//! a valid class included), `label_smoothing` in `[0, 1]`, `reduction` none | mean | sum (mean
//! divides by `Σ w[y]` over non-ignored rows for class targets, by `B` for probabilities; an
//! empty or all-ignored batch gives NaN for mean, 0 for sum). Off by default: `z_loss` (adds
//! `z·lse²` per non-ignored row; mean divides it by the non-ignored row count) and `softcap`
//! (logits become `c·tanh(x/c)` first; the gradient carries `1 − tanh²`). It returns the loss,
//! the gradient `d loss / d logits` times the upstream gradient (finite; for reduction none,
//! the gradient of `Σ upstream_i·loss_i`), and the per-row logsumexp of the logits used. The
//! fast backends return per-row statistics from their kernels and finish each row's loss in
//! f64, and normalize weights, targets and gradient coefficients so that no option value (a
//! weight or z-loss up to `f32::MAX`, label smoothing down to a subnormal) overflows an f32
//! intermediate where the result does not (`cross_entropy` module source, `fast.rs`). Under
//! softcap the capped logits `c·tanh(x/c)` are f32 values, each exact to a few ulp of itself:
//! results then carry an extra error of `ε·max|c·tanh(x/c)|` times the loss's weights, as any
//! f32 evaluation of them must. Non-finite logits give PyTorch's values: a −inf target logit
//! gives loss +inf and a finite gradient (logits `[−inf, 0]`, target 0: gradient `[−1, 1]`); a
//! row with NaN, +inf or no finite logit gives NaN. One deliberate difference: ignored rows get
//! gradient 0 even when their logits are NaN (PyTorch's log-softmax backward would put NaN
//! there), so that changing the logits of ignored rows changes nothing. Bad input ([`cross_entropy::validate`]) is an error naming
//! the row, value or limit, checked before any GPU work. Formulas: [`cross_entropy`].
//!
//! ## Batches, shards and processes
//!
//! Each cross-entropy output (and each mean or sum surrogate) carries [`LossSums`], the
//! loss's numerator and denominator in f64: batches add up to the exact loss of their
//! concatenation. [`shard`] splits a vocabulary: per-row statistics ([`shard::RowPartial`],
//! 48 bytes) merged by an associative operation, each shard's gradient slice from the merged
//! statistics, on any backend or several at once; the `mpi` feature carries the statistics
//! and sums across processes in one all-reduce each.
//!
//! ## Surrogates and margin losses
//!
//! [`Backend::surrogate`] (and its named wrappers such as [`Backend::boltzmann_max`],
//! [`Backend::soft_argmax`], [`Backend::binary_loss`]) runs the smooth surrogates built on the
//! smooth max — Boltzmann operator, pairwise smooth max, soft-argmax, smooth accuracy, binary
//! and macro smooth F1, the smooth absolute value and the smoothed floor — and the margin losses — logistic (PyTorch's
//! `binary_cross_entropy_with_logits`), hinge, squared hinge, exponential, squared, and
//! PyTorch's `MultiMarginLoss` — each with its gradient. Formulas, limits, bounds and edge
//! cases: [`surrogates`].
//!
//! ## GPU engine
//!
//! [`Gpu::new`] picks an adapter (honoring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`) and opens
//! it with its real limits. Shapes of any size work: rows are chunked to the storage-binding
//! limit, long rows are split over workgroups, grids are folded past 65535 workgroups.
//! Pipelines are compiled once and cached; buffers are pooled (`SMOOTHMAX_NO_POOL=1`
//! disables reuse for debugging). Failures come back as [`Error`], never as a panic.

#![warn(missing_docs)]

mod backend;
#[cfg(feature = "cli")]
pub mod bench;
pub mod cpu;
pub mod cross_entropy;
mod element;
mod env;
mod error;
pub mod gpu;
pub mod linear_ce;
mod reduction;
mod reference;
mod rows;
mod scale;
mod shape;
pub mod shard;
pub mod surrogates;
mod tensor;

pub use backend::Backend;
pub use cpu::{Cpu, CpuIsa};
pub use cross_entropy::reference::ReferenceCrossEntropy;
pub use cross_entropy::{
    CrossEntropyOptions, CrossEntropyOutput, Loss, LossSums, Reduction, Targets, Upstream,
};
pub use element::{bf16_bits, DType, Element, MatrixView, Tensor, TensorView};
pub use error::{Error, Result};
pub use gpu::{DeviceCrossEntropy, Gpu, GpuCounters, GpuMatrix};
/// The `half` crate whose `f16` and `bf16` smoothmax reads and writes.
pub use half;
pub use linear_ce::LinearCrossEntropyOutput;
pub use reference::Reference;
pub use rows::{check_temperature, RowOp, RowOutput};
pub use shape::Shape;
/// The wgpu this crate is built against: use it to create devices and encoders for
/// [`Gpu::from_device`] and the recording API, so the versions always match.
pub use wgpu;

pub use surrogates::{
    BinaryLoss, BinaryOptions, ElementSmoothing, MultiMarginOptions, PairwiseForm, Surrogate,
    SurrogateOutput, Value,
};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
