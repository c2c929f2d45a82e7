//! The partials and loss sums across processes on MPI (rsmpi): one all-reduce each, with
//! [`RowPartial::merge`] as a user-defined commutative operation; and the two whole sharded
//! calls built on them (cross-entropy of logit shards, fused linear cross-entropy of weight
//! shards).

use super::ce::ShardedCrossEntropy;
use super::linear::ShardedLinearCrossEntropy;
use crate::backend::Backend;
use crate::cross_entropy::RowPartial;
use crate::cross_entropy::{CrossEntropyOutput, LossSums};
use crate::element::{MatrixView, Tensor};
use crate::error::Result;
use crate::gpu::Matrix;
use crate::linear_ce::pass::LinearGrads;
use mpi::collective::{CommunicatorCollectives, SystemOperation, UserOperation};
use mpi::datatype::{DynBuffer, DynBufferMut, Equivalence, UserDatatype};
use mpi::topology::Communicator;

/// [`RowPartial`] as MPI sees it: 48 contiguous bytes, so that a reduction splits a buffer
/// only between rows (MPI segments reductions by whole datatype elements).
// SAFETY: `RowPartial` is `repr(C)`, `Pod`, 48 bytes with no padding: every byte is data.
unsafe impl Equivalence for RowPartial {
    type Out = UserDatatype;
    fn equivalent_datatype() -> UserDatatype {
        UserDatatype::contiguous(
            std::mem::size_of::<RowPartial>() as mpi::Count,
            &u8::equivalent_datatype(),
        )
    }
}

const SIZE: usize = std::mem::size_of::<RowPartial>();

/// `inout[k] = merge(in[k], inout[k])` on the raw buffers of one reduction step (they hold
/// whole [`RowPartial`]s but need not be aligned for them: each is read and written as bytes).
fn merge_buffers(input: DynBuffer, mut inout: DynBufferMut) {
    let n = input.len();
    // SAFETY: MPI hands both buffers with `n` elements of the 48-byte datatype above.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(input.as_ptr() as *const u8, n * SIZE),
            std::slice::from_raw_parts_mut(inout.as_mut_ptr() as *mut u8, n * SIZE),
        )
    };
    for (x, y) in a.chunks_exact(SIZE).zip(b.chunks_exact_mut(SIZE)) {
        let p: RowPartial = bytemuck::pod_read_unaligned(x);
        let q: RowPartial = bytemuck::pod_read_unaligned(y);
        y.copy_from_slice(bytemuck::bytes_of(&p.merge(&q)));
    }
}

/// Merges every rank's `partials` in place: afterwards each rank holds the statistics of the
/// whole rows. One all-reduce of 48 bytes per row.
pub fn all_reduce_partials<C: Communicator>(comm: &C, partials: &mut [RowPartial]) {
    let mine = partials.to_vec();
    let op = UserOperation::commutative(merge_buffers);
    comm.all_reduce_into(&mine[..], partials, &op);
}

/// Adds every rank's [`LossSums`]: the data-parallel reduction (each rank its own rows), one
/// all-reduce of 32 bytes.
pub fn all_reduce_sums<C: Communicator>(comm: &C, sums: &LossSums) -> LossSums {
    let mine: [f64; 4] = bytemuck::cast(*sums);
    let mut all = [0.0f64; 4];
    comm.all_reduce_into(&mine[..], &mut all[..], SystemOperation::sum());
    bytemuck::cast(all)
}

/// A whole sharded cross-entropy on this rank: its shard's statistics on `backend`, the
/// all-reduce, the loss of the whole rows (the same on every rank), and, when the options ask
/// for it, this rank's slice of the gradient.
pub fn cross_entropy<C: Communicator>(
    comm: &C,
    call: &ShardedCrossEntropy,
    backend: &dyn Backend,
    logits: MatrixView<'_>,
) -> Result<CrossEntropyOutput<Tensor>> {
    let local = call.statistics(backend, logits.view())?;
    let mut merged = local.clone();
    all_reduce_partials(comm, &mut merged);
    let head = call.finish(&merged)?;
    let grad = if call.options().gradient {
        Some(call.gradient(backend, logits, &local, &merged, None)?)
    } else {
        None
    };
    Ok(head.with_grad(grad))
}

/// A whole vocabulary-sharded fused linear cross-entropy on this rank: its statistics from
/// the hidden states `[N, D]` and its weight rows `[V_k, D]` (and bias) on `backend`, the
/// all-reduce of the statistics, the loss of the whole rows (the same on every rank), and,
/// when the options ask for the gradient, the gradients of its weight rows and bias and of
/// the hidden states: every rank's summand added by one all-reduce of `N·D` floats, so each
/// rank holds the whole `d loss / d hidden`.
pub fn linear_cross_entropy<C: Communicator>(
    comm: &C,
    call: &ShardedLinearCrossEntropy,
    backend: &dyn Backend,
    hidden: Matrix<'_>,
    weight: Matrix<'_>,
    bias: Option<ndarray::ArrayView1<'_, f32>>,
) -> Result<(CrossEntropyOutput<()>, Option<LinearGrads>)> {
    let local = call.statistics(backend, hidden.reborrow(), weight.reborrow(), bias)?;
    let mut merged = local.clone();
    all_reduce_partials(comm, &mut merged);
    let head = call.finish(&merged)?;
    if !call.options().gradient {
        return Ok((head, None));
    }
    let mut g = call.gradient(backend, hidden, weight, bias, &local, &merged)?;
    let mine = g.hidden.clone();
    let (Some(src), Some(dst)) = (mine.as_slice(), g.hidden.as_slice_mut()) else {
        return Err(crate::Error::InvalidInput(
            "internal: the hidden states' gradient is not contiguous".into(),
        ));
    };
    comm.all_reduce_into(src, dst, SystemOperation::sum());
    Ok((head, Some(g)))
}
