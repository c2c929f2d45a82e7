//! A sharded call whose shards all live in this process: each shard on its own backend (GPU
//! engines, the CPU, the reference), the shards at once, one thread each.

use super::ce::ShardedCrossEntropy;
use super::pass::VocabShard;
use crate::backend::Backend;
use crate::cross_entropy::{
    merge_rows, CrossEntropyOptions, CrossEntropyOutput, RowPartial, Targets,
};
use crate::element::{MatrixView, Tensor};
use crate::error::{Error, Result};
use ndarray::s;

/// One shard of an in-process sharded call: the backend it runs on, its logits `[B, C_k]`
/// and the column they start at.
#[derive(Clone)]
pub struct LocalShard<'a> {
    /// The backend this shard runs on.
    pub backend: &'a (dyn Backend + Sync),
    /// The shard's logits, `[B, C_k]`, any element type.
    pub logits: MatrixView<'a>,
    /// The shard's first column in the whole vocabulary.
    pub offset: usize,
}

/// An error unless the shards' columns tile `[0, total)`: each column in exactly one shard.
fn tiles(shards: &[LocalShard<'_>], total: usize) -> Result<()> {
    let mut spans: Vec<(usize, usize)> = shards
        .iter()
        .map(|sh| (sh.offset, sh.logits.dim().1))
        .collect();
    spans.sort_unstable();
    let mut next = 0usize;
    for (offset, cols) in spans {
        let end = offset.checked_add(cols);
        match end {
            Some(e) if offset == next && e <= total => next = e,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "the shards do not tile the {total} classes: a shard of {cols} columns at \
                     offset {offset} where column {next} comes next"
                )))
            }
        }
    }
    if next != total {
        return Err(Error::InvalidInput(format!(
            "the shards cover columns [0, {next}) of {total}"
        )));
    }
    Ok(())
}

/// Runs `f` on every shard at once (one scoped thread each), in order.
fn each<T: Send>(
    shards: &[LocalShard<'_>],
    f: impl Fn(usize, &LocalShard<'_>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    std::thread::scope(|sc| {
        let handles: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(k, sh)| {
                let f = &f;
                sc.spawn(move || f(k, sh))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| Error::InvalidInput("a shard's thread panicked".into()))?
            })
            .collect()
    })
}

/// A cross-entropy over rows of `total` classes split into `shards` held in this process,
/// every shard on its own backend at once: the loss, lse and sums of the whole rows, and
/// (when `options.gradient`) each shard's gradient slice, in the shards' order, in the
/// logits' types. `targets` are the whole call's (class targets `[B]`, or probabilities
/// `[B, total]`, which each shard gets its columns of).
pub fn cross_entropy(
    shards: &[LocalShard<'_>],
    total: usize,
    targets: &Targets<'_>,
    options: &CrossEntropyOptions<'_>,
) -> Result<CrossEntropyOutput<Vec<Tensor>>> {
    tiles(shards, total)?;
    let calls: Vec<ShardedCrossEntropy> = shards
        .iter()
        .map(|sh| {
            let cols = sh.logits.dim().1;
            let t = match targets {
                Targets::Probabilities(q) => {
                    let q = q
                        .clone()
                        .into_dimensionality::<ndarray::Ix2>()
                        .map_err(|e| Error::InvalidInput(format!("probability targets: {e}")))?;
                    if q.dim().1 != total {
                        return Err(Error::InvalidInput(format!(
                            "probability targets of {} columns for a shard [{}, {}) of {total}",
                            q.dim().1,
                            sh.offset,
                            sh.offset + cols
                        )));
                    }
                    Targets::probabilities(q.slice_move(s![.., sh.offset..sh.offset + cols]))
                }
                other => other.clone(),
            };
            let shard = VocabShard {
                offset: sh.offset,
                total,
            };
            Ok(ShardedCrossEntropy::new(shard, t, options))
        })
        .collect::<Result<_>>()?;
    let local = each(shards, |k, sh| {
        calls[k].statistics(sh.backend, sh.logits.view())
    })?;
    let rows = shards.first().map_or(0, |sh| sh.logits.dim().0);
    let mut merged = vec![RowPartial::EMPTY; rows];
    for l in &local {
        merge_rows(&mut merged, l)?;
    }
    let first = calls
        .first()
        .ok_or_else(|| Error::InvalidInput("a sharded call needs at least one shard".into()))?;
    let head = first.finish(&merged)?;
    let grad = if options.gradient {
        Some(each(shards, |k, sh| {
            calls[k].gradient(sh.backend, sh.logits.view(), &local[k], &merged, None)
        })?)
    } else {
        None
    };
    Ok(head.with_grad(grad))
}
