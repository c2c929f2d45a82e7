//! The f64 reference of a fused linear cross-entropy pass: the logits `H·Wᵀ + b` of the whole
//! shard in f64 (never rounded to f32), the f64 shard passes of `crate::shard::exact`, and the
//! gradients' products in f64, rounded to f32 once at the end. It materializes the logits;
//! it is the oracle, not a path to run large vocabularies on.

use super::pass::{LinearGrads, LinearPass, LinearPassResult};
use super::product::gemm;
use super::tiles::{self, TileEngine};
use crate::cross_entropy::RowPartial;
use crate::error::{Error, Result};
use crate::shard::exact::run_f64;
use crate::shard::pass::ShardPass;
use ndarray::{s, Array1, Array2, Axis};
use std::ops::Range;

struct Exact {
    h: Array2<f64>,
    w: Array2<f64>,
    b: Option<Array1<f64>>,
    /// The current tile's logits, then its gradient.
    z: Array2<f64>,
    dh: Array2<f64>,
    dw: Array2<f64>,
    db: Option<Array1<f64>>,
}

impl TileEngine for Exact {
    fn product(&mut self, cols: Range<usize>) -> Result<()> {
        let n = self.h.nrows();
        self.z = Array2::zeros((n, cols.len()));
        if let Some(b) = &self.b {
            self.z += &b.slice(s![cols.clone()]);
        }
        let w = self.w.slice(s![cols, ..]);
        gemm(self.z.view_mut(), true, self.h.view(), w.t())
    }

    fn statistics(&mut self, pass: &ShardPass) -> Result<Vec<RowPartial>> {
        Ok(run_f64(pass, self.z.view()).0)
    }

    fn gradient(&mut self, pass: &ShardPass) -> Result<()> {
        self.z = run_f64(pass, self.z.view())
            .1
            .ok_or_else(|| Error::InvalidInput("the gradient pass gave no gradient".into()))?;
        Ok(())
    }

    fn accumulate(&mut self, cols: Range<usize>) -> Result<()> {
        let w = self.w.slice(s![cols.clone(), ..]);
        gemm(self.dh.view_mut(), true, self.z.view(), w)?;
        let dw = self.dw.slice_mut(s![cols.clone(), ..]);
        gemm(dw, false, self.z.t(), self.h.view())?;
        if let Some(db) = &mut self.db {
            db.slice_mut(s![cols]).assign(&self.z.sum_axis(Axis(0)));
        }
        Ok(())
    }

    fn grads(self) -> Result<LinearGrads> {
        Ok(LinearGrads {
            hidden: self.dh.mapv(|v| v as f32),
            weight: self.dw.mapv(|v| v as f32),
            bias: self.db.map(|b| b.mapv(|v| v as f32)),
        })
    }
}

/// Runs `p` in f64, the whole shard as one tile (unless `p` asks for narrower ones).
pub(crate) fn pass(p: &LinearPass) -> Result<LinearPassResult> {
    let (n, d, v) = p.dims();
    let (h, w) = p.host()?;
    let f64_of = |m: &crate::MatrixView| m.to_f32().mapv(|x| x as f64);
    let engine = Exact {
        h: f64_of(&h),
        w: f64_of(&w),
        b: p.bias.map(|b| b.mapv(|x| x as f64)),
        z: Array2::zeros((0, 0)),
        dh: Array2::zeros((n, d)),
        dw: Array2::zeros((v, d)),
        db: p.bias.map(|_| Array1::zeros(v)),
    };
    tiles::run(engine, p, v.max(1))
}
