//! Losses over a vocabulary split into shards (tensor-parallel language-model heads, as in
//! Megatron-LM and flash-attention's cross-entropy): each shard holds the same rows and its
//! own columns; the shards exchange only small per-row statistics ([`RowPartial`], 48 bytes
//! per row, whatever the vocabulary) and merge them with an associative, commutative
//! operation; then each shard computes its own slice of the gradient.
//!
//! - [`ShardedCrossEntropy`]: cross-entropy with every option (class or probability
//!   targets, weights, ignore_index, label smoothing, z-loss, softcap, reductions), on any
//!   backend, each shard on its own.
//! - [`row_statistics`], [`logsumexp`], [`row_op`]: logsumexp, softmax and log-softmax of
//!   split rows.
//! - [`ShardedLinearCrossEntropy`]: the fused linear cross-entropy (hidden states times
//!   each shard's weight rows, no logits in memory), the same way.
//! - [`local::cross_entropy`]: all shards in one process, each on its own backend (GPU
//!   engines and the CPU) at once.
//!
//! The results equal the unsharded call's within the crate's tolerance, including the
//! non-finite table (a NaN or +inf in one shard makes the whole row's results what the
//! unsharded call gives; shards of only −inf and shards of no columns merge without NaN).
//!
//! **Transports.** A slice of [`RowPartial`] is plain data (`bytemuck::cast_slice` gives its
//! bytes). Any collective that takes a user-defined reduction carries it in one all-reduce
//! with [`merge_rows`] as the operation (MPI: a contiguous 48-byte datatype and a commutative
//! user operation; see `examples/mpi_sharded.rs`). A collective with only built-in
//! reductions (NCCL) needs two rounds, as flash-attention does: an all-reduce max of `m` over
//! the shards with `s > 0` (−inf from the others), then an all-reduce sum of `s·e^{m−M}`,
//! `lin + k_sum·(m − M)` (a shard with `s = 0` sends 0 and its `lin` unshifted; with no
//! finite logit anywhere, `M = −inf`, every shard sends that), `k_sum`, `xy` (0 on shards
//! without the target), `cols`, and one count per flag bit (a count > 0 sets the flag);
//! after which each rank fills a [`RowPartial`] and carries on from
//! [`ShardedCrossEntropy::finish`]. Or an all-gather of every shard's partials (48·B bytes
//! from each) and [`merge_rows`] on each rank.

mod ce;
pub(crate) mod exact;
mod linear;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
pub(crate) mod pass;
mod rows;

pub use crate::cross_entropy::{merge_rows, RowPartial};
pub use ce::ShardedCrossEntropy;
pub use linear::ShardedLinearCrossEntropy;
pub use pass::{ShardPass, ShardResult, VocabShard};
pub use rows::{logsumexp, row_op, row_statistics};
