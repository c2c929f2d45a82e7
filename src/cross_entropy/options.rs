//! What a cross-entropy call takes and returns: targets, options, the loss and the output.

use crate::error::{Error, Result};
pub use crate::reduction::{LossSums, Reduction};
use ndarray::{
    Array, Array1, Array2, ArrayView, ArrayView1, ArrayViewD, CowArray, Dimension, Ix1, Ix2,
};

/// Class targets (one index per row) or probability targets (one distribution per row). For
/// logits `[d0, ..., C]`, class targets have the leading shape `[d0, ...]` and probability
/// targets the full shape; build them from views of any dimension with [`Targets::classes`]
/// and its siblings.
#[derive(Clone, Debug)]
pub enum Targets<'a> {
    /// Class indices as i64 (PyTorch's `long`).
    Classes(ArrayViewD<'a, i64>),
    /// Class indices as i32.
    ClassesI32(ArrayViewD<'a, i32>),
    /// Class indices as u32 (token ids as tokenizers hand them out). `ignore_index` is
    /// compared with the value widened to i64, so the default −100 never matches one.
    ClassesU32(ArrayViewD<'a, u32>),
    /// Probabilities, the logits' shape (each row a distribution over classes). Rows need not
    /// be normalized (as in PyTorch), but the f32 gradient `p_j·Σ_c w_c q_c − w_j q_j` then has
    /// an error proportional to `Σ_c w_c q_c`, which is `≤ max w` for distributions.
    Probabilities(ArrayViewD<'a, f32>),
}

impl<'a> Targets<'a> {
    /// i64 class targets of the logits' leading shape.
    pub fn classes<D: Dimension>(v: ArrayView<'a, i64, D>) -> Self {
        Targets::Classes(v.into_dyn())
    }

    /// i32 class targets of the logits' leading shape.
    pub fn classes_i32<D: Dimension>(v: ArrayView<'a, i32, D>) -> Self {
        Targets::ClassesI32(v.into_dyn())
    }

    /// u32 class targets of the logits' leading shape.
    pub fn classes_u32<D: Dimension>(v: ArrayView<'a, u32, D>) -> Self {
        Targets::ClassesU32(v.into_dyn())
    }

    /// Probability targets of the logits' shape.
    pub fn probabilities<D: Dimension>(v: ArrayView<'a, f32, D>) -> Self {
        Targets::Probabilities(v.into_dyn())
    }

    /// The targets' shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Targets::Classes(t) => t.shape(),
            Targets::ClassesI32(t) => t.shape(),
            Targets::ClassesU32(t) => t.shape(),
            Targets::Probabilities(q) => q.shape(),
        }
    }

    /// The targets of `rows` rows of `cols` classes with their leading axes merged (after
    /// [`Targets::check_shape`]).
    pub(crate) fn flat(&self, rows: usize, cols: usize) -> Result<FlatTargets<'_>> {
        let bad = |e: ndarray::ShapeError| Error::InvalidInput(format!("targets: {e}"));
        Ok(match self {
            Targets::Classes(t) => FlatTargets::Classes(t.to_shape(rows).map_err(bad)?),
            Targets::ClassesI32(t) => FlatTargets::ClassesI32(t.to_shape(rows).map_err(bad)?),
            Targets::ClassesU32(t) => FlatTargets::ClassesU32(t.to_shape(rows).map_err(bad)?),
            Targets::Probabilities(q) => {
                FlatTargets::Probabilities(q.to_shape((rows, cols)).map_err(bad)?)
            }
        })
    }

    /// Checks the shape against logits of leading shape `leading` and `cols` classes: class
    /// targets have the leading shape, probabilities the full shape. (A `[B, C]` call with 1-D
    /// class targets of length `B` is the two-dimensional case of the same rule.)
    pub(crate) fn check_shape(&self, leading: &[usize], cols: usize) -> Result<()> {
        let (want, what): (Vec<usize>, &str) = match self {
            Targets::Probabilities(_) => (
                leading.iter().copied().chain([cols]).collect(),
                "probability targets have the logits' shape",
            ),
            _ => (
                leading.to_vec(),
                "class targets have the logits' leading shape",
            ),
        };
        if self.shape() == want.as_slice() {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "targets have shape {:?}, expected {want:?} ({what})",
                self.shape()
            )))
        }
    }
}

/// Targets with the logits' leading axes merged, as the row-level entry points take them:
/// class targets `[B]`, probabilities `[B, C]` (views where the layout allows, else copies).
pub(crate) enum FlatTargets<'a> {
    Classes(CowArray<'a, i64, Ix1>),
    ClassesI32(CowArray<'a, i32, Ix1>),
    ClassesU32(CowArray<'a, u32, Ix1>),
    Probabilities(CowArray<'a, f32, Ix2>),
}

impl FlatTargets<'_> {
    /// The merged targets as [`Targets`].
    pub fn view(&self) -> Targets<'_> {
        match self {
            FlatTargets::Classes(t) => Targets::classes(t.view()),
            FlatTargets::ClassesI32(t) => Targets::classes_i32(t.view()),
            FlatTargets::ClassesU32(t) => Targets::classes_u32(t.view()),
            FlatTargets::Probabilities(q) => Targets::probabilities(q.view()),
        }
    }
}

/// The upstream gradient `dL/d(loss output)` the logits gradient is scaled by.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Upstream {
    /// 1 (the gradient of the loss itself).
    #[default]
    One,
    /// A scalar.
    Scalar(f32),
    /// One value per row; only with [`Reduction::None`].
    PerRow(Array1<f32>),
}

/// Options of [`crate::Backend::cross_entropy`]. `Default` is PyTorch's default call:
/// no weights, `ignore_index = −100`, no smoothing, mean, no z-loss, no softcap, no gradient.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyOptions<'a> {
    /// Per-class weights, length `C`, finite and `≥ 0`.
    pub weight: Option<ArrayView1<'a, f32>>,
    /// Target value that marks a row as ignored (default −100; may be a valid class). Setting
    /// it with probability targets is an error, as in PyTorch.
    pub ignore_index: Option<i64>,
    /// Label smoothing in `[0, 1]`.
    pub label_smoothing: f32,
    /// How rows are combined.
    pub reduction: Reduction,
    /// z-loss coefficient (PaLM; Liger's `lse_square_scale`): adds `z·lse²` per non-ignored row.
    pub z_loss: f32,
    /// Gemma 2 logit soft-capping: logits become `c·tanh(x/c)` first. Must be `> 0`.
    pub softcap: Option<f32>,
    /// Compute the gradient with respect to the logits.
    pub gradient: bool,
    /// The upstream gradient (used when `gradient` is set).
    pub upstream: Upstream,
}

impl CrossEntropyOptions<'_> {
    /// The ignore index in force: the one given, else PyTorch's −100.
    pub fn effective_ignore_index(&self) -> i64 {
        self.ignore_index.unwrap_or(-100)
    }
}

/// The loss: per row for [`Reduction::None`] (in the logits' leading shape), else one number.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss<R: Dimension = Ix1> {
    /// One loss per row (z-loss included).
    PerRow(Array<f32, R>),
    /// The reduced loss.
    Scalar(f32),
}

impl<R: Dimension> Loss<R> {
    /// The scalar loss, or `None` for per-row losses.
    pub fn scalar(&self) -> Option<f32> {
        match self {
            Loss::Scalar(v) => Some(*v),
            Loss::PerRow(_) => None,
        }
    }

    /// The per-row losses in shape `R2` (an error when the dimensions differ).
    pub fn into_dimensionality<R2: Dimension>(self) -> Result<Loss<R2>> {
        Ok(match self {
            Loss::Scalar(v) => Loss::Scalar(v),
            Loss::PerRow(a) => Loss::PerRow(
                a.into_dimensionality()
                    .map_err(|e| Error::InvalidInput(format!("per-row loss: {e}")))?,
            ),
        })
    }
}

impl<R: Dimension> CrossEntropyOutput<(), R> {
    /// The same result with the gradient `grad` (a loss finished without one, such as
    /// [`crate::shard::ShardedCrossEntropy::finish`]'s).
    pub fn with_grad<G>(self, grad: Option<G>) -> CrossEntropyOutput<G, R> {
        CrossEntropyOutput {
            loss: self.loss,
            grad,
            lse: self.lse,
            sums: self.sums,
        }
    }
}

/// What [`crate::Backend::cross_entropy`] returns: by default for `[B, C]` f32 logits; `G` is
/// the gradient's type (`Array<E, D>` for logits `ArrayView<E, D>`, a [`crate::Tensor`] from
/// the type-erased entry point) and `R` the leading shape's dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOutput<G = Array2<f32>, R: Dimension = Ix1> {
    /// The loss.
    pub loss: Loss<R>,
    /// `d(loss)/d(logits)` times the upstream gradient, the logits' shape, when asked for.
    /// For [`Reduction::None`] it is the gradient of `Σ_i upstream_i·loss_i`. Ignored rows
    /// get 0.
    pub grad: Option<G>,
    /// Per-row logsumexp of the logits actually used (after softcap), for every row.
    pub lse: Array<f32, R>,
    /// The loss's numerator and denominator in f64 (whatever the reduction), to combine
    /// batches into the exact global loss: see [`LossSums`].
    pub sums: LossSums,
}
