//! What a cross-entropy call takes and returns: targets, options, the loss and the output.

pub use crate::reduction::Reduction;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Class targets (one index per row) or probability targets (one distribution per row).
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices as i64 (PyTorch's `long`).
    Classes(ArrayView1<'a, i64>),
    /// Class indices as i32.
    ClassesI32(ArrayView1<'a, i32>),
    /// Class indices as u32 (token ids as tokenizers hand them out). `ignore_index` is
    /// compared with the value widened to i64, so the default −100 never matches one.
    ClassesU32(ArrayView1<'a, u32>),
    /// Probabilities, shape `[B, C]` (each row a distribution over classes). Rows need not be
    /// normalized (as in PyTorch), but the f32 gradient `p_j·Σ_c w_c q_c − w_j q_j` then has an
    /// error proportional to `Σ_c w_c q_c`, which is `≤ max w` for distributions.
    Probabilities(ArrayView2<'a, f32>),
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

/// The loss: per row for [`Reduction::None`], else one number.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss {
    /// One loss per row (z-loss included).
    PerRow(Array1<f32>),
    /// The reduced loss.
    Scalar(f32),
}

impl Loss {
    /// The scalar loss, or `None` for per-row losses.
    pub fn scalar(&self) -> Option<f32> {
        match self {
            Loss::Scalar(v) => Some(*v),
            Loss::PerRow(_) => None,
        }
    }
}

/// What [`crate::Backend::cross_entropy`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOutput {
    /// The loss.
    pub loss: Loss,
    /// `d(loss)/d(logits)` times the upstream gradient, `[B, C]`, when asked for. For
    /// [`Reduction::None`] it is the gradient of `Σ_i upstream_i·loss_i`. Ignored rows get 0.
    pub grad: Option<Array2<f32>>,
    /// Per-row logsumexp of the logits actually used (after softcap), for every row.
    pub lse: Array1<f32>,
}
