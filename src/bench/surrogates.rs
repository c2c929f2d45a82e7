//! The surrogates in the bench: the op each `--op` name selects (the `smoothmax eval` names),
//! its call on the bench's logits with fixed parameters, the extra inputs it reads, and its
//! compulsory bytes.

use crate::element::{Element, MatrixView};
use crate::surrogates::{
    BinaryLoss, BinaryOptions, ElementSmoothing, MultiMarginOptions, PairwiseForm, Surrogate,
};
use ndarray::{Array1, Array2};

/// A surrogate the bench measures, with the parameters it runs at.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SurrogateBench {
    /// Boltzmann operator, `β = 1`.
    BoltzmannMax,
    /// Soft-argmax, `T = 1`.
    SoftArgmax,
    /// Smooth accuracy, `T = 1`.
    SmoothAccuracy,
    /// Binary smooth F1 against 0/1 labels.
    SmoothF1,
    /// Macro smooth F1, `T = 1`.
    SmoothF1Macro,
    /// Pairwise smooth max, erf form, `μ = 1`, of the logits and their reversed rows.
    PairwiseMax,
    /// A binary loss (mean, no weights) against 0/1 labels.
    Binary(BinaryLoss),
    /// Multi-class hinge (PyTorch's defaults).
    MultiMargin,
    /// Smooth absolute value, `k = 1`.
    SmoothAbs,
    /// Smoothed floor, `t = 10`.
    SmoothFloor,
    /// Power-mean max of `|x|`, `p = 4`.
    PowerMax,
}

impl SurrogateBench {
    /// Every surrogate, in report order.
    pub const ALL: [SurrogateBench; 15] = [
        SurrogateBench::BoltzmannMax,
        SurrogateBench::SoftArgmax,
        SurrogateBench::PowerMax,
        SurrogateBench::SmoothAccuracy,
        SurrogateBench::SmoothF1,
        SurrogateBench::SmoothF1Macro,
        SurrogateBench::MultiMargin,
        SurrogateBench::Binary(BinaryLoss::Logistic),
        SurrogateBench::Binary(BinaryLoss::Hinge),
        SurrogateBench::Binary(BinaryLoss::SquaredHinge),
        SurrogateBench::Binary(BinaryLoss::Exponential),
        SurrogateBench::Binary(BinaryLoss::Squared),
        SurrogateBench::PairwiseMax,
        SurrogateBench::SmoothAbs,
        SurrogateBench::SmoothFloor,
    ];

    /// The op's name: `smoothmax eval`'s.
    pub fn name(self) -> &'static str {
        match self {
            SurrogateBench::BoltzmannMax => "boltzmann-max",
            SurrogateBench::SoftArgmax => "soft-argmax",
            SurrogateBench::SmoothAccuracy => "smooth-accuracy",
            SurrogateBench::SmoothF1 => "smooth-f1",
            SurrogateBench::SmoothF1Macro => "smooth-f1-macro",
            SurrogateBench::PairwiseMax => "pairwise-max",
            SurrogateBench::Binary(BinaryLoss::Logistic) => "binary-cross-entropy",
            SurrogateBench::Binary(l) => l.name(),
            SurrogateBench::MultiMargin => "multi-margin",
            SurrogateBench::SmoothAbs => "smooth-abs",
            SurrogateBench::SmoothFloor => "smooth-floor",
            SurrogateBench::PowerMax => "power-max",
        }
    }

    /// Compulsory bytes (read, written) for `[rows, cols]` scores of `elem`-byte elements:
    /// every score matrix read once (the F1 scores' second pass rereads the logits, not
    /// counted), labels as f32, class targets as 8-byte integers, gradients in the scores'
    /// type, per-row values as f32; a reduced value is not counted.
    pub fn bytes(self, rows: usize, cols: usize, elem: usize) -> (u64, u64) {
        let (b, n, e) = (rows as u64, (rows * cols) as u64, elem as u64);
        match self {
            SurrogateBench::BoltzmannMax
            | SurrogateBench::SoftArgmax
            | SurrogateBench::PowerMax => (e * n, e * n + 4 * b),
            SurrogateBench::SmoothAccuracy
            | SurrogateBench::SmoothF1Macro
            | SurrogateBench::MultiMargin => (e * n + 8 * b, e * n),
            SurrogateBench::SmoothF1 | SurrogateBench::Binary(_) => (e * n + 4 * n, e * n),
            SurrogateBench::PairwiseMax => (2 * e * n, 3 * e * n),
            SurrogateBench::SmoothAbs | SurrogateBench::SmoothFloor => (e * n, 2 * e * n),
        }
    }
}

/// What a surrogate reads besides the logits, made for one op from the bench's inputs (an
/// input the op does not read is left empty: a call of another op on them is a shape error).
pub struct SurrogateInputs<E> {
    /// The second score matrix (pairwise max: each row reversed) or `|x|` (power max).
    other: Array2<E>,
    /// 0/1 labels (`[B, C]`: `x > 0.5`).
    labels: Array2<f32>,
    /// A class per row (the bench's targets, ignored rows as class 0).
    classes: Array1<i64>,
}

impl<E: Element> SurrogateInputs<E> {
    /// The inputs `op` reads, from the bench's logits `x` and targets `y`.
    pub fn new(op: SurrogateBench, x: &Array2<E>, y: &Array1<i64>) -> Self {
        let other = match op {
            SurrogateBench::PairwiseMax => {
                Array2::from_shape_fn(x.dim(), |(i, j)| x[[i, x.ncols() - 1 - j]])
            }
            SurrogateBench::PowerMax => x.mapv(|v| E::from_f32(v.to_f32().abs())),
            _ => Array2::default((0, 0)),
        };
        let labels = match op {
            SurrogateBench::SmoothF1 | SurrogateBench::Binary(_) => {
                x.mapv(|v| if v.to_f32() > 0.5 { 1.0 } else { 0.0 })
            }
            _ => Array2::zeros((0, 0)),
        };
        SurrogateInputs {
            other,
            labels,
            classes: y.mapv(|c| c.max(0)),
        }
    }

    /// The call of `op` on `x` with these inputs.
    pub fn call<'a>(
        &'a self,
        op: SurrogateBench,
        x: MatrixView<'a>,
    ) -> Surrogate<'a, MatrixView<'a>> {
        let other = || MatrixView::from(self.other.view());
        let labels = || self.labels.view();
        let targets = self.classes.view();
        match op {
            SurrogateBench::BoltzmannMax => Surrogate::BoltzmannMax { x, beta: 1.0 },
            SurrogateBench::SoftArgmax => Surrogate::SoftArgmax {
                x,
                temperature: 1.0,
            },
            SurrogateBench::PowerMax => Surrogate::PowerMax { x: other(), p: 4.0 },
            SurrogateBench::SmoothAccuracy => Surrogate::SmoothAccuracy {
                logits: x,
                targets,
                temperature: 1.0,
            },
            SurrogateBench::SmoothF1 => Surrogate::SmoothF1Binary {
                logits: x,
                labels: labels(),
            },
            SurrogateBench::SmoothF1Macro => Surrogate::SmoothF1Macro {
                logits: x,
                targets,
                temperature: 1.0,
            },
            SurrogateBench::MultiMargin => Surrogate::MultiMargin {
                logits: x,
                targets,
                options: MultiMarginOptions::default(),
            },
            SurrogateBench::Binary(loss) => Surrogate::Binary {
                logits: x,
                labels: labels(),
                loss,
                options: BinaryOptions::default(),
            },
            SurrogateBench::PairwiseMax => Surrogate::PairwiseMax {
                a: x,
                b: other(),
                form: PairwiseForm::Erf { mu: 1.0 },
            },
            SurrogateBench::SmoothAbs => Surrogate::Smoothing {
                x,
                op: ElementSmoothing::Abs { k: 1.0 },
            },
            SurrogateBench::SmoothFloor => Surrogate::Smoothing {
                x,
                op: ElementSmoothing::Floor { t: 10.0 },
            },
        }
    }
}
