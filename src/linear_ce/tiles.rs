//! The one loop over vocabulary tiles, shared by every engine: an engine computes a tile's
//! logits, runs the shard passes of `crate::shard` on them, and accumulates the gradients;
//! this file decides the tiles and what each pass does with them.

use super::call::reborrow;
use super::pass::{LinearGrads, LinearPass, LinearPassResult};
use crate::cross_entropy::{merge_rows, RowPartial, Targets};
use crate::element::DType;
use crate::error::{Error, Result};
use crate::shard::pass::{Setup, ShardPass, VocabShard};
use ndarray::s;
use std::ops::Range;

/// What an engine does with one tile of classes `cols` (indices into the shard's weight
/// rows). The engine holds the inputs, one tile of logits and the gradient accumulators.
pub(crate) trait TileEngine {
    /// `Z = H·W[cols]ᵀ + b[cols]` into the engine's tile, `[N, cols.len()]`.
    fn product(&mut self, cols: Range<usize>) -> Result<()>;
    /// The current tile's statistics (`pass` is its statistics pass).
    fn statistics(&mut self, pass: &ShardPass) -> Result<Vec<RowPartial>>;
    /// Replaces the current tile by its gradient `G` (`pass` is its gradient pass).
    fn gradient(&mut self, pass: &ShardPass) -> Result<()>;
    /// `dH += G·W[cols]`, `dW[cols] = Gᵀ·H`, `db[cols] = Σ_rows G`.
    fn accumulate(&mut self, cols: Range<usize>) -> Result<()>;
    /// The gradients accumulated over every tile.
    fn grads(self) -> Result<LinearGrads>;
}

/// The most bytes of per-tile statistics a statistics pass keeps for the gradient pass (48
/// per row and tile): as much as a CPU tile of logits. Past it the gradient pass recomputes
/// each tile's statistics (one more read of the tile, next to its three products) rather
/// than hold `48·N·V/V_t` bytes (at `[2048, 1024]·[32000, 1024]`, 6.2 MB of a fused call's
/// 28 MB of heap beyond its results, against the materialized path's 525 MB).
const KEEP_STATS_BYTES: usize = 4 << 20;

/// Classes per tile for `rows` rows: about `budget` logits per tile, a multiple of 64, at
/// least 64 (the tile's products keep their efficiency) and at most the vocabulary.
pub(crate) fn tile_cols(rows: usize, vocab: usize, budget: usize) -> usize {
    let t = (budget / rows.max(1)) / 64 * 64;
    t.max(64).min(vocab.max(1))
}

/// The tiles `[0, vocab)` cut into `width` classes each (the last one shorter).
fn tiles(vocab: usize, width: usize) -> Vec<Range<usize>> {
    (0..vocab)
        .step_by(width.max(1))
        .map(|a| a..(a + width).min(vocab))
        .collect()
}

/// The shard setup of tile `cols`: its place in the whole vocabulary and its targets.
fn setup<'o>(p: &LinearPass<'_, 'o>, cols: &Range<usize>) -> Result<Setup<'o>> {
    let shard = VocabShard {
        offset: p.shard.offset + cols.start,
        total: p.shard.total,
    };
    let targets = match &p.targets {
        Targets::Probabilities(q) => {
            Targets::Probabilities(q.slice(s![.., cols.clone()]).into_dyn())
        }
        t => reborrow(t),
    };
    Setup::new(shard, (p.dims().0, cols.len()), &targets, &p.options)
}

/// Runs `p` on `engine` over tiles of `width` classes (`p.tile_cols` overrides it).
pub(crate) fn run<E: TileEngine>(
    mut engine: E,
    p: &LinearPass,
    width: usize,
) -> Result<LinearPassResult> {
    let (n, _, v) = p.dims();
    let width = p.tile_cols.unwrap_or(width);
    if width == 0 {
        return Err(Error::InvalidInput("tiles of 0 classes".into()));
    }
    let tiles = tiles(v, width);
    let mut partials = vec![
        RowPartial {
            cols: 0,
            ..RowPartial::EMPTY
        };
        n
    ];
    let mut tile_stats = Vec::new();
    // (Only for a gradient pass to come.)
    let keep = p.options.gradient
        && tiles.len() * n * std::mem::size_of::<RowPartial>() <= KEEP_STATS_BYTES;
    match p.grad {
        None => {
            for cols in &tiles {
                engine.product(cols.clone())?;
                let pass = ShardPass::new(setup(p, cols)?, None, DType::F32)?;
                let part = engine.statistics(&pass)?;
                merge_rows(&mut partials, &part)?;
                if keep {
                    tile_stats.push(part);
                }
            }
            Ok(LinearPassResult {
                partials,
                tile_stats,
                grads: None,
                tile_cols: width,
            })
        }
        Some((local, merged)) => {
            check_local(local, n, v)?;
            let cached = p.tile_stats.filter(|c| {
                c.len() == tiles.len()
                    && c.iter()
                        .zip(&tiles)
                        .all(|(s, t)| s.len() == n && s.iter().all(|q| q.cols as usize == t.len()))
            });
            for (k, cols) in tiles.iter().enumerate() {
                engine.product(cols.clone())?;
                let own = match cached {
                    Some(c) => c[k].clone(),
                    None => {
                        let pass = ShardPass::new(setup(p, cols)?, None, DType::F32)?;
                        engine.statistics(&pass)?
                    }
                };
                let pass = ShardPass::new(setup(p, cols)?, Some((&own, merged)), DType::F32)?;
                engine.gradient(&pass)?;
                engine.accumulate(cols.clone())?;
            }
            Ok(LinearPassResult {
                partials: local.to_vec(),
                tile_stats,
                grads: Some(engine.grads()?),
                tile_cols: width,
            })
        }
    }
}

/// An error unless `local` is statistics of `n` rows over this shard's `v` classes.
fn check_local(local: &[RowPartial], n: usize, v: usize) -> Result<()> {
    if local.len() != n {
        return Err(Error::InvalidInput(format!(
            "this shard's statistics have {} rows, the hidden states {n}",
            local.len()
        )));
    }
    match local.iter().position(|q| q.cols as usize != v) {
        Some(i) => Err(Error::InvalidInput(format!(
            "row {i}: this shard's statistics cover {} classes, its weights {v}",
            local[i].cols
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{tile_cols, tiles};

    #[test]
    fn tiles_cover_the_vocabulary_once() {
        assert_eq!(tiles(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(tiles(0, 4), vec![]);
        assert_eq!(tile_cols(2048, 32000, 1 << 20), 512);
        assert_eq!(tile_cols(1 << 20, 32000, 1 << 20), 64);
        assert_eq!(tile_cols(1, 10, 1 << 20), 10);
        assert_eq!(tile_cols(0, 0, 1 << 20), 1);
    }
}
