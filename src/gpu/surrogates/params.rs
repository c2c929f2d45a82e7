//! What the surrogate kernels are told: the uniform `SParams`, the op codes and the split of
//! the exponent's scale `κ`.

use crate::gpu::encode::Params;
use crate::scale::{ExpForm, ExpScale};
use crate::surrogates::{BinaryLoss, PairwiseForm};

/// Mirrors `struct SParams` in shaders/surrogate_common.wgsl (80 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct SParams {
    pub(super) n: u32,
    pub(super) flags: u32,
    pub(super) kappa: f32,
    pub(super) sign: f32,
    pub(super) a: f32,
    pub(super) u: f32,
    pub(super) margin: f32,
    pub(super) f1: f32,
    pub(super) inv_d: f32,
    pub(super) p: u32,
    /// 1/2, 1/4 and 2⁻⁹, each twice (see `SParams` in the shader for why).
    pub(super) half: f32,
    pub(super) half2: f32,
    pub(super) quarter: f32,
    pub(super) quarter2: f32,
    pub(super) small_h: f32,
    pub(super) small_h2: f32,
    pub(super) _pad0: u32,
    /// Rows: `κ = kappa·kappa_r` (see [`Kappa::split`]).
    pub(super) kappa_r: f32,
    pub(super) _pad: [u32; 2],
}

impl Default for SParams {
    fn default() -> Self {
        SParams {
            n: 0,
            flags: 0,
            kappa: 0.0,
            sign: 0.0,
            a: 0.0,
            u: 0.0,
            margin: 0.0,
            f1: 0.0,
            inv_d: 0.0,
            p: 0,
            half: 0.5,
            half2: 0.5,
            quarter: 0.25,
            quarter2: 0.25,
            small_h: 1.0 / 512.0,
            small_h2: 1.0 / 512.0,
            _pad0: 0,
            kappa_r: 0.0,
            _pad: [0; 2],
        }
    }
}

pub(super) const FLAG_POS_WEIGHT: u32 = 1;
pub(super) const FLAG_WEIGHT: u32 = 2;

/// Op codes (`OP` in the shaders, passed as `ShaderKey::ce_bits`).
pub(super) mod op {
    pub const BOLTZMANN: u32 = 1;
    pub const SOFT_ARGMAX: u32 = 2;
    pub const ACCURACY: u32 = 3;
    pub const F1_GRAD: u32 = 4;
    pub const MARGIN: u32 = 5;
    pub const F1_COLUMNS: u32 = 6;
    pub const F1_SIGMOID: u32 = 30;
    pub const F1_BINARY_GRAD: u32 = 31;
}

pub(super) fn binary_op(loss: BinaryLoss) -> u32 {
    match loss {
        BinaryLoss::Logistic => 10,
        BinaryLoss::Hinge => 11,
        BinaryLoss::SquaredHinge => 12,
        BinaryLoss::Exponential => 13,
        BinaryLoss::Squared => 14,
    }
}

pub(super) fn pairwise_op(form: PairwiseForm) -> u32 {
    match form {
        PairwiseForm::Erf { .. } => 20,
        PairwiseForm::Sqrt { .. } => 21,
        PairwiseForm::Acon { .. } => 22,
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
