//! A surrogate call: the op, its inputs and parameters, and what it returns.

use crate::reduction::Reduction;
use crate::shape::Shape;
use ndarray::{Array, ArrayView, ArrayView1, Dimension, Ix2};

/// A form of the pairwise smooth maximum `f(a, b) ≈ max(a, b)` (see the module docs).
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum PairwiseForm {
    /// `(a + b + (a − b)·erf(μ(a − b))) / 2`; exact as `μ → ∞`. Needs `μ > 0`.
    Erf {
        /// Sharpness `μ > 0`.
        mu: f32,
    },
    /// `(a + b + √((a − b)² + μ²)) / 2`; exact as `μ → 0`. Needs `μ > 0`.
    Sqrt {
        /// Smoothing width `μ > 0`.
        mu: f32,
    },
    /// `(a − b)·σ(β(a − b)) + b` (the ACON form); exact as `β → ∞`, the mean at `β = 0`, a
    /// smooth minimum for `β < 0`. Needs finite `β`.
    Acon {
        /// Sharpness `β`.
        beta: f32,
    },
    /// `(a + b + |a − b|_k)/2` with the smooth absolute value `|d|_k = ln(e^{kd} + e^{−kd})/k`
    /// ([`crate::surrogates::smoothings`]): `max + ln(1 + e^{−2k|a−b|})/(2k)`, within
    /// `ln 2/(2k)` above the max; exact as `k → ∞`. Needs `k ≥ 2⁻¹²⁶`, finite.
    LogCosh {
        /// Sharpness `k`.
        k: f32,
    },
}

impl PairwiseForm {
    /// The form's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            PairwiseForm::Erf { .. } => "erf",
            PairwiseForm::Sqrt { .. } => "sqrt",
            PairwiseForm::Acon { .. } => "acon",
            PairwiseForm::LogCosh { .. } => "logcosh",
        }
    }

    /// The form's parameter (`μ` or `β`).
    pub fn parameter(&self) -> f32 {
        match *self {
            PairwiseForm::Erf { mu } | PairwiseForm::Sqrt { mu } => mu,
            PairwiseForm::Acon { beta } => beta,
            PairwiseForm::LogCosh { k } => k,
        }
    }
}

/// An element-wise smoothing of a non-smooth function (formulas, gradients and bounds:
/// [`crate::surrogates::smoothings`]).
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum ElementSmoothing {
    /// The smooth absolute value `|x| + ln(1 + e^{−2k|x|})/k = ln(e^{kx} + e^{−kx})/k`,
    /// gradient `tanh(kx)`, within `ln 2/k` above `|x|`. Needs `k ≥ 2⁻¹²⁶`, finite.
    Abs {
        /// Sharpness `k`.
        k: f32,
    },
    /// The smoothed floor `Σ_{n∈ℤ} (σ(t(x − n)) − [n ≤ 0])`, gradient `Σ_n t·σ'(t(x − n))`,
    /// within `e^{−t·d}/(1 − e^{−t})` of `⌊x⌋` at distance `d` from the nearest integer.
    /// Needs `t ≥ 2⁻¹²⁶`, finite.
    Floor {
        /// Sharpness `t`.
        t: f32,
    },
}

impl ElementSmoothing {
    /// The op's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            ElementSmoothing::Abs { .. } => "smooth-abs",
            ElementSmoothing::Floor { .. } => "smooth-floor",
        }
    }
}

/// A binary loss on a score `f` and a label `y` (see the module docs for formulas).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryLoss {
    /// Logistic loss in the stable softplus form: PyTorch's
    /// `binary_cross_entropy_with_logits`. Labels in `[0, 1]`.
    Logistic,
    /// `max(0, 1 − y·f)`, labels ±1.
    Hinge,
    /// `max(0, 1 − y·f)²`, labels ±1.
    SquaredHinge,
    /// `exp(−y·f)` (AdaBoost), labels ±1.
    Exponential,
    /// `(1 − y·f)²`, labels ±1.
    Squared,
}

impl BinaryLoss {
    /// The loss's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryLoss::Logistic => "logistic",
            BinaryLoss::Hinge => "hinge",
            BinaryLoss::SquaredHinge => "squared-hinge",
            BinaryLoss::Exponential => "exponential",
            BinaryLoss::Squared => "squared",
        }
    }

    /// Every binary loss, in a fixed order.
    pub const ALL: [BinaryLoss; 5] = [
        BinaryLoss::Logistic,
        BinaryLoss::Hinge,
        BinaryLoss::SquaredHinge,
        BinaryLoss::Exponential,
        BinaryLoss::Squared,
    ];
}

/// Options of the binary losses. `Default`: no weights, mean. `D` is the dimension of the
/// scores (2 for a matrix call; `IxDyn` for [`crate::Backend::surrogate_tensor`]).
#[derive(Clone, Debug)]
pub struct BinaryOptions<'a, D: Dimension = Ix2> {
    /// Per-element weights, broadcast to the scores' shape by NumPy's rules (e.g. `[1, C]` per
    /// column, `[B, 1]` per row; with N-D scores also `[C]`, `[d0, ..., 1]`); finite.
    pub weight: Option<ArrayView<'a, f32, D>>,
    /// Logistic loss only: weight of the positive term, one per column (length `C`, or 1 for
    /// all), finite and `≥ 0`.
    pub pos_weight: Option<ArrayView1<'a, f32>>,
    /// How element losses are combined (mean over all elements, as PyTorch).
    pub reduction: Reduction,
}

impl<D: Dimension> Default for BinaryOptions<'_, D> {
    fn default() -> Self {
        BinaryOptions {
            weight: None,
            pos_weight: None,
            reduction: Reduction::default(),
        }
    }
}

/// Options of the multi-class hinge loss (`torch.nn.MultiMarginLoss`). `Default` is PyTorch's:
/// `p = 1`, `margin = 1`, no weights, mean.
#[derive(Clone, Debug)]
pub struct MultiMarginOptions<'a> {
    /// The power, 1 or 2.
    pub p: u32,
    /// The margin, finite.
    pub margin: f32,
    /// Per-class weights, length `C`, finite.
    pub weight: Option<ArrayView1<'a, f32>>,
    /// How row losses are combined (mean divides by `B`).
    pub reduction: Reduction,
}

impl Default for MultiMarginOptions<'_> {
    fn default() -> Self {
        MultiMarginOptions {
            p: 1,
            margin: 1.0,
            weight: None,
            reduction: Reduction::Mean,
        }
    }
}

/// One call of a surrogate op: the op, its inputs and its parameters. The scores (`x`,
/// `logits`, `a`, `b`) are host views by default; the GPU backend also takes device matrices
/// there (`Surrogate<&GpuMatrix>`, see [`crate::gpu::Call`]). Labels, targets and weights are
/// always host data: they are checked value by value before any work.
///
/// `D` is the scores' dimension: `Ix2` (`[B, C]`, the default) for the matrix entry points,
/// `IxDyn` for [`crate::Backend::surrogate_tensor`], where scores have any shape
/// `[d0, ..., C]` (rows over the leading axes), class targets the leading shape and labels the
/// scores' shape.
#[derive(Clone, Debug)]
pub enum Surrogate<'a, M = ndarray::ArrayView2<'a, f32>, D: Dimension = Ix2> {
    /// Boltzmann operator per row of `x` `[B, C]`: value `[B]`.
    BoltzmannMax {
        /// Scores `[B, C]`.
        x: M,
        /// Inverse temperature β, finite (any sign).
        beta: f32,
    },
    /// Soft-argmax per row: value `[B]`.
    SoftArgmax {
        /// Scores `[B, C]`.
        x: M,
        /// Temperature `T > 0`.
        temperature: f32,
    },
    /// Smooth accuracy, a scalar.
    SmoothAccuracy {
        /// Logits `[B, C]`.
        logits: M,
        /// Class per row, in `[0, C)`.
        targets: ArrayView<'a, i64, D::Smaller>,
        /// Temperature `T > 0`.
        temperature: f32,
    },
    /// Binary smooth F1 over all elements, a scalar.
    SmoothF1Binary {
        /// Logits, any `[B, C]`.
        logits: M,
        /// Labels in `[0, 1]`, same shape.
        labels: ArrayView<'a, f32, D>,
    },
    /// Macro smooth F1 over the `C` classes, a scalar.
    SmoothF1Macro {
        /// Logits `[B, C]`.
        logits: M,
        /// Class per row, in `[0, C)`.
        targets: ArrayView<'a, i64, D::Smaller>,
        /// Temperature `T > 0`.
        temperature: f32,
    },
    /// Pairwise smooth max of two same-shaped arrays: value per element, gradients for both.
    PairwiseMax {
        /// First argument.
        a: M,
        /// Second argument, same shape.
        b: M,
        /// Which form.
        form: PairwiseForm,
    },
    /// A binary loss: value per element (reduction none) or a scalar.
    Binary {
        /// Scores (logits) `[B, C]`.
        logits: M,
        /// Labels, same shape.
        labels: ArrayView<'a, f32, D>,
        /// Which loss.
        loss: BinaryLoss,
        /// Weights and reduction.
        options: BinaryOptions<'a, D>,
    },
    /// Power-mean max per row of non-negative `x` `[B, C]`: `(Σ_j x_j^p)^{1/p}`, value `[B]`,
    /// gradient `(x_j/f)^{p−1}`; within `[max, C^{1/p}·max]` (formulas and edge rows:
    /// [`crate::surrogates::smoothings::power_max`]). Host scores must be finite and `≥ 0`
    /// (`−0` counts as 0); device scores cannot be checked, and a row holding a negative,
    /// NaN or infinite value gives NaN value and gradient there.
    PowerMax {
        /// Non-negative scores `[B, C]`.
        x: M,
        /// The power `p ≥ 1`, finite.
        p: f32,
    },
    /// An element-wise smoothing of `x` (any shape): value and gradient per element.
    Smoothing {
        /// The input.
        x: M,
        /// Which smoothing.
        op: ElementSmoothing,
    },
    /// Multi-class hinge: value per row (reduction none) or a scalar.
    MultiMargin {
        /// Scores `[B, C]`.
        logits: M,
        /// Class per row, in `[0, C)`.
        targets: ArrayView<'a, i64, D::Smaller>,
        /// Power, margin, weights, reduction.
        options: MultiMarginOptions<'a>,
    },
}

impl<M, D: Dimension> Surrogate<'_, M, D> {
    /// The same call with each score matrix replaced by `f` of it (in field order: `x`,
    /// `logits`, or `a` then `b`), every other view reborrowed for `'s` (ndarray 0.17's views
    /// make structs holding them invariant in their lifetime, so a call cannot be shortened by
    /// subtyping; this gives the shorter call explicitly).
    pub fn map<'s, N>(&'s self, mut f: impl FnMut(&'s M) -> N) -> Surrogate<'s, N, D> {
        match self {
            Surrogate::BoltzmannMax { x, beta } => Surrogate::BoltzmannMax {
                x: f(x),
                beta: *beta,
            },
            Surrogate::SoftArgmax { x, temperature } => Surrogate::SoftArgmax {
                x: f(x),
                temperature: *temperature,
            },
            Surrogate::SmoothAccuracy {
                logits,
                targets,
                temperature,
            } => Surrogate::SmoothAccuracy {
                logits: f(logits),
                targets: targets.view(),
                temperature: *temperature,
            },
            Surrogate::SmoothF1Binary { logits, labels } => Surrogate::SmoothF1Binary {
                logits: f(logits),
                labels: labels.view(),
            },
            Surrogate::SmoothF1Macro {
                logits,
                targets,
                temperature,
            } => Surrogate::SmoothF1Macro {
                logits: f(logits),
                targets: targets.view(),
                temperature: *temperature,
            },
            Surrogate::PairwiseMax { a, b, form } => {
                let a = f(a);
                Surrogate::PairwiseMax {
                    a,
                    b: f(b),
                    form: *form,
                }
            }
            Surrogate::Binary {
                logits,
                labels,
                loss,
                options,
            } => Surrogate::Binary {
                logits: f(logits),
                labels: labels.view(),
                loss: *loss,
                options: BinaryOptions {
                    weight: options.weight.as_ref().map(|w| w.view()),
                    pos_weight: options.pos_weight.as_ref().map(|w| w.view()),
                    reduction: options.reduction,
                },
            },
            Surrogate::Smoothing { x, op } => Surrogate::Smoothing { x: f(x), op: *op },
            Surrogate::PowerMax { x, p } => Surrogate::PowerMax { x: f(x), p: *p },
            Surrogate::MultiMargin {
                logits,
                targets,
                options,
            } => Surrogate::MultiMargin {
                logits: f(logits),
                targets: targets.view(),
                options: MultiMarginOptions {
                    weight: options.weight.as_ref().map(|w| w.view()),
                    ..*options
                },
            },
        }
    }

    /// The op's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Surrogate::BoltzmannMax { .. } => "boltzmann-max",
            Surrogate::SoftArgmax { .. } => "soft-argmax",
            Surrogate::SmoothAccuracy { .. } => "smooth-accuracy",
            Surrogate::SmoothF1Binary { .. } => "smooth-f1",
            Surrogate::SmoothF1Macro { .. } => "smooth-f1-macro",
            Surrogate::PairwiseMax { .. } => "pairwise-max",
            Surrogate::Binary { loss, .. } => match loss {
                BinaryLoss::Logistic => "binary-cross-entropy",
                BinaryLoss::Hinge => "hinge",
                BinaryLoss::SquaredHinge => "squared-hinge",
                BinaryLoss::Exponential => "exponential",
                BinaryLoss::Squared => "squared",
            },
            Surrogate::Smoothing { op, .. } => op.name(),
            Surrogate::PowerMax { .. } => "power-max",
            Surrogate::MultiMargin { .. } => "multi-margin",
        }
    }

    /// The shape of the input the gradient is taken against.
    pub fn shape(&self) -> (usize, usize)
    where
        M: Shape,
    {
        match self {
            Surrogate::BoltzmannMax { x, .. }
            | Surrogate::SoftArgmax { x, .. }
            | Surrogate::Smoothing { x, .. }
            | Surrogate::PowerMax { x, .. } => x.dim(),
            Surrogate::SmoothAccuracy { logits, .. }
            | Surrogate::SmoothF1Binary { logits, .. }
            | Surrogate::SmoothF1Macro { logits, .. }
            | Surrogate::Binary { logits, .. }
            | Surrogate::MultiMargin { logits, .. } => logits.dim(),
            Surrogate::PairwiseMax { a, .. } => a.dim(),
        }
    }
}

impl SurrogateOutput<f64> {
    /// The f64 result rounded to f32 (what [`crate::Reference`] returns).
    pub fn narrow(self) -> SurrogateOutput<f32> {
        let f = |a: ndarray::Array2<f64>| a.mapv(|v| v as f32);
        SurrogateOutput {
            value: match self.value {
                Value::Scalar(v) => Value::Scalar(v as f32),
                Value::PerRow(v) => Value::PerRow(v.mapv(|v| v as f32)),
                Value::Matrix(m) => Value::Matrix(f(m)),
            },
            grad: f(self.grad),
            grad_b: self.grad_b.map(f),
            sums: self.sums,
        }
    }
}

/// A value: one number, one per row, or one per element (`D`: the scores' dimension, as in
/// [`Surrogate`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Value<T = f32, D: Dimension = Ix2> {
    /// A reduced value.
    Scalar(T),
    /// One value per row (the scores' leading shape).
    PerRow(Array<T, D::Smaller>),
    /// One value per element (the scores' shape).
    Matrix(Array<T, D>),
}

impl<T: Copy, D: Dimension> Value<T, D> {
    /// The scalar, or `None`.
    pub fn scalar(&self) -> Option<T> {
        match self {
            Value::Scalar(v) => Some(*v),
            _ => None,
        }
    }

    /// Every number of the value, in order (for comparisons and files).
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            Value::Scalar(v) => vec![*v],
            Value::PerRow(v) => v.iter().copied().collect(),
            Value::Matrix(m) => m.iter().copied().collect(),
        }
    }

    /// The value's shape as an `.npy` file has it (`[]` for a scalar).
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Scalar(_) => vec![],
            Value::PerRow(v) => v.shape().to_vec(),
            Value::Matrix(m) => m.shape().to_vec(),
        }
    }
}

/// What [`crate::Backend::surrogate`] returns; `G` is the gradients' type (a
/// [`crate::Tensor`] in the input's element type from [`crate::Backend::surrogate_matrix`]
/// and [`crate::Backend::surrogate_tensor`]), `D` the scores' dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateOutput<T = f32, G = ndarray::Array2<T>, D: Dimension = Ix2> {
    /// The value (see each op).
    pub value: Value<T, D>,
    /// Gradient with respect to the first input (`x`, `logits` or `a`), its shape.
    pub grad: G,
    /// Pairwise max only: gradient with respect to `b`.
    pub grad_b: Option<G>,
    /// For the values that are a mean or sum over rows or elements (smooth accuracy, the
    /// binary and multi-margin losses, whatever their reduction): the sum of the row or
    /// element values and their count in f64, to combine batches exactly (see
    /// [`crate::LossSums`]). `None` for the other ops.
    pub sums: Option<crate::LossSums>,
}
