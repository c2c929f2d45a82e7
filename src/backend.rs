//! The interface every backend implements: the row ops, cross-entropy and the surrogates.
//!
//! A backend implements three type-erased cores on `[B, C]` rows of any element type
//! ([`Backend::row_op_matrix`], [`Backend::cross_entropy_matrix`], [`Backend::surrogate`]);
//! everything else is provided here once: inputs of any shape `[d0, ..., C]` (merged into
//! rows by `crate::tensor`) and the typed methods that take `ArrayView<E, D>` for
//! `E` = f32, f16 or bf16 and give the results back in the input's type and shape.

use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Loss, Targets};
use crate::element::{DType, Element, MatrixView, Tensor, TensorView};
use crate::error::{Error, Result};
use crate::linear_ce::pass::{LinearCrossEntropyOutput, LinearPass, LinearPassResult};
use crate::rows::{RowOp, RowOutput};
use crate::shard::pass::{ShardPass, ShardResult};
use crate::surrogates::{
    BinaryLoss, BinaryOptions, MultiMarginOptions, PairwiseForm, Surrogate, SurrogateOutput,
};
use crate::tensor::{out_dtype, Rows};
use ndarray::{Array, ArrayView, ArrayView1, ArrayView2, Dimension, Ix1, IxDyn};

/// One interface, three implementations ([`crate::Gpu`], [`crate::Cpu`],
/// [`crate::Reference`]), so any op can run on any backend and results can be compared.
///
/// ```
/// use smoothmax::{Backend, Cpu, Reference};
/// let x = ndarray::array![[1.0f32, 2.0, 3.0], [0.0, 0.0, f32::NEG_INFINITY]];
/// let fast = Cpu::new().softmax(x.view(), 1.0).unwrap();
/// let exact = Reference.softmax(x.view(), 1.0).unwrap();
/// assert!((fast[[0, 2]] - exact[[0, 2]]).abs() < 1e-6);
/// assert_eq!(fast[[1, 2]], 0.0); // exp(−inf) is exactly 0
/// ```
pub trait Backend {
    /// A short name for messages and reports (`gpu`, `cpu`, `reference`).
    fn name(&self) -> &'static str;

    /// Runs a row op on `[B, C]` rows of any element type: logsumexp gives `[B]` in f32, the
    /// other ops `[B, C]` in `out`. Every other row-op method goes through this one.
    fn row_op_matrix(
        &self,
        op: RowOp,
        x: MatrixView<'_>,
        temperature: f32,
        out: DType,
    ) -> Result<Tensor>;

    /// A row op on an input of any shape `[d0, ..., C]` and element type, reduced over the
    /// last axis: logsumexp gives `[d0, ...]` in f32, the other ops `[d0, ..., C]` in `out`
    /// (`None`: the input's type).
    fn row_op_tensor(
        &self,
        op: RowOp,
        x: TensorView<'_>,
        temperature: f32,
        out: Option<DType>,
    ) -> Result<Tensor> {
        let rows = Rows::of(&x)?;
        let r = self.row_op_matrix(op, rows.view(), temperature, out_dtype(out, x.dtype()))?;
        let cols = x.shape().last().copied().unwrap_or(0);
        match op {
            RowOp::LogSumExp => r.into_shape(&rows.shape_with(&[])),
            _ => r.into_shape(&rows.shape_with(&[cols])),
        }
    }

    /// Runs one row op on a `[B, C]` f32 matrix.
    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput> {
        let r = self.row_op_matrix(op, x.into(), temperature, DType::F32)?;
        Ok(match op {
            RowOp::LogSumExp => RowOutput::PerRow(r.into_typed()?),
            _ => RowOutput::Matrix(r.into_typed()?),
        })
    }

    /// `T · ln Σ_j exp(x_j / T)` over the last axis: `[d0, ..., C] → [d0, ...]`, in f32 for
    /// every input type.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu};
    /// use smoothmax::half::bf16;
    /// let x = ndarray::Array3::from_elem((2, 3, 4), bf16::from_f32(1.5));
    /// let lse = Cpu::new().logsumexp(x.view(), 1.0)?;   // [2, 3], f32
    /// assert!((lse[[1, 2]] - (1.5 + 4f32.ln())).abs() < 1e-6);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn logsumexp<E: Element, D: Dimension>(
        &self,
        x: ArrayView<E, D>,
        temperature: f32,
    ) -> Result<Array<f32, D::Smaller>>
    where
        Self: Sized,
    {
        self.row_op_tensor(RowOp::LogSumExp, x.into(), temperature, None)?
            .into_typed()
    }

    /// Softmax of `x / T` over the last axis, in the input's shape and element type.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu};
    /// use smoothmax::half::f16;
    /// let x = ndarray::array![[f16::from_f32(0.0), f16::from_f32(0.0)]];
    /// let p = Cpu::new().softmax(x.view(), 1.0)?;        // f16, correctly rounded
    /// assert_eq!(p[[0, 1]], f16::from_f32(0.5));
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn softmax<E: Element, D: Dimension>(
        &self,
        x: ArrayView<E, D>,
        temperature: f32,
    ) -> Result<Array<E, D>>
    where
        Self: Sized,
    {
        self.row_op_tensor(RowOp::Softmax, x.into(), temperature, None)?
            .into_typed()
    }

    /// Log-softmax of `x / T` over the last axis, in the input's shape and element type.
    fn log_softmax<E: Element, D: Dimension>(
        &self,
        x: ArrayView<E, D>,
        temperature: f32,
    ) -> Result<Array<E, D>>
    where
        Self: Sized,
    {
        self.row_op_tensor(RowOp::LogSoftmax, x.into(), temperature, None)?
            .into_typed()
    }

    /// Softmax cross-entropy of `[B, C]` logits of any element type against targets for those
    /// rows (class targets `[B]`, probabilities `[B, C]`; see [`Backend::cross_entropy`]); the
    /// gradient in `out`. Every other cross-entropy method goes through this one.
    fn cross_entropy_matrix(
        &self,
        logits: MatrixView<'_>,
        targets: Targets,
        options: &CrossEntropyOptions,
        out: DType,
    ) -> Result<CrossEntropyOutput<Tensor, Ix1>>;

    /// One pass of a vocabulary-sharded cross-entropy over a shard's `[B, C_k]` logits: the
    /// engine half of [`crate::shard::ShardedCrossEntropy`], which prepares the pass and reads
    /// the result (call that, not this). The default runs the f64 reference pass, so a
    /// backend implemented outside the crate shards correctly, if slowly.
    fn cross_entropy_shard(
        &self,
        logits: MatrixView<'_>,
        pass: &ShardPass<'_>,
    ) -> Result<ShardResult> {
        crate::shard::exact::run(pass, logits)
    }

    /// One pass of a fused linear cross-entropy over one vocabulary shard's weights: the
    /// engine half of [`Backend::linear_cross_entropy`] and
    /// [`crate::shard::ShardedLinearCrossEntropy`] (call those, not this). The default runs the
    /// f64 reference, which materializes the shard's logits: correct for a backend implemented
    /// outside the crate, but not memory-bounded.
    fn linear_ce_pass(&self, pass: &LinearPass<'_, '_>) -> Result<LinearPassResult> {
        crate::linear_ce::reference::pass(pass)
    }

    /// Fused linear cross-entropy: `cross_entropy(hidden·weightᵀ + bias, targets)` with every
    /// option of [`Backend::cross_entropy`], without the `[N, V]` logits in memory (see
    /// [`crate::linear_ce`]). `hidden` is `[d0, ..., D]` (f32, f16 or bf16), `weight` `[V, D]`
    /// (any of the three), `bias` `[V]`; targets as for logits `[d0, ..., V]`. With
    /// `options.gradient`, the gradients with respect to the hidden states (their shape and
    /// type), the weights (their type) and the bias.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
    /// let h = ndarray::array![[1.0f32, 0.5], [-1.0, 2.0], [0.0, 0.0]];   // [N = 3, D = 2]
    /// let w = ndarray::array![[0.5f32, 1.0], [2.0, -1.0], [0.0, 0.25], [1.0, 1.0]]; // [V = 4, D]
    /// let y = ndarray::array![3i64, 0, -100];
    /// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
    /// let cpu = Cpu::new();
    /// let fused = cpu.linear_cross_entropy(h.view().into(), w.view().into(), None,
    ///                                      Targets::classes(y.view()), &o)?;
    /// // The same as the cross-entropy of the materialized logits h·wᵀ:
    /// let logits = h.dot(&w.t());
    /// let plain = cpu.cross_entropy(logits.view(), Targets::classes(y.view()), &o)?;
    /// assert!((fused.loss.scalar().unwrap() - plain.loss.scalar().unwrap()).abs() < 1e-6);
    /// // and d loss / d h = (d loss / d logits)·w:
    /// let dh = plain.grad.unwrap().dot(&w);
    /// let fused_dh = fused.grad_hidden.unwrap().into_typed::<f32, ndarray::Ix2>()?;
    /// assert!((fused_dh[[1, 0]] - dh[[1, 0]]).abs() < 1e-6);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn linear_cross_entropy(
        &self,
        hidden: TensorView<'_>,
        weight: MatrixView<'_>,
        bias: Option<ArrayView1<'_, f32>>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<LinearCrossEntropyOutput> {
        let run = |p: &LinearPass<'_, '_>| self.linear_ce_pass(p);
        crate::linear_ce::call::linear_cross_entropy(
            &run, hidden, weight, bias, targets, options, None,
        )
    }

    /// [`Backend::cross_entropy`] on logits of any shape `[d0, ..., C]` and element type: the
    /// per-row loss and logsumexp in the leading shape, the gradient in the logits' shape and
    /// in `out` (`None`: the logits' type).
    fn cross_entropy_tensor(
        &self,
        logits: TensorView<'_>,
        targets: Targets,
        options: &CrossEntropyOptions,
        out: Option<DType>,
    ) -> Result<CrossEntropyOutput<Tensor, IxDyn>> {
        let rows = Rows::of(&logits)?;
        let cols = logits.shape().last().copied().unwrap_or(0);
        targets.check_shape(&rows.leading, cols)?;
        let flat = targets.flat(rows.leading.iter().product(), cols)?;
        let dtype = out_dtype(out, logits.dtype());
        let r = self.cross_entropy_matrix(rows.view(), flat.view(), options, dtype)?;
        Ok(CrossEntropyOutput {
            loss: match r.loss {
                Loss::Scalar(v) => Loss::Scalar(v),
                Loss::PerRow(v) => Loss::PerRow(rows.per_row(v)?),
            },
            grad: r
                .grad
                .map(|g| g.into_shape(&rows.shape_with(&[cols])))
                .transpose()?,
            lse: rows.per_row(r.lse)?,
            sums: r.sums,
        })
    }

    /// Softmax cross-entropy of `logits` `[d0, ..., C]` (f32, f16 or bf16) against `targets`
    /// (class indices of shape `[d0, ...]` or probabilities of the logits' shape), with
    /// PyTorch's options plus z-loss and softcap (see [`crate::cross_entropy`]): the loss, the
    /// gradient with respect to the logits (in their type) when `options.gradient` is set, and
    /// the per-row logsumexp.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
    /// let logits = ndarray::array![[2.0f32, 0.5, -1.0], [0.0, 0.0, 0.0]];
    /// let y = ndarray::array![0i64, 2];
    /// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
    /// let out = Cpu::new().cross_entropy(logits.view(), Targets::classes(y.view()), &o)?;
    /// let loss = out.loss.scalar().unwrap();            // mean over the 2 rows
    /// // (lse([2, 0.5, −1]) − 2 + ln 3) / 2 = (0.241317 + 1.098612) / 2
    /// assert!((loss - 0.669_965).abs() < 1e-5);
    /// let g = out.grad.unwrap();                        // (softmax − onehot) / 2
    /// assert!((g[[1, 2]] - (1.0 / 3.0 - 1.0) / 2.0).abs() < 1e-6);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn cross_entropy<E: Element, D: Dimension>(
        &self,
        logits: ArrayView<E, D>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput<Array<E, D>, D::Smaller>>
    where
        Self: Sized,
    {
        let r = self.cross_entropy_tensor(logits.into(), targets, options, None)?;
        Ok(CrossEntropyOutput {
            loss: r.loss.into_dimensionality()?,
            grad: r.grad.map(Tensor::into_typed).transpose()?,
            lse: r
                .lse
                .into_dimensionality()
                .map_err(|e| Error::InvalidInput(format!("lse: {e}")))?,
            sums: r.sums,
        })
    }

    /// Runs one smooth surrogate or margin loss (see [`crate::surrogates`] for every op's
    /// formula, gradient and edge cases): its value and its gradient. The named methods below
    /// are thin wrappers over this.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, Surrogate};
    /// let x = ndarray::array![[0.0f32, 10.0, 0.0]];
    /// let out = Cpu::new().surrogate(&Surrogate::SoftArgmax { x: x.view(), temperature: 1.0 })?;
    /// assert!((out.value.to_vec()[0] - 1.0).abs() < 1e-6); // the argmax, 1
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn surrogate(&self, call: &Surrogate) -> Result<SurrogateOutput>;

    /// [`Backend::surrogate`] on scores of any element type: half inputs are widened exactly
    /// to f32 and the op runs in f32 (its sums are f32 on every fast backend already); values
    /// are f32, gradients come in `out` (`None`: the first score matrix's type).
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, MatrixView, Surrogate, Tensor};
    /// use smoothmax::half::bf16;
    /// let x = ndarray::array![[bf16::from_f32(0.0), bf16::from_f32(10.0)]];
    /// let call = Surrogate::SoftArgmax { x: MatrixView::from(x.view()), temperature: 1.0 };
    /// let out = Cpu::new().surrogate_matrix(&call, None)?;
    /// assert!(matches!(out.grad, Tensor::BF16(_)));
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn surrogate_matrix(
        &self,
        call: &Surrogate<'_, MatrixView<'_>>,
        out: Option<DType>,
    ) -> Result<SurrogateOutput<f32, Tensor>> {
        let mut first = None;
        let wide = call.map(|m| {
            first.get_or_insert(m.dtype());
            m.to_f32()
        });
        let dtype = out_dtype(out, first.unwrap_or_default());
        let r = self.surrogate(&wide.map(|m| m.view()))?;
        Ok(SurrogateOutput {
            value: r.value,
            grad: crate::tensor::narrow2(r.grad, dtype),
            grad_b: r.grad_b.map(|g| crate::tensor::narrow2(g, dtype)),
            sums: r.sums,
        })
    }

    /// [`Backend::surrogate_matrix`] on scores of any shape `[d0, ..., C]` (rows over the
    /// leading axes): class targets have the leading shape, labels the scores' shape, and
    /// per-element weights broadcast to it by NumPy's rules. A per-row value comes in the
    /// leading shape, a per-element value and the gradients in the scores' shape (gradients
    /// in `out`, `None`: the first scores' type). How each input is merged: `crate::surrogates`
    /// (module `shaped`).
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, Surrogate, Tensor, Value};
    /// let x = ndarray::Array3::<f32>::zeros((2, 3, 4)); // [batch, sequence, classes]
    /// let call = Surrogate::SoftArgmax { x: x.view().into_dyn().into(), temperature: 1.0 };
    /// let out = Cpu::new().surrogate_tensor(&call, None)?;
    /// let Value::PerRow(v) = out.value else { unreachable!() };
    /// assert_eq!(v.shape(), &[2, 3]);
    /// assert!((v[[1, 2]] - 1.5).abs() < 1e-6); // uniform over 0..4
    /// assert_eq!(out.grad.shape(), &[2, 3, 4]);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn surrogate_tensor(
        &self,
        call: &Surrogate<'_, TensorView<'_>, IxDyn>,
        out: Option<DType>,
    ) -> Result<SurrogateOutput<f32, Tensor, IxDyn>> {
        crate::surrogates::run_shaped(call, |m| self.surrogate_matrix(m, out))
    }

    /// Boltzmann operator `Σ x e^{βx} / Σ e^{βx}` per row (max as β → ∞, mean at 0).
    fn boltzmann_max(&self, x: ArrayView2<f32>, beta: f32) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::BoltzmannMax { x, beta })
    }

    /// Soft-argmax `Σ_j j·softmax(x/T)_j` per row.
    fn soft_argmax(&self, x: ArrayView2<f32>, temperature: f32) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::SoftArgmax { x, temperature })
    }

    /// Smooth accuracy `mean_i softmax(x_i/T)[y_i]`.
    fn smooth_accuracy(
        &self,
        logits: ArrayView2<f32>,
        targets: ArrayView1<i64>,
        temperature: f32,
    ) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::SmoothAccuracy {
            logits,
            targets,
            temperature,
        })
    }

    /// Binary smooth F1 `2Σσ(x)·y / Σ(σ(x) + y)` over all elements.
    fn smooth_f1(
        &self,
        logits: ArrayView2<f32>,
        labels: ArrayView2<f32>,
    ) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::SmoothF1Binary { logits, labels })
    }

    /// Macro smooth F1 over the classes, from `softmax(x/T)`.
    fn smooth_f1_macro(
        &self,
        logits: ArrayView2<f32>,
        targets: ArrayView1<i64>,
        temperature: f32,
    ) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::SmoothF1Macro {
            logits,
            targets,
            temperature,
        })
    }

    /// Pairwise smooth max of two same-shaped arrays, with both gradients.
    fn pairwise_max(
        &self,
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        form: PairwiseForm,
    ) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::PairwiseMax { a, b, form })
    }

    /// A binary loss (logistic = PyTorch's `binary_cross_entropy_with_logits`, hinge, squared
    /// hinge, exponential, squared) with weights and reduction.
    fn binary_loss<'a>(
        &self,
        logits: ArrayView2<'a, f32>,
        labels: ArrayView2<'a, f32>,
        loss: BinaryLoss,
        options: BinaryOptions<'a>,
    ) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::Binary {
            logits,
            labels,
            loss,
            options,
        })
    }

    /// Multi-class hinge, PyTorch's `MultiMarginLoss`.
    fn multi_margin<'a>(
        &self,
        logits: ArrayView2<'a, f32>,
        targets: ArrayView1<'a, i64>,
        options: MultiMarginOptions<'a>,
    ) -> Result<SurrogateOutput> {
        self.surrogate(&Surrogate::MultiMargin {
            logits,
            targets,
            options,
        })
    }
}

/// `Backend` for a wrapper that dereferences to a backend: the cores forwarded, everything
/// else provided.
macro_rules! forward_backend {
    ($(#[$doc:meta])* $ty:ty) => {
        $(#[$doc])*
        impl<B: Backend + ?Sized> Backend for $ty {
            fn name(&self) -> &'static str {
                (**self).name()
            }

            fn row_op_matrix(
                &self,
                op: RowOp,
                x: MatrixView<'_>,
                temperature: f32,
                out: DType,
            ) -> Result<Tensor> {
                (**self).row_op_matrix(op, x, temperature, out)
            }

            fn cross_entropy_matrix(
                &self,
                logits: MatrixView<'_>,
                targets: Targets,
                options: &CrossEntropyOptions,
                out: DType,
            ) -> Result<CrossEntropyOutput<Tensor, Ix1>> {
                (**self).cross_entropy_matrix(logits, targets, options, out)
            }

            fn surrogate(&self, call: &Surrogate) -> Result<SurrogateOutput> {
                (**self).surrogate(call)
            }

            fn cross_entropy_shard(
                &self,
                logits: MatrixView<'_>,
                pass: &ShardPass<'_>,
            ) -> Result<ShardResult> {
                (**self).cross_entropy_shard(logits, pass)
            }

            fn linear_ce_pass(&self, pass: &LinearPass<'_, '_>) -> Result<LinearPassResult> {
                (**self).linear_ce_pass(pass)
            }
        }
    };
}

forward_backend!(
    /// A reference to a backend is a backend, so the typed methods (which need a sized
    /// `Self`) work through `&dyn Backend` too: `(&b).softmax(x, 1.0)` for `b: &dyn Backend`.
    &B
);
forward_backend!(
    /// A boxed backend is a backend: the typed methods work on `Box<dyn Backend>` directly.
    Box<B>
);
