//! What the surrogate kernels are told besides their op: the split of the exponent's scale
//! `κ`, and which kernel op each public loss and form is.

use crate::gpu::kernel::uniforms::Params;
use crate::gpu::kernel::SurrogateOp;
use crate::scale::{ExpForm, ExpScale};
use crate::surrogates::{BinaryLoss, PairwiseForm};

pub(super) fn binary_op(loss: BinaryLoss) -> SurrogateOp {
    match loss {
        BinaryLoss::Logistic => SurrogateOp::Logistic,
        BinaryLoss::Hinge => SurrogateOp::Hinge,
        BinaryLoss::SquaredHinge => SurrogateOp::SquaredHinge,
        BinaryLoss::Exponential => SurrogateOp::Exponential,
        BinaryLoss::Squared => SurrogateOp::Squared,
    }
}

pub(super) fn pairwise_op(form: PairwiseForm) -> SurrogateOp {
    match form {
        PairwiseForm::Erf { .. } => SurrogateOp::PairwiseErf,
        PairwiseForm::Sqrt { .. } => SurrogateOp::PairwiseSqrt,
        PairwiseForm::Acon { .. } => SurrogateOp::PairwiseAcon,
        PairwiseForm::LogCosh { .. } => SurrogateOp::PairwiseLogCosh,
    }
}

/// The exponent's scale of a row job: `κ = |β|`, or `1/T` (the kernel divides by `T`).
#[derive(Copy, Clone)]
pub(super) enum Kappa {
    Beta(f32),
    Temperature(f32),
}

impl Kappa {
    /// The prelude's `Params` for a chunk: `T` (1 for β) and the exponent's scaling.
    pub(super) fn params(self, rows: usize, cols: usize, seg_len: u32) -> Params {
        let log2e = std::f64::consts::LOG2_E;
        match self {
            Kappa::Beta(b) => {
                Params::with_scale(rows, cols, 1, seg_len, 1.0, &ExpScale::new(b as f64, log2e))
            }
            Kappa::Temperature(t) => Params::new(rows, cols, 1, seg_len, t),
        }
    }

    /// `κ = s·r` with `s` a power of two in `[1, 2¹²⁷]` and `r ≥ 1` (in `[1, 2)` unless
    /// `κ > 2¹²⁸`, i.e. `T` subnormal, where `s` stops at `2¹²⁷`; or `r = κ < 1`,
    /// `s = 1`): the kernel forms `κ·p·d` as `((p·s)·d)·r` (see `kappa_times` in
    /// shaders/surrogate_rows.wgsl). In f64: `κ = 1/T` is beyond f32 for subnormal `T`.
    pub(super) fn split(self) -> (f32, f32) {
        let k = match self {
            Kappa::Beta(b) => b as f64,
            Kappa::Temperature(t) => 1.0 / t as f64,
        };
        if k < 1.0 {
            return (1.0, k as f32);
        }
        let s = 2f64.powi((k.log2().floor() as i32).min(127));
        (s as f32, (k / s) as f32)
    }

    pub(super) fn form(self) -> ExpForm {
        let log2e = std::f64::consts::LOG2_E;
        match self {
            Kappa::Beta(b) => ExpScale::new(b as f64, log2e).form,
            Kappa::Temperature(t) => ExpScale::temperature(t, log2e).form,
        }
    }
}
