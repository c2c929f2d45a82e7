//! Row ops over a whole matrix: blocks of rows in parallel (rayon), each block through the row
//! kernels of the build that runs (`multiversion!`).

use super::alloc;
use super::arith::{Arith, STREAM_MIN_BYTES};
use super::exp::{Fused, Fused512, Separate};
use super::isa::CpuIsa;
use super::rows::{row_stats, softmax_row};
use crate::element::{with_dtype, DType, Element, MatrixView, Tensor};
use crate::error::{Error, Result};
use crate::rows::{check_temperature, RowOp};
use crate::scale::ExpScale;
use ndarray::{Array1, ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use rayon::prelude::*;

/// Target number of elements per rayon task: large enough to amortize scheduling, small
/// enough to balance short matrices over the cores.
pub(crate) const ELEMS_PER_TASK: usize = 1 << 16;

/// The caller's output buffer as one slice, checked against the input's shape.
pub(super) fn out_slice<'a, E: Element>(
    dim: (usize, usize),
    out: &'a mut ArrayViewMut2<E>,
) -> Result<&'a mut [E]> {
    if out.dim() != dim {
        let (r, c) = out.dim();
        return Err(Error::InvalidInput(format!(
            "output buffer is [{r}, {c}], the input is [{}, {}]",
            dim.0, dim.1
        )));
    }
    out.as_slice_mut().ok_or_else(|| {
        Error::InvalidInput("output buffer is not contiguous in standard (row-major) layout".into())
    })
}

pub(super) fn softmax_into<E: Element>(
    isa: CpuIsa,
    x: ArrayView2<E>,
    t: f32,
    mut out: ArrayViewMut2<E>,
    log: bool,
) -> Result<()> {
    check_temperature(t)?;
    let dim = x.dim();
    let out = out_slice(dim, &mut out)?;
    softmax_slices(isa, x, t, out, log)
}

/// Softmax or log-softmax of `x` into `out` (`B·C` floats, row-major).
pub(super) fn softmax_slices<E: Element, O: Element>(
    isa: CpuIsa,
    x: ArrayView2<E>,
    t: f32,
    out: &mut [O],
    log: bool,
) -> Result<()> {
    let cols = x.ncols();
    let x = x.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
    let es = ExpScale::temperature(t, 1.0);
    let stream = std::mem::size_of_val(out) >= STREAM_MIN_BYTES;
    if let Some(per) = ELEMS_PER_TASK.checked_div(cols) {
        let rows_per_task = per.max(1);
        out.par_chunks_mut(rows_per_task * cols)
            .zip(xs.par_chunks(rows_per_task * cols))
            .for_each(|(o, x)| softmax_rows(isa, x, o, cols, &es, log, stream));
    }
    Ok(())
}

/// Compiles `$body` (which may only call `#[inline(always)]` helpers, generic over the
/// multiply-add `A`) three times: AVX-512 and AVX2 builds with fused multiply-adds, and the
/// baseline build with separate ones; the function's first argument says which runs (the
/// caller's [`CpuIsa`], whose support was checked when it was chosen). Results can differ in
/// the last bits between builds (FMA rounds once), always within the stated tolerance.
macro_rules! multiversion {
    (fn $name:ident $(<$($g:ident : $b:path),*>)? ($($arg:ident : $ty:ty),*) $body:block) => {
        fn $name $(<$($g: $b),*>)? (isa: CpuIsa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide512 $(<$($g: $b),*>)? ($($arg: $ty),*) {
                    type A = Fused512;
                    $body
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide $(<$($g: $b),*>)? ($($arg: $ty),*) {
                    type A = Fused;
                    $body
                }
                match isa {
                    // SAFETY: a `CpuIsa` reaches a kernel only after `check_supported` (or
                    // detection) found the processor has its features.
                    CpuIsa::Avx512 => return unsafe { wide512 $(::<$($g),*>)? ($($arg),*) },
                    CpuIsa::Avx2 => return unsafe { wide $(::<$($g),*>)? ($($arg),*) },
                    CpuIsa::Baseline => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa; // one build on other targets
            type A = Separate;
            $body
        }
    };
}

/// The rows of `x` after row `i`, for prefetching: only their addresses are used, so half
/// rows are passed as the f32 words their bytes span (`rows::words`). A pass prefetches as far
/// into them as it has come through its own row (the one-read passes, a few blocks further:
/// `rows::online`).
#[inline(always)]
pub(super) fn after_f32<E: Element>(x: &[E], i: usize, cols: usize) -> &[f32] {
    x.get((i + 1) * cols..).map_or(&[], super::rows::words)
}

/// Where a kernel forms an output row in f32: `out` itself when it is f32 (and no separate
/// output), else `buf` (resized to the row) and `out` to write into. `via_buf` sends an f32
/// output through `buf` too: a streamed output is then written once, past the cache, by the
/// last pass, instead of being fetched (read-for-ownership), updated in cache and written back.
#[inline(always)]
pub(super) fn half_out<'a, O: Element>(
    out: &'a mut [O],
    buf: &'a mut Vec<f32>,
    via_buf: bool,
) -> (&'a mut [f32], Option<&'a mut [O]>) {
    if O::DTYPE == DType::F32 && !via_buf {
        (bytemuck::cast_slice_mut(out), None)
    } else {
        buf.resize(out.len(), 0.0);
        (buf, Some(out))
    }
}

/// Row buffers a kernel uses for one row at a time (an f32 output row for a half output, a
/// soft-capped row and its tanh), kept per thread: a 32000-column row is 128 KB, and a fresh
/// allocation that large per block of rows is an mmap, page faults and an munmap each time
/// (measured: they cost the bf16 cross-entropy about half its time).
#[derive(Default)]
pub(super) struct RowBufs {
    pub out: Vec<f32>,
    /// A softmax row's runs of blocks summed against one max (`rows::softmax_row`).
    pub runs: Vec<(usize, f32)>,
    pub capped: Vec<f32>,
    pub tanhs: Vec<f32>,
}

thread_local! {
    static ROW_BUFS: std::cell::Cell<RowBufs> = std::cell::Cell::new(RowBufs::default());
}

/// This thread's row buffers, taken (give them back with [`put_row_bufs`]).
pub(super) fn take_row_bufs() -> RowBufs {
    ROW_BUFS.with(std::cell::Cell::take)
}

/// Returns the row buffers for the thread's next block.
pub(super) fn put_row_bufs(b: RowBufs) {
    ROW_BUFS.with(|c| c.set(b));
}

multiversion! {
    fn lse_rows<E: Element>(x: &[E], out: &mut [f32], cols: usize, t: f32, es: &ExpScale) {
        for (i, o) in out.iter_mut().enumerate() {
            let row = &x[i * cols..(i + 1) * cols];
            *o = row_stats::<A, E>(row, after_f32(x, i, cols), es, true).logsumexp(t);
        }
    }
}

multiversion! {
    fn softmax_rows<E: Element, O: Element>(x: &[E], out: &mut [O], cols: usize, es: &ExpScale, log: bool, stream: bool) {
        let mut bufs = take_row_bufs();
        for (i, o) in out.chunks_exact_mut(cols).enumerate() {
            let next = after_f32(x, i, cols);
            let row = &x[i * cols..(i + 1) * cols];
            softmax_row::<A, E, O>(row, next, o, (&mut bufs.out, &mut bufs.runs), es, log, stream);
        }
        if stream {
            A::fence_streams();
        }
        put_row_bufs(bufs);
    }
}

/// A row op over every row of `x`, in parallel over blocks of rows; the matrix output in
/// `out`.
pub(super) fn row_op(
    isa: CpuIsa,
    op: RowOp,
    x: MatrixView<'_>,
    temperature: f32,
    out: DType,
) -> Result<Tensor> {
    with_dtype!(MatrixView, x, |a: E| match out {
        DType::F32 => row_op_typed::<E, f32>(isa, op, a, temperature),
        DType::F16 => row_op_typed::<E, half::f16>(isa, op, a, temperature),
        DType::BF16 => row_op_typed::<E, half::bf16>(isa, op, a, temperature),
    })
}

fn row_op_typed<E: Element, O: Element>(
    isa: CpuIsa,
    op: RowOp,
    x: ArrayView2<E>,
    temperature: f32,
) -> Result<Tensor> {
    check_temperature(temperature)?;
    let (rows, cols) = x.dim();
    let x = x.as_standard_layout();
    let xs = x
        .as_slice()
        .ok_or_else(|| Error::InvalidInput("input could not be made contiguous".into()))?;
    let rows_per_task = (ELEMS_PER_TASK / cols.max(1)).max(1);
    let t = temperature;
    Ok(match op {
        RowOp::LogSumExp => {
            let mut out = vec![f32::NEG_INFINITY; rows];
            if cols > 0 {
                let es = ExpScale::temperature(t, 1.0);
                out.par_chunks_mut(rows_per_task)
                    .zip(xs.par_chunks(rows_per_task * cols))
                    .for_each(|(o, x)| lse_rows(isa, x, o, cols, t, &es));
            }
            Tensor::F32(Array1::from_vec(out).into_dyn())
        }
        RowOp::Softmax | RowOp::LogSoftmax => {
            let mut out = alloc::output_vec::<O>(rows * cols);
            softmax_slices(isa, x.view(), t, &mut out, op == RowOp::LogSoftmax)?;
            O::tag(
                ArrayD::from_shape_vec(IxDyn(&[rows, cols]), out)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?,
            )
        }
    })
}
