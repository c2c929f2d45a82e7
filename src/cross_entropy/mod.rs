//! Softmax cross-entropy: options, validation, and the host-side preparation every backend
//! shares (targets resolved to class-or-ignored, mean denominators, gradient scales).
//!
//! Semantics are `torch.nn.functional.cross_entropy` (aten/src/ATen/native/LossNLL.cpp):
//! with `logp = log_softmax(x)`, class target `y`, weights `w`, smoothing `ls`, `C` classes,
//!
//! ```text
//! nll_i    = −w[y_i]·logp_i[y_i]
//! smooth_i = −Σ_c w[c]·logp_i[c]                (only when ls > 0)
//! loss_i   = (1 − ls)·nll_i + (ls/C)·smooth_i   (0 for ignored rows)
//! mean     = Σ_i loss_i / Σ_{i not ignored} w[y_i]
//! ```
//!
//! and for probability targets `q` (smoothed to `q(1 − ls) + ls/C`):
//! `loss_i = −Σ_c w[c]·q_ic·logp_i[c]`, mean = Σ_i loss_i / B. Extras, off by default:
//! `z_loss` adds `z·lse_i²` per non-ignored row (unweighted; mean divides it by the number of
//! non-ignored rows), and `softcap` replaces the logits by `c·tanh(x/c)` before everything.

pub(crate) mod fast;
mod options;
mod partial;
mod prepare;
pub mod reference;

pub(crate) use fast::finish_losses;
pub use options::{
    CrossEntropyOptions, CrossEntropyOutput, Loss, LossSums, Reduction, Targets, Upstream,
};
pub use partial::{merge_rows, RowPartial};
pub use prepare::validate;
pub(crate) use prepare::{prepare, reduce, Prepared};
