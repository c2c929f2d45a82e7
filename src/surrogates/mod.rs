//! The smooth surrogates built on the smooth max, and the classic margin losses: each batched,
//! with its gradient, on every backend ([`crate::Backend::surrogate`]).
//!
//! ## Formulas
//!
//! Row-wise on `[B, C]`, with `p = softmax(κ·x)` per row (`κ = β` or `1/T`):
//!
//! | op | value | gradient `∂/∂x_j` |
//! |----|-------|-------------------|
//! | Boltzmann operator, β | `f = Σ x_j e^{βx_j} / Σ e^{βx_j} = Σ p_j x_j` | `p_j (1 + β(x_j − f))` |
//! | soft-argmax, T | `f = Σ j·p_j` (0-based `j`) | `p_j (j − f) / T` |
//! | smooth accuracy, T | `A = (1/B) Σ_i p_{i,y_i}` | `p_ij (δ_{j,y_i} − p_{i,y_i}) / (T·B)` |
//! | macro smooth F1, T | `F = (1/C) Σ_c 2 TP_c / (P_c + N_c)` | `p_ij (g_ij − Σ_k p_ik g_ik) / T` |
//!
//! with `TP_c = Σ_{i: y_i = c} p_ic`, `P_c = Σ_i p_ic`, `N_c = #{i: y_i = c}` and
//! `g_ik = ∂F/∂p_ik = (2·[y_i = k] − F1_k) / (C·(P_k + N_k))`. Boltzmann is exact at the limits
//! (β → +∞: max, β = 0: mean, β → −∞: min); for `β < 0` it is evaluated as `−f(−x, −β)`, so
//! every backend only ever exponentiates non-positive numbers. A row's values go through the
//! softmax table of the crate docs (applied to `κ·x`): a NaN, a `+inf` (after the sign), or no
//! finite value makes the row's value and gradient NaN; `−inf` entries get weight exactly 0
//! (contributing nothing, even to `Σ p_j x_j`); with `β = 0` any infinite value gives NaN.
//!
//! Binary smooth F1 on logits `x` and labels `y ∈ [0, 1]` (any shape, all elements together):
//! `p = σ(x)`, `F = 2 Σ p·y / Σ (p + y)`, `∂F/∂x_i = p_i (1 − p_i)(2 y_i − F) / Σ(p + y)`; a
//! zero denominator gives `F = 0` (scikit-learn's `zero_division = 0`), as does a class absent
//! from both targets and predictions in the macro form. `σ(±inf)` is 1 / 0 (a hard prediction);
//! a NaN logit makes `F` and every gradient NaN.
//!
//! Element-wise on two same-shaped arrays, `d = a − b`, the pairwise smooth maximum in its three
//! classic forms and one built on the smooth absolute value ([`PairwiseForm`]), each `max(a, b)` in the limit of its parameter and each
//! with `∂f/∂a + ∂f/∂b = 1`:
//!
//! | form | `f(a, b)` | limit | `f − max(a, b)` |
//! |------|-----------|-------|-----------------|
//! | `Erf { mu }` | `(a + b + d·erf(μd)) / 2 = max − |d|·erfc(μ|d|)/2` | μ → ∞ | in `[−0.1202/μ, 0]` |
//! | `Sqrt { mu }` | `(a + b + √(d² + μ²)) / 2 = max + μ² / (2(r + |d|))` | μ → 0 | in `(0, μ/2]` |
//! | `Acon { beta }` | `d·σ(βd) + b` (ACON-C with `p1 = 1, p2 = 0`, Ma et al. 2021) | β → ∞ | in `[−0.2785/β, 0]` |
//! | `LogCosh { k }` | `(a + b + ln(e^{kd} + e^{−kd})/k) / 2 = max + ln(1 + e^{−2k|d|})/(2k)` | k → ∞ | in `[0, ln 2/(2k)]` |
//!
//! (`0.1202 = max_z z·erfc(z)/2`, `0.2785 = max_t t·σ(−t)`; both checked numerically in the
//! tests.) The erf form is not monotone in the smaller argument (`∂f/∂b < 0` for large `d`).
//! A non-finite `a` or `b` makes that element's value and gradients NaN.
//!
//! Binary losses on scores `f` ([`BinaryLoss`]), weighted by `w` (broadcast to the scores'
//! shape) and reduced by [`Reduction`](crate::Reduction) (mean over all elements, as PyTorch):
//!
//! | loss | labels | `ℓ(f, y)` | `∂ℓ/∂f` |
//! |------|--------|-----------|---------|
//! | `Logistic` | `y ∈ [0, 1]` | `(1 − y)f − l_w·log σ(f)`, `l_w = 1 + (pw − 1)y` | `l_w σ(f) − pw·y` |
//! | `Hinge` | `y = ±1` | `max(0, 1 − yf)` | `−y·[1 − yf > 0]` |
//! | `SquaredHinge` | `y = ±1` | `max(0, 1 − yf)²` | `−2y·max(0, 1 − yf)` |
//! | `Exponential` | `y = ±1` | `e^{−yf}` | `−y·e^{−yf}` |
//! | `Squared` | `y = ±1` | `(1 − yf)² = (f − y)²` | `−2y(1 − yf)` |
//!
//! `Logistic` is `torch.nn.functional.binary_cross_entropy_with_logits` (aten Loss.cpp:
//! `(1 − y)·x − l_w·log_sigmoid(x)`, `log σ(f) = min(f, 0) − log1p(e^{−|f|})`, finite for any
//! finite `f`), including `pos_weight` (`pw`, one per column, broadcast along the last
//! dimension) and its infinities: `f = +inf` gives `+inf` for `y < 1` and NaN for `y = 1`,
//! `f = −inf` gives NaN (PyTorch computes `0·inf` and `inf − inf` there), with finite gradients.
//! The margin losses take labels `±1`, and `0` as `−1` so `{0, 1}` data works unchanged; a
//! non-finite score there makes that element NaN (a score of ±inf has no margin).
//!
//! Multi-class hinge, `torch.nn.MultiMarginLoss`: per row `ℓ_i = (w_{y_i}/C) Σ_{j≠y_i}
//! max(0, margin − x_{y_i} + x_j)^p` for `p ∈ {1, 2}` (the weight multiplies after the power, as
//! in aten LossMultiMargin.cpp); `∂ℓ_i/∂x_j = (w_y/C)·p·max(0, z_j)^{p−1}·[z_j > 0]` for
//! `j ≠ y`, and `∂ℓ_i/∂x_y = −Σ_{j≠y} ∂ℓ_i/∂x_j`. Mean divides by `B`. One deliberate difference:
//! a row with a NaN or infinite logit gives NaN loss and gradient (PyTorch's `z > 0` test
//! silently drops NaN terms, which can make a NaN row's loss 0).
//!
//! More smoothings, the smooth absolute value (and the smooth max built from it), the
//! power-mean max and the smoothed floor: their f64 definitions, gradients and bounds in
//! [`smoothings`]. The element-wise ones run on every backend as
//! [`Surrogate::Smoothing`] ([`ElementSmoothing`]), the smooth-abs max as
//! [`PairwiseForm::LogCosh`], the power-mean max as [`Surrogate::PowerMax`].
//!
//! ## Gradients and reductions
//!
//! Every op returns its gradient with respect to its (first) input. For a value per row or per
//! element (Boltzmann, soft-argmax, pairwise, losses with [`Reduction::None`](crate::Reduction::None)) it is the
//! gradient of their sum, i.e. each row's or element's own derivative. Mean over zero elements
//! is NaN and sum is 0, as in PyTorch. The CPU and the reference reduce in f64; the GPU reduces
//! on the device with compensated f32 sums finished in f64, within
//! [`crate::gpu::device_sum_bound`] of the exact sum of its f32 values.

mod call;
mod prepare;
pub mod reference;
mod shaped;
pub mod smoothings;

pub use call::{
    BinaryLoss, BinaryOptions, ElementSmoothing, MultiMarginOptions, PairwiseForm, Surrogate,
    SurrogateOutput, Value,
};
pub use prepare::validate;
pub(crate) use prepare::{
    check_power_input, flat, grad_scale, macro_f1_from_columns, matrix, output, prepare, reduce,
    Prepared,
};
pub(crate) use shaped::run as run_shaped;
pub use shaped::validate_tensor;
