//! Fused linear cross-entropy: the loss and gradients of `cross_entropy(H·Wᵀ + b, targets)`
//! from the hidden states `H [N, D]` and the classifier weights `W [V, D]`, without the
//! `[N, V]` logits ever in memory (Cut Cross-Entropy, Wijmans et al. 2024; Liger-Kernel's
//! fused linear cross-entropy).
//!
//! **How.** The vocabulary is cut into tiles of `V_t` classes (`tiles.rs`). Forward, each
//! tile's logits `Z_t = H·W_tᵀ + b_t` (`[N, V_t]`, one tile at a time) go through the
//! vocabulary-shard statistics pass of [`crate::shard`]: a tile is a shard, its per-row
//! [`crate::cross_entropy::RowPartial`]s merge exactly into the whole row's, and the loss, lse and [`crate::LossSums`]
//! come from the merged statistics with every cross-entropy option. Backward, each tile's
//! logits are recomputed and the shard gradient pass turns them, in place, into
//! `G_t = d loss / d Z_t`; then `dH += G_t·W_t`, `dW_t = G_tᵀ·H`, `db_t = Σ_rows G_t`. Peak
//! extra memory is one tile (plus its gradient and the per-tile statistics, `48·N` bytes per
//! tile, kept for the backward up to 4 MiB and recomputed past it), never `N·V`. Rows are
//! never split, so a tile's shard pass sees the whole call's targets, weights and mean
//! denominators. Rows whose target is `ignore_index` are left out of the backward (`kept.rs`):
//! their gradient is 0, so they cost nothing there (the forward still gives their lse, as every
//! cross-entropy here does).
//!
//! **Engines.** The CPU (`crate::cpu`'s `linear.rs`) multiplies through the `gemm` crate and
//! runs its ordinary cross-entropy kernels on each tile; the GPU (`crate::gpu`'s `linear/`)
//! runs tiled WGSL products laid out per adapter class (shared-memory tiles on a GPU; on a
//! CPU adapter no barriers and vec4 loads along whichever axis each operand runs) and its
//! cross-entropy kernels on the device tile; the reference materializes the shard's logits
//! in f64. Forward+backward costs four products (the logits twice) where the materialized
//! path costs three: the fused path's time floor is 4/3 of the materialized one's.
//!
//! **Not done.** A GPU call cannot be recorded into the caller's encoder: the tiles'
//! statistics are merged and the gradient coefficients formed on the host in f64 between the
//! passes. Gradient tiles are never skipped (Cut Cross-Entropy's filtering of tiles whose
//! softmax is below f32 resolution): every tile's gradient is computed.
//!
//! **Vocabulary shards** ([`crate::shard::ShardedLinearCrossEntropy`]): a process holding
//! `W_k` runs the same passes on its classes; the statistics merge across shards exactly as
//! the tiles' do, and `dH` is the sum of every shard's.
//!
//! **Accuracy.** The products accumulate in f32 (f16 / bf16 inputs are widened exactly). A
//! logit `z_ij = Σ_k h_ik w_jk` summed in f32 in any order is within
//! `γ_D·Σ_k |h_ik w_jk|`, `γ_D = D·u/(1 − D·u)`, `u = 2⁻²⁴` (Higham, *Accuracy and Stability
//! of Numerical Algorithms*, §3.1), of the exact one; every result then follows the
//! cross-entropy's own bounds on those logits, and the gradients add one more product of the
//! same kind (`tests/common/linear.rs` states the bound each test applies).

mod api;
pub(crate) mod call;
mod kept;
pub(crate) mod pass;
pub(crate) mod product;
pub(crate) mod reference;
pub(crate) mod tiles;

pub use api::{linear_cross_entropy_rows, linear_cross_entropy_tiled};
pub use pass::{LinearCrossEntropyOutput, LinearGrads, LinearPass, LinearPassResult};
