//! The row ops (logsumexp, softmax, log-softmax): the op and its output (`op.rs`), and the f64
//! oracle (`reference.rs`). The fast backends are `cpu::rows` and `gpu::rows`.

mod op;
pub(crate) mod reference;

pub use op::{check_temperature, RowOp, RowOutput};
