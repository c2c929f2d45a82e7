//! The interface every backend implements: the row ops, cross-entropy and the surrogates.

use crate::cross_entropy::{CrossEntropyOptions, CrossEntropyOutput, Targets};
use crate::error::Result;
use crate::rows::{RowOp, RowOutput};
use crate::surrogates::{
    BinaryLoss, BinaryOptions, MultiMarginOptions, PairwiseForm, Surrogate, SurrogateOutput,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

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

    /// Runs one row op. The three named methods below are thin wrappers over this.
    fn row_op(&self, op: RowOp, x: ArrayView2<f32>, temperature: f32) -> Result<RowOutput>;

    /// `T · ln Σ_j exp(x_j / T)` per row; `[B, C] → [B]`.
    fn logsumexp(&self, x: ArrayView2<f32>, temperature: f32) -> Result<Array1<f32>> {
        match self.row_op(RowOp::LogSumExp, x, temperature)? {
            RowOutput::PerRow(v) => Ok(v),
            RowOutput::Matrix(_) => unreachable!("logsumexp returns one value per row"),
        }
    }

    /// Softmax of `x / T` per row; `[B, C] → [B, C]`.
    fn softmax(&self, x: ArrayView2<f32>, temperature: f32) -> Result<Array2<f32>> {
        match self.row_op(RowOp::Softmax, x, temperature)? {
            RowOutput::Matrix(m) => Ok(m),
            RowOutput::PerRow(_) => unreachable!("softmax returns a matrix"),
        }
    }

    /// Softmax cross-entropy of `logits` `[B, C]` against `targets`, with PyTorch's options
    /// plus z-loss and softcap (see [`crate::cross_entropy`]): the loss, the gradient with
    /// respect to the logits when `options.gradient` is set, and the per-row logsumexp.
    ///
    /// ```
    /// use smoothmax::{Backend, Cpu, CrossEntropyOptions, Targets};
    /// let logits = ndarray::array![[2.0f32, 0.5, -1.0], [0.0, 0.0, 0.0]];
    /// let y = ndarray::array![0i64, 2];
    /// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
    /// let out = Cpu::new().cross_entropy(logits.view(), Targets::Classes(y.view()), &o)?;
    /// let loss = out.loss.scalar().unwrap();            // mean over the 2 rows
    /// // (lse([2, 0.5, −1]) − 2 + ln 3) / 2 = (0.241317 + 1.098612) / 2
    /// assert!((loss - 0.669_965).abs() < 1e-5);
    /// let g = out.grad.unwrap();                        // (softmax − onehot) / 2
    /// assert!((g[[1, 2]] - (1.0 / 3.0 - 1.0) / 2.0).abs() < 1e-6);
    /// # Ok::<(), smoothmax::Error>(())
    /// ```
    fn cross_entropy(
        &self,
        logits: ArrayView2<f32>,
        targets: Targets,
        options: &CrossEntropyOptions,
    ) -> Result<CrossEntropyOutput>;

    /// Log-softmax of `x / T` per row; `[B, C] → [B, C]`.
    fn log_softmax(&self, x: ArrayView2<f32>, temperature: f32) -> Result<Array2<f32>> {
        match self.row_op(RowOp::LogSoftmax, x, temperature)? {
            RowOutput::Matrix(m) => Ok(m),
            RowOutput::PerRow(_) => unreachable!("log_softmax returns a matrix"),
        }
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
