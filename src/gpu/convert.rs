//! Element-type conversion of a device matrix on the device: each element read in its type,
//! widened to f32 and written in the other (rounded to nearest-even, as every half output is).
//! It serves the surrogates, whose kernels read f32, when they are handed f16 / bf16 device
//! matrices, and applications that want a matrix in another type ([`Gpu::convert`]).

use super::context::Context;
use super::encode::{record_pass, Params, Slice};
use super::kernel::{Entry, Family, Kernel, Slot, Spec};
use super::launch::{launch, Chunk, Input, Job, Layout, Mode, Output, Sink, Source};
use super::matrix::GpuMatrix;
use super::pool::PooledBuffer;
use super::readback::Wait;
use super::split::RowSplit;
use super::Gpu;
use crate::element::DType;
use crate::error::Result;

/// One pass over a chunk: `y = x` in `y`'s type (the softmax family's `convert` entry).
struct ConvertJob {
    cols: usize,
    x_dtype: DType,
    y_dtype: DType,
}

impl Job for ConvertJob {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let (x, y) = (chunk.inputs[0], chunk.outputs[0]);
        let (rows, cols) = (chunk.rows, self.cols);
        let aligned =
            |s: Slice, stride: usize| s.base.is_multiple_of(4) && stride.is_multiple_of(4);
        let vec4 =
            cols.is_multiple_of(4) && aligned(x.slice, x.stride) && aligned(y.slice, y.stride);
        let split = RowSplit::new(rows, cols.div_ceil(4), ctx.policy());
        let kernel = Kernel {
            family: Family::Softmax,
            entry: Entry::Convert,
            spec: Spec {
                vec4,
                row_threads: split.write_threads,
                x_dtype: self.x_dtype,
                y_dtype: self.y_dtype,
                ..Spec::default()
            },
        };
        let params = Params::new(rows, cols, split.segs, split.seg_len, 1.0)
            .placed(x.slice.base, x.stride, y.slice.base)
            .y_strided(y.stride);
        let bindings = vec![(Slot::X, x.slice.binding()), (Slot::Y, y.slice.binding())];
        let wgs = split.write_workgroups(rows);
        Ok(vec![record_pass(
            ctx, encoder, kernel, wgs, params, bindings,
        )?])
    }
}

/// `m` as a new contiguous matrix of `dtype`, converted on the device (recorded or run by
/// `mode`).
pub(crate) async fn convert(
    ctx: &Context,
    m: &GpuMatrix,
    dtype: DType,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<GpuMatrix> {
    let (rows, cols) = m.dim();
    let out = GpuMatrix::new_typed(ctx, rows, cols, dtype)?;
    if rows > 0 && cols > 0 {
        let job = ConvertJob {
            cols,
            x_dtype: m.dtype(),
            y_dtype: dtype,
        };
        let inputs = [Input {
            source: Source::Device(m),
            layout: Layout::Strided,
        }];
        let mut outputs = [Output {
            sink: Sink::Device(&out),
            layout: Layout::Strided,
        }];
        keep.extend(launch(ctx, &job, rows, cols, &inputs, &mut outputs, mode).await?);
    }
    Ok(out)
}

impl Gpu {
    /// The device matrix `m` in element type `dtype`, as a new contiguous matrix, converted on
    /// the device (f16 / bf16 widened exactly; narrowing rounds to nearest-even, past the
    /// type's range to ±inf).
    pub fn convert(&self, m: &GpuMatrix, dtype: DType) -> Result<GpuMatrix> {
        pollster::block_on(async {
            let mut keep = Vec::new();
            convert(&self.ctx, m, dtype, Mode::Stream(Wait::Inline), &mut keep).await
        })
    }
}
