//! Batch reductions on the device: the sums behind smooth accuracy, the reduced binary and
//! margin losses and the two F1 scores (shaders/pointwise.wgsl, `sum_blocks`,
//! `pointwise_sum` and `sum_final`). Per chunk, each workgroup writes a compensated partial
//! sum (one row per chunk of a [`Sink::DeviceChunks`] matrix): [`SUM_GROUPS`] workgroups over
//! strided shares of values already on the device ([`device_sums`]), or of an op that sums
//! its own values as it computes them (`PointJob::run_summed`); then one workgroup per chunk
//! of those rows merges them, until one group is left ([`sum_partials`]). What comes
//! back is six floats: `(s, c, flags)` per array, finished into the IEEE sum on the host,
//! `(s + c)·2³²` in f64 ([`DeviceSums::read`]).
//!
//! Error: Neumaier's summation keeps each addition's rounding error in a second term `c`, and
//! the trees merge pairs with TwoSum, so `s + c` formed in f64 is within
//! [`bound`]` = 4·(n + k²)·u²·Σ|v|` (u = 2⁻²⁴, `k` the most values one invocation adds) of
//! the exact sum of the f32 values. (Higham, "Accuracy and Stability of Numerical
//! Algorithms", §4.3: a compensated sum's error is `2u|S| + O(nu²)Σ|v|`; the first term is the
//! final f32 rounding, which the f64 addition leaves out; the rounding of the running `c`,
//! at most `k·u·Σ|v|` within an invocation, adds `k²u²Σ|v|`.) That is far inside the crate's
//! `ε·(32 + 4√n)·(1 + |Σv|)`. The values are summed times 2⁻³², exactly except below
//! 2⁻⁹⁴, where a device may flush the scaled value to 0: at most `n·2⁻⁹⁴` more.

use crate::error::{Error, Result};
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params};
use crate::gpu::kernel::uniforms::SParams;
use crate::gpu::kernel::{Entry, Family, Kernel, Slot, Spec, SurrogateOp, SUM_GROUPS};
use crate::gpu::launch::{
    chunk_outputs, launch, Chunk, Input, Job, Layout, Mode, Output, Sink, Source,
};
use crate::gpu::matrix::GpuMatrix;
use crate::gpu::pool::PooledBuffer;
use crate::gpu::readback::Wait;
use crate::gpu::Gpu;
use crate::reduction::{LossSums, Reduction};
use wgpu::BufferUsages as U;

/// Floats each workgroup of `sum_blocks` writes: `(s, c, flags)` per array.
pub(crate) const PARTIAL: usize = 6;

/// The sums are of the values times 2⁻³² (the shader's `SUM_SCALE`): exact, and no sum of up
/// to 2³² finite f32 values overflows.
const SCALE: f64 = 4294967296.0;

/// The `sum_*` kernels' non-finite flags (the shader's `SUM_NAN`, `SUM_POS_INF`,
/// `SUM_NEG_INF`).
const NAN: u32 = 1;
const POS_INF: u32 = 2;
const NEG_INF: u32 = 4;

/// The error bound of the GPU's batch sums (smooth accuracy, the F1 scores, the mean or sum
/// of the binary and margin losses, and so their [`LossSums`]): a sum of `n` f32 values of
/// absolute sum `abs_sum` is within this of their exact sum. Derivation: Neumaier's
/// compensated sum in f32 with its compensation added in f64, `4·(n + k²)·u²·Σ|v|` with
/// `u = 2⁻²⁴` and `k = ⌈n / 16384⌉` the most values one invocation adds (Higham, "Accuracy
/// and Stability of Numerical Algorithms", §4.3), plus `n·2⁻⁹⁴` for values below `2⁻⁹⁴`,
/// which the sums' scaling by 2⁻³² may flush to 0.
///
/// ```
/// let b = smoothmax::gpu::device_sum_bound(1_000_000, 1e6);
/// assert!(b < 2e-2 && b > 1e-2); // about 1.4e-2: a relative error near 1.4e-8
/// ```
pub fn bound(n: usize, abs_sum: f64) -> f64 {
    let u = f32::EPSILON as f64 / 2.0;
    let k = n.div_ceil(SUM_GROUPS * crate::gpu::split::WG) as f64;
    4.0 * (n as f64 + k * k) * u * u * abs_sum + n as f64 * 2f64.powi(-94)
}

/// Where a device sum lies: row 0 of an f32 matrix, `(s, c, flags)` per array, `s` and `c`
/// in units of 2⁻³².
#[derive(Clone, Debug)]
pub(crate) struct DeviceSums(pub(crate) GpuMatrix);

impl DeviceSums {
    /// The sums of no values.
    pub(crate) fn zero(ctx: &Context) -> Result<Self> {
        let out = GpuMatrix::new_typed(ctx, 1, PARTIAL, crate::element::DType::F32)?;
        out.fill(ctx, 0.0)?;
        Ok(DeviceSums(out))
    }

    /// The two sums, each the IEEE result of adding every value: NaN if a value is NaN or
    /// both infinities occur, an infinity if one does, else the compensated sum.
    pub(crate) async fn read(&self, gpu: &Gpu, wait: Wait) -> Result<[f64; 2]> {
        let r = gpu.download_with(&self.0, wait).await?;
        let one = |s: f32, c: f32, flags: f32| {
            let f = flags as u32;
            if f & NAN != 0 || f & (POS_INF | NEG_INF) == POS_INF | NEG_INF {
                f64::NAN
            } else if f & POS_INF != 0 {
                f64::INFINITY
            } else if f & NEG_INF != 0 {
                f64::NEG_INFINITY
            } else if !s.is_finite() {
                // Beyond even the scaled range (more than 2³² values near f32::MAX).
                s as f64
            } else {
                (s as f64 + c as f64) * SCALE
            }
        };
        let at = |k: usize| r[[0, k]];
        Ok([one(at(0), at(1), at(2)), one(at(3), at(4), at(5))])
    }
}

/// The reduced value of `count` summed values: the sum (or the mean) and its [`LossSums`].
pub(crate) fn reduced(total: f64, count: usize, reduction: Reduction) -> (Option<f64>, LossSums) {
    let sums = LossSums {
        loss: total,
        weight: count as f64,
        ..LossSums::default()
    };
    (sums.reduce(reduction), sums)
}

/// `sum_blocks` over one chunk.
struct Blocks {
    cols: usize,
    arrays: u32,
}

impl Job for Blocks {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let sp = SParams {
            n: (chunk.rows * self.cols) as u32,
            p: self.arrays,
            ..SParams::default()
        };
        let ub = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&sp))?;
        let b = vec![
            (Slot::X, chunk.inputs[0].slice.binding()),
            (Slot::BIn, chunk.inputs[1].slice.binding()),
            (Slot::Y, chunk.outputs[0].slice.binding()),
            (Slot::SParams, binding(ub.buffer(), SPARAMS_BYTES)),
        ];
        let params = Params::new(chunk.rows, self.cols, 1, 1, 1.0);
        let pass = record_pass(
            ctx,
            encoder,
            kernel(Entry::SumBlocks),
            SUM_GROUPS,
            params,
            b,
        )?;
        Ok(vec![pass, ub])
    }
}

/// `sum_final`: each chunk's rows of `groups` partial groups merged into one group.
struct Final {
    groups: usize,
}

impl Job for Final {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let sp = SParams {
            p: self.groups as u32,
            ..SParams::default()
        };
        let ub = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&sp))?;
        let x = chunk.inputs[0];
        let b = vec![
            (Slot::X, x.slice.binding()),
            (Slot::Y, chunk.outputs[0].slice.binding()),
            (Slot::SParams, binding(ub.buffer(), SPARAMS_BYTES)),
        ];
        let params = Params::new(chunk.rows, PARTIAL * self.groups, 1, 1, 1.0).placed(
            x.slice.base,
            x.stride,
            0,
        );
        let pass = record_pass(ctx, encoder, kernel(Entry::SumFinal), 1, params, b)?;
        Ok(vec![pass, ub])
    }
}

const SPARAMS_BYTES: u64 = std::mem::size_of::<SParams>() as u64;

fn kernel(entry: Entry) -> Kernel {
    Kernel {
        family: Family::Pointwise,
        entry,
        spec: Spec {
            op: Some(SurrogateOp::Sum),
            ..Spec::default()
        },
    }
}

/// Sums every element of the f32 device matrix `a` (and of `b`, same shape), recorded or
/// streamed in `mode`; the scratch the passes use goes into `keep`.
pub(crate) async fn device_sums(
    ctx: &Context,
    a: &GpuMatrix,
    b: Option<&GpuMatrix>,
    mut mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<DeviceSums> {
    let (rows, cols) = a.dim();
    if b.is_some_and(|b| b.dim() != a.dim()) {
        return Err(Error::InvalidInput(
            "internal: summed matrices differ in shape".into(),
        ));
    }
    if rows * cols == 0 {
        return DeviceSums::zero(ctx);
    }
    let inputs = [
        Input {
            source: Source::Device(a),
            layout: Layout::Packed,
        },
        Input {
            source: Source::Device(b.unwrap_or(a)),
            layout: Layout::Packed,
        },
    ];
    let level = chunk_outputs(ctx, (rows, cols), &inputs, &[], &mode, PARTIAL * SUM_GROUPS)?;
    let blocks = Blocks {
        cols,
        arrays: if b.is_some() { 2 } else { 1 },
    };
    let mut outputs = [Output {
        sink: Sink::DeviceChunks(&level),
        layout: Layout::Packed,
    }];
    keep.extend(
        launch(
            ctx,
            &blocks,
            rows,
            cols,
            &inputs,
            &mut outputs,
            mode.reborrow(),
        )
        .await?,
    );
    sum_partials(ctx, level, SUM_GROUPS, mode, keep).await
}

/// The sum of partial sums: `parts` holds rows of `groups` groups of `(s, c, flags)` per
/// array (a [`Sink::DeviceChunks`] matrix of `sum_blocks`, or of a kernel that sums its own
/// values per workgroup); each chunk of rows is merged into one group (`sum_final`), until
/// one is left (once, unless the partials outgrow a storage binding).
pub(crate) async fn sum_partials(
    ctx: &Context,
    mut parts: GpuMatrix,
    mut groups: usize,
    mut mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<DeviceSums> {
    let what = "the device sums' partials, twice in one storage binding";
    loop {
        let fin = Final { groups };
        let next = merge_level(ctx, &parts, PARTIAL, &fin, what, mode.reborrow(), keep).await?;
        if next.dim().0 == 1 {
            return Ok(DeviceSums(next));
        }
        (parts, groups) = (next, 1);
    }
}

/// One level of a merge on the device: `job` over the rows of `parts`, each chunk of rows into
/// one row of `floats` floats of the returned matrix. A level that cannot shrink `parts` (no
/// chunk holds two of its rows) is an error naming `what`, not an endless loop.
pub(crate) async fn merge_level(
    ctx: &Context,
    parts: &GpuMatrix,
    floats: usize,
    job: &dyn Job,
    what: &'static str,
    mode: Mode<'_>,
    keep: &mut Vec<PooledBuffer>,
) -> Result<GpuMatrix> {
    let (n, stride) = parts.dim();
    let inputs = [Input {
        source: Source::Device(parts),
        layout: Layout::Strided,
    }];
    let next = chunk_outputs(ctx, (n, stride), &inputs, &[], &mode, floats)?;
    if n > 1 && next.dim().0 >= n {
        return Err(Error::ShapeTooLarge {
            rows: n,
            cols: stride,
            what,
            limit: ctx.max_binding(),
        });
    }
    let mut outputs = [Output {
        sink: Sink::DeviceChunks(&next),
        layout: Layout::Packed,
    }];
    keep.extend(launch(ctx, job, n, stride, &inputs, &mut outputs, mode).await?);
    Ok(next)
}
