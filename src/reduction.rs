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

/// A reduced loss kept as its numerator and denominator, so that batches combine into the
/// exact global loss: the accumulator of a loss evaluated batch by batch (or on ranks that
/// hold different rows). Add the `sums` of each batch's output (`+=`, or `.sum()` over an
/// iterator) and read [`LossSums::mean`] or [`LossSums::sum`]: equal to one call over the
/// concatenated batch, up to the order of f64 additions. Every field is a plain f64 (the
/// type is `bytemuck`-castable, 32 bytes), so any transport can carry it.
///
/// Cross-entropy: `loss` is Σ of the per-row losses without z-loss, `weight` the mean's
/// denominator `Σ w[y_i]` over non-ignored rows (`B` for probability targets), `z_loss` the
/// Σ `z·lse_i²` over non-ignored rows and `z_rows` their number. Surrogate losses: `loss` is
/// the sum of the element (or row) losses and `weight` their count; the z fields are 0.
///
/// ```
/// use smoothmax::{Backend, Cpu, CrossEntropyOptions, LossSums, Targets};
/// let x = ndarray::array![[2.0f32, 0.5, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]];
/// let y = ndarray::array![0i64, 2, 1];
/// let o = CrossEntropyOptions::default();
/// let cpu = Cpu::new();
/// // Two batches (rows 0..2 and 2..3) accumulated, against one call over all three rows.
/// let mut acc = LossSums::default();
/// for (a, b) in [(0, 2), (2, 3)] {
///     let y_b = y.slice(ndarray::s![a..b]);
///     acc += cpu.cross_entropy(x.slice(ndarray::s![a..b, ..]), Targets::classes(y_b), &o)?.sums;
/// }
/// let whole = cpu.cross_entropy(x.view(), Targets::classes(y.view()), &o)?;
/// assert!((acc.mean() as f32 - whole.loss.scalar().unwrap()).abs() < 1e-6);
/// # Ok::<(), smoothmax::Error>(())
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossSums {
    /// Σ of the row (or element) losses, z-loss excluded.
    pub loss: f64,
    /// The mean's denominator of `loss`.
    pub weight: f64,
    /// Σ of the z-loss terms `z·lse²` (cross-entropy with z-loss; else 0).
    pub z_loss: f64,
    /// The z part's mean denominator: the number of non-ignored rows.
    pub z_rows: f64,
}

impl LossSums {
    /// The mean: `loss / weight`, plus `z_loss / z_rows` when there are counted rows (NaN
    /// for an empty or all-ignored set, as one call gives).
    pub fn mean(&self) -> f64 {
        // With no counted row `weight` is 0 too, so the first part is already 0/0 = NaN.
        let z = if self.z_rows > 0.0 {
            self.z_loss / self.z_rows
        } else {
            0.0
        };
        self.loss / self.weight + z
    }

    /// The sum: `loss + z_loss`.
    pub fn sum(&self) -> f64 {
        self.loss + self.z_loss
    }

    /// The loss reduced by `reduction` (`None` for [`Reduction::None`]).
    pub fn reduce(&self, reduction: Reduction) -> Option<f64> {
        match reduction {
            Reduction::None => None,
            Reduction::Sum => Some(self.sum()),
            Reduction::Mean => Some(self.mean()),
        }
    }
}

impl std::ops::AddAssign for LossSums {
    fn add_assign(&mut self, o: LossSums) {
        self.loss += o.loss;
        self.weight += o.weight;
        self.z_loss += o.z_loss;
        self.z_rows += o.z_rows;
    }
}

impl std::ops::Add for LossSums {
    type Output = LossSums;
    fn add(mut self, o: LossSums) -> LossSums {
        self += o;
        self
    }
}

impl std::iter::Sum for LossSums {
    fn sum<I: Iterator<Item = LossSums>>(it: I) -> LossSums {
        it.fold(LossSums::default(), |a, b| a + b)
    }
}
