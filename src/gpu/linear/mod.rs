//! The GPU engine of the fused linear cross-entropy (`crate::linear_ce`): every tile's logits
//! by the tiled product kernel into one device tile buffer kept across tiles; the tile's shard
//! passes by the ordinary cross-entropy kernels on that device tile (the gradient written over
//! it in place); the gradients by two more products and a column sum per tile. `dH`
//! accumulates on the device; each tile's `dW` and `db` rows are read back as the tile
//! finishes, so no buffer holds more than one tile of them.
//!
//! Inputs may be host data or device matrices (an application's hidden-state and weight
//! buffers, read where they lie). Host hidden states are uploaded once; host weights one tile
//! at a time. Device memory beyond the inputs: the tile (`N·V_t` f32) and one tile of `dW`
//! (`V_t·D`), each at most about [`TILE_LOGITS`] elements, `dH` (`N·D` f32), and the
//! cross-entropy's per-row buffers.

mod product;

use super::ce_call as ce;
use super::io::Place;
use super::launch::Mode;
use super::matrix::GpuMatrix;
use super::readback::Wait;
use super::{Gpu, Matrix};
use crate::cross_entropy::RowPartial;
use crate::element::DType;
use crate::error::{Error, Result};
use crate::linear_ce::pass::{LinearGrads, LinearPass, LinearPassResult};
use crate::linear_ce::tiles::{self, TileEngine};
use crate::shard::pass::ShardPass;
use ndarray::{s, Array1, Array2, ArrayView1};
use product::{record_col_sums, record_product, Operand, Product};
use std::ops::Range;

/// Logits per tile: 16 MiB of f32 (a tile's passes are a small part of its product's time;
/// fewer, larger tiles mean fewer submissions).
pub(crate) const TILE_LOGITS: usize = 1 << 22;

/// A matrix the engine reads: the caller's device matrix or one it uploaded.
enum Held<'a> {
    Borrowed(&'a GpuMatrix),
    Owned(GpuMatrix),
}

impl Held<'_> {
    fn get(&self) -> &GpuMatrix {
        match self {
            Held::Borrowed(m) => m,
            Held::Owned(m) => m,
        }
    }
}

/// `m` as an operand: element `(r, c)` at `(offset + r·stride + c)·size` bytes.
fn operand(m: &GpuMatrix) -> Operand<'_> {
    let size = m.dtype().size() as u64;
    Operand {
        buffer: m.buffer(),
        start: m.offset() / size,
        rs: m.row_stride() as u64,
        cs: 1,
        dtype: m.dtype(),
    }
}

struct GpuTiles<'a> {
    gpu: &'a Gpu,
    h: Held<'a>,
    /// The weights: the caller's device matrix, or host rows uploaded per tile.
    w: Matrix<'a>,
    w_tile: Option<GpuMatrix>,
    bias: Option<GpuMatrix>,
    cols: Range<usize>,
    /// The tile buffer (`N × widest tile` f32) and the current tile in it, `[N, V_t]`.
    z_buf: Option<GpuMatrix>,
    /// Buffers of one tile's `dW` rows and `db`, kept across tiles likewise.
    dw_buf: Option<GpuMatrix>,
    db_buf: Option<GpuMatrix>,
    z: Option<GpuMatrix>,
    dh: Option<GpuMatrix>,
    dw: Array2<f32>,
    db: Option<Array1<f32>>,
}

impl<'a> GpuTiles<'a> {
    fn z(&self) -> Result<&GpuMatrix> {
        self.z
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("internal: no tile".into()))
    }

    /// The current tile's weight rows as an operand `[V_t, D]`.
    fn w_rows(&self) -> Result<Operand<'_>> {
        match (&self.w, &self.w_tile) {
            (Matrix::Device(w), _) => {
                let o = operand(w);
                Ok(Operand {
                    start: o.start + self.cols.start as u64 * o.rs,
                    ..o
                })
            }
            (Matrix::Host(_), Some(t)) => Ok(operand(t)),
            (Matrix::Host(_), None) => Err(Error::InvalidInput("internal: no weight tile".into())),
        }
    }

    /// Records passes with `f` and submits them.
    fn submit(
        &self,
        f: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<Vec<super::pool::PooledBuffer>>,
    ) -> Result<()> {
        let ctx = &self.gpu.ctx;
        let scopes = super::scopes::Scopes::push(&ctx.device);
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("smoothmax/linear-ce"),
            });
        let keep = f(&mut enc);
        ctx.queue.submit([enc.finish()]);
        scopes.pop()?;
        drop(keep?);
        Ok(())
    }

    /// Runs one shard pass of the cross-entropy kernels on the device tile; the gradient
    /// pass writes `G` over it.
    fn shard_pass(&self, pass: &ShardPass) -> Result<Vec<RowPartial>> {
        let (p, fi, o) = pass.fast_call();
        let z = self.z()?;
        let ctx = &self.gpu.ctx;
        let in_place = pass.merged.is_some();
        pollster::block_on(async {
            let mut keep = Vec::new();
            let staged = ce::stage_planned(
                ctx,
                Matrix::Device(z),
                p.clone(),
                fi.clone(),
                o,
                (Place::Device, in_place, Some(DType::F32)),
                Mode::Stream(Wait::Inline),
                &mut keep,
            )
            .await?;
            drop(keep);
            let (stats, _) = staged.finish_raw(self.gpu, Wait::Inline).await?;
            Ok(pass.fast_result(&stats, None).partials)
        })
    }
}

impl TileEngine for GpuTiles<'_> {
    fn product(&mut self, cols: Range<usize>) -> Result<()> {
        let ctx = &self.gpu.ctx;
        let (n, d) = self.h.get().dim();
        self.cols = cols.clone();
        if let Matrix::Host(w) = &self.w {
            let rows = w.slice_rows(cols.clone());
            self.w_tile = Some(crate::element::with_dtype!(MatrixView, rows, |a: E| {
                GpuMatrix::upload(ctx, a)
            })?);
        }
        let z = kept_buffer(ctx, &mut self.z_buf, (n, cols.len()))?;
        let w = self.w_rows()?;
        let bias = self.bias.as_ref().map(|b| Operand {
            start: operand(b).start + cols.start as u64,
            ..operand(b)
        });
        let p = Product {
            a: operand(self.h.get()),
            b: w.t(),
            c: operand(&z),
            mnk: (n, cols.len(), d),
            accumulate: false,
            bias,
        };
        self.submit(|enc| record_product(ctx, enc, &p))?;
        self.z = Some(z);
        Ok(())
    }

    fn statistics(&mut self, pass: &ShardPass) -> Result<Vec<RowPartial>> {
        self.shard_pass(pass)
    }

    fn gradient(&mut self, pass: &ShardPass) -> Result<()> {
        self.shard_pass(pass)?;
        let z = self.z()?;
        let ctx = &self.gpu.ctx;
        for (i, row) in pass.host_rows() {
            ctx.queue
                .write_buffer(z.buffer(), z.row_offset(i), bytemuck::cast_slice(&row));
        }
        Ok(())
    }

    fn accumulate(&mut self, cols: Range<usize>) -> Result<()> {
        let ctx = &self.gpu.ctx;
        let (n, d) = self.h.get().dim();
        let len = cols.len();
        let dw_tile = kept_buffer(ctx, &mut self.dw_buf, (len, d))?;
        let db_tile = match self.db {
            Some(_) => Some(kept_buffer(ctx, &mut self.db_buf, (1, len))?),
            None => None,
        };
        let (z, w, h) = (operand(self.z()?), self.w_rows()?, operand(self.h.get()));
        let dh = self
            .dh
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("internal: no dH".into()))?;
        let products = [
            // dH += G·W_t
            Product {
                a: z,
                b: w,
                c: operand(dh),
                mnk: (n, d, len),
                accumulate: true,
                bias: None,
            },
            // dW_t = Gᵀ·H
            Product {
                a: z.t(),
                b: h,
                c: operand(&dw_tile),
                mnk: (len, d, n),
                accumulate: false,
                bias: None,
            },
        ];
        self.submit(|enc| {
            let mut keep = Vec::new();
            for p in &products {
                keep.extend(record_product(ctx, enc, p)?);
            }
            if let Some(db) = &db_tile {
                keep.extend(record_col_sums(ctx, enc, z, (n, len), operand(db), false)?);
            }
            Ok(keep)
        })?;
        let part = self.gpu.download(&dw_tile)?;
        self.dw.slice_mut(s![cols.clone(), ..]).assign(&part);
        if let (Some(db), Some(t)) = (&mut self.db, &db_tile) {
            db.slice_mut(s![cols]).assign(&self.gpu.download(t)?.row(0));
        }
        Ok(())
    }

    fn grads(self) -> Result<LinearGrads> {
        let hidden = match &self.dh {
            Some(m) => self.gpu.download(m)?,
            None => Array2::zeros((0, 0)),
        };
        Ok(LinearGrads {
            hidden,
            weight: self.dw,
            bias: self.db,
        })
    }
}

/// A contiguous f32 `[rows, cols]` matrix in the buffer `slot` keeps across tiles, which is
/// made (again) only when it is too small: no tile allocates after the widest.
fn kept_buffer(
    ctx: &super::context::Context,
    slot: &mut Option<GpuMatrix>,
    (rows, cols): (usize, usize),
) -> Result<GpuMatrix> {
    let held = slot.as_ref().map(|b| b.dim().0 * b.dim().1);
    if held.is_none_or(|h| h < rows * cols) {
        *slot = Some(GpuMatrix::new_typed(ctx, rows, cols, DType::F32)?);
    }
    let buf = slot
        .as_ref()
        .ok_or_else(|| Error::InvalidInput("internal: no tile buffer".into()))?;
    GpuMatrix::from_buffer(buf.buffer().clone(), 0, rows, cols, cols)
}

/// The engine for hidden states `h` and weights `w` with gradient accumulators when `grad`.
fn engine<'a>(
    gpu: &'a Gpu,
    h: Matrix<'a>,
    w: Matrix<'a>,
    bias: Option<ArrayView1<f32>>,
    grad: bool,
) -> Result<GpuTiles<'a>> {
    let ctx = &gpu.ctx;
    let (n, d) = h.dim();
    let v = w.dim().0;
    let h = match h {
        Matrix::Device(m) => Held::Borrowed(m),
        Matrix::Host(h) => Held::Owned(crate::element::with_dtype!(MatrixView, h, |a: E| {
            GpuMatrix::upload(ctx, a.view())
        })?),
    };
    let bias_m = bias
        .map(|b| GpuMatrix::upload(ctx, b.insert_axis(ndarray::Axis(0))))
        .transpose()?;
    let dh = grad
        .then(|| -> Result<GpuMatrix> {
            let m = GpuMatrix::new_typed(ctx, n, d, DType::F32)?;
            m.fill(ctx, 0.0)?;
            Ok(m)
        })
        .transpose()?;
    Ok(GpuTiles {
        gpu,
        h,
        w,
        w_tile: None,
        bias: bias_m,
        cols: 0..0,
        z_buf: None,
        dw_buf: None,
        db_buf: None,
        z: None,
        dh,
        dw: Array2::zeros(if grad { (v, d) } else { (0, 0) }),
        db: bias.filter(|_| grad).map(|_| Array1::zeros(v)),
    })
}

/// Classes per tile for `n` rows of `d` features on this device: about [`TILE_LOGITS`]
/// logits, and as many elements in the tile's `dW` rows (`V_t·D`), within one binding.
fn width(gpu: &Gpu, (n, d): (usize, usize), v: usize) -> usize {
    let widest = n.max(d).max(1);
    let fit = (gpu.ctx.max_binding() / 4 / widest as u64) as usize;
    tiles::tile_cols(widest, v, TILE_LOGITS).min(fit.max(1))
}

#[cfg(feature = "cli")]
impl Gpu {
    /// The benchmarks' yardstick for the fused linear cross-entropy: the plain product
    /// `hidden·weightᵀ` (`[N, D]`, `[V, D]`) by the same product kernels and tiles, each tile
    /// of logits written to one device buffer (and overwritten by the next), blocking until
    /// the device is done.
    pub(crate) fn plain_product(&self, hidden: &GpuMatrix, weight: &GpuMatrix) -> Result<()> {
        let v = weight.dim().0;
        let mut e = engine(
            self,
            Matrix::Device(hidden),
            Matrix::Device(weight),
            None,
            false,
        )?;
        let w = width(self, hidden.dim(), v);
        for a in (0..v).step_by(w.max(1)) {
            e.product(a..(a + w).min(v))?;
        }
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Readback(e.to_string()))?;
        Ok(())
    }
}

/// Runs `p` on the GPU in tiles of about [`TILE_LOGITS`] logits (and at most one binding).
pub(crate) fn pass(gpu: &Gpu, p: &LinearPass) -> Result<LinearPassResult> {
    gpu.ctx.check_alive()?;
    let (n, d, v) = p.dims();
    let grad = p.grad.is_some();
    let e = engine(gpu, p.hidden.reborrow(), p.weight.reborrow(), p.bias, grad)?;
    tiles::run(e, p, width(gpu, (n, d), v))
}

#[cfg(test)]
mod tests {
    use super::super::kernel::{Entry, Family};
    use crate::{Backend, CrossEntropyOptions, Gpu, Targets};

    /// On a CPU adapter, the vec4 product kernels are the ones a call with aligned operands
    /// runs (the results are checked in tests/linear_ce.rs; this proves which kernels gave
    /// them). With `SMOOTHMAX_REQUIRE_GPU=1` a missing adapter fails the test.
    #[test]
    fn aligned_operands_run_the_vec4_kernels() {
        let gpu = match Gpu::new() {
            Ok(g) => g,
            Err(e) if std::env::var("SMOOTHMAX_REQUIRE_GPU").as_deref() == Ok("1") => {
                panic!("SMOOTHMAX_REQUIRE_GPU=1 but no GPU: {e}")
            }
            Err(_) => return,
        };
        if gpu.kernel_layout() != "cpu" {
            return; // the GPU layout has one product kernel
        }
        let h = ndarray::Array2::from_shape_fn((9, 64), |(i, k)| (i + k) as f32 / 64.0);
        let w = ndarray::Array2::from_shape_fn((300, 64), |(j, k)| (j * k % 7) as f32 / 64.0);
        let y = ndarray::Array1::from_shape_fn(9, |i| (i * 31 % 300) as i64);
        let o = CrossEntropyOptions {
            gradient: true,
            ..Default::default()
        };
        gpu.linear_cross_entropy(
            h.view().into(),
            w.view().into(),
            None,
            Targets::classes(y.view()),
            &o,
        )
        .expect("a call");
        let ran = gpu.ctx.pipelines.entries_of(Family::Matmul);
        for e in [Entry::MatmulDot, Entry::MatmulNn, Entry::MatmulTn] {
            assert!(ran.contains(&e), "{e:?} did not run; ran {ran:?}");
        }
        assert!(!ran.contains(&Entry::MatmulLanes), "ran {ran:?}");
    }
}
