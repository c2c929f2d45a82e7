//! How per-row or per-element losses are combined: one [`Reduction`] for every loss, and one
//! rule for applying it (a sum in f64, divided by the op's own denominator for the mean).

/// How per-row losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Per-row losses, shape `[B]`.
    None,
    /// Weighted mean: divided by `Σ w[y_i]` over non-ignored rows (class targets) or by `B`
    /// (probability targets).
    #[default]
    Mean,
    /// Sum of the per-row losses.
    Sum,
}

impl Reduction {
    /// The reduced value from the f64 sum of the losses and the mean's denominator (the
    /// count of elements or rows, or cross-entropy's `Σ w[y_i]`): `None` keeps the losses,
    /// `Sum` is the sum, `Mean` the sum over the denominator (0/0 = NaN for an empty batch).
    pub(crate) fn apply(self, sum: f64, denominator: f64) -> Option<f64> {
        match self {
            Reduction::None => None,
            Reduction::Sum => Some(sum),
            Reduction::Mean => Some(sum / denominator),
        }
    }
}
