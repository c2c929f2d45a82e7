//! The CPU engine of the fused linear cross-entropy (`crate::linear_ce`): each vocabulary
//! tile's logits by one `gemm` product into a tile buffer kept across tiles, the tile's
//! shard passes by the ordinary cross-entropy kernels (`super::ce`), and the gradients by two
//! more products per tile. Everything runs on rayon's pool: `gemm` splits each product over
//! its threads, the cross-entropy kernels split the tile's rows.
//!
//! Memory beyond the inputs and outputs: the tile (`N·V_t` f32, about [`TILE_LOGITS`]), its
//! gradient (the same again, backward only), f16 / bf16 inputs widened (`H` once, `W` one
//! tile at a time), and 48 bytes of statistics per row and tile.

use crate::backend::Backend;
use crate::cross_entropy::RowPartial;
use crate::element::MatrixView;
use crate::error::{Error, Result};
use crate::linear_ce::pass::{LinearGrads, LinearPass, LinearPassResult};
use crate::linear_ce::product::gemm;
use crate::linear_ce::tiles::{self, TileEngine};
use crate::shard::pass::ShardPass;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, CowArray, Ix2};
use std::ops::Range;

/// Logits per tile: 4 MiB of f32, which keeps a tile's passes in the last-level cache of
/// this machine kind and costs the products nothing measurable (tiles of 4096 classes
/// measured the same as whole vocabularies at `[2048, 1024]·[1024, 32000]`).
pub(crate) const TILE_LOGITS: usize = 1 << 20;

struct CpuTiles<'a> {
    cpu: &'a dyn Backend,
    h: CowArray<'a, f32, Ix2>,
    w: MatrixView<'a>,
    bias: Option<ArrayView1<'a, f32>>,
    /// The current tile's classes and, for f16 / bf16 weights, its rows widened.
    cols: Range<usize>,
    w_tile: Option<Array2<f32>>,
    /// The current tile's logits, `N·V_t` of a buffer kept across tiles.
    z: Vec<f32>,
    /// The current tile's gradient.
    g: Option<Array2<f32>>,
    dh: Array2<f32>,
    dw: Array2<f32>,
    db: Option<Array1<f64>>,
}

impl CpuTiles<'_> {
    fn z(&self) -> Result<ArrayView2<'_, f32>> {
        let shape = (self.h.nrows(), self.cols.len());
        ArrayView2::from_shape(shape, &self.z[..shape.0 * shape.1])
            .map_err(|e| Error::InvalidInput(format!("internal: tile {shape:?}: {e}")))
    }
}

/// The weight rows `cols` in f32: `w`'s own, or (f16 / bf16) their widened copy `widened`.
fn weight_tile<'s>(
    w: &'s MatrixView<'_>,
    widened: &'s Option<Array2<f32>>,
    cols: Range<usize>,
) -> Result<ArrayView2<'s, f32>> {
    match (w, widened) {
        (MatrixView::F32(w), _) => Ok(w.slice(s![cols, ..])),
        (_, Some(t)) => Ok(t.view()),
        (_, None) => Err(Error::InvalidInput(
            "internal: no widened weight tile".into(),
        )),
    }
}

impl TileEngine for CpuTiles<'_> {
    fn product(&mut self, cols: Range<usize>) -> Result<()> {
        let n = self.h.nrows();
        self.w_tile = match &self.w {
            MatrixView::F32(_) => None,
            w => Some(w.slice_rows(cols.clone()).to_f32().into_owned()),
        };
        self.cols = cols.clone();
        let len = n * cols.len();
        if self.z.len() < len {
            self.z.resize(len, 0.0);
        }
        let (h, bias) = (self.h.view(), self.bias);
        let w_tile = weight_tile(&self.w, &self.w_tile, cols.clone())?;
        let mut z = ndarray::ArrayViewMut2::from_shape((n, cols.len()), &mut self.z[..len])
            .map_err(|e| Error::InvalidInput(format!("internal: tile: {e}")))?;
        match bias {
            Some(b) => z.assign(
                &b.slice(s![cols])
                    .broadcast((n, w_tile.nrows()))
                    .ok_or_else(|| {
                        Error::InvalidInput("internal: bias does not broadcast".into())
                    })?,
            ),
            None => z.fill(0.0),
        }
        gemm(z, bias.is_some(), h, w_tile.t())
    }

    fn statistics(&mut self, pass: &ShardPass) -> Result<Vec<RowPartial>> {
        Ok(self
            .cpu
            .cross_entropy_shard(self.z()?.into(), pass)?
            .partials)
    }

    fn gradient(&mut self, pass: &ShardPass) -> Result<()> {
        let g = self.cpu.cross_entropy_shard(self.z()?.into(), pass)?.grad;
        let g =
            g.ok_or_else(|| Error::InvalidInput("the gradient pass gave no gradient".into()))?;
        self.g = Some(g.into_typed()?);
        Ok(())
    }

    fn accumulate(&mut self, cols: Range<usize>) -> Result<()> {
        let g = self
            .g
            .take()
            .ok_or_else(|| Error::InvalidInput("internal: no tile gradient".into()))?;
        let w_tile = weight_tile(&self.w, &self.w_tile, cols.clone())?;
        gemm(self.dh.view_mut(), true, g.view(), w_tile)?;
        let dw = self.dw.slice_mut(s![cols.clone(), ..]);
        gemm(dw, false, g.t(), self.h.view())?;
        if let Some(db) = &mut self.db {
            let mut col = db.slice_mut(s![cols]);
            for row in g.rows() {
                col.zip_mut_with(&row, |a, &v| *a += v as f64);
            }
        }
        Ok(())
    }

    fn grads(self) -> Result<LinearGrads> {
        Ok(LinearGrads {
            hidden: self.dh,
            weight: self.dw,
            bias: self.db.map(|b| b.mapv(|v| v as f32)),
        })
    }
}

/// Runs `p` on the CPU in tiles of about [`TILE_LOGITS`] logits.
/// (`cpu`: the CPU backend, whose build the caller has checked.)
pub(crate) fn pass(cpu: &dyn Backend, p: &LinearPass) -> Result<LinearPassResult> {
    let (n, d, v) = p.dims();
    let (h, w) = p.host()?;
    let grad = p.grad.is_some();
    let engine = CpuTiles {
        cpu,
        h: h.to_f32(),
        w,
        bias: p.bias,
        cols: 0..0,
        w_tile: None,
        z: Vec::new(),
        g: None,
        dh: Array2::zeros(if grad { (n, d) } else { (0, 0) }),
        dw: Array2::zeros(if grad { (v, d) } else { (0, 0) }),
        db: p.bias.filter(|_| grad).map(|_| Array1::zeros(v)),
    };
    tiles::run(engine, p, tiles::tile_cols(n, v, TILE_LOGITS))
}
