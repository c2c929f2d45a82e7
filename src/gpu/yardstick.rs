//! The bench's yardstick kernels (shaders/yardstick.wgsl) as a launch [`Job`]: `copy` and
//! `exp_map` over groups of four elements, one invocation per group; and the row sums, each
//! row cut into segments so that a few long rows still fill the device, laid out per adapter
//! class as the row kernels are (`split.rs`): `row_sum` (a workgroup per segment, lanes
//! striding through it, a tree in workgroup memory) on a GPU, `row_sum_serial` (an invocation
//! per segment, a serial loop) on a CPU adapter, where a barrier costs as much as a row
//! (measured on lavapipe at [65536, 1000]: `row_sum` 567 ms, a copy 72 ms).

use super::context::Context;
use super::encode::{record_pass, Params};
use super::kernel::{Entry, Kernel, Slot};
use super::launch::{Chunk, Job};
use super::pool::PooledBuffer;
use super::split::{Policy, MIN_WORKGROUPS_CPU, TARGET_ITEMS_GPU, WG};
use crate::element::DType;
use crate::error::Result;

/// The longest segment (in groups of four) `row_sum_serial` sums: its loop takes four groups
/// a step, and lavapipe ends a loop after 65535 steps.
const SERIAL_MAX_GROUPS: usize = 4 * 65535;

/// Groups a row-sum segment holds at least (a serial loop's worth on a CPU adapter; a
/// workgroup's lanes on a GPU, one group each).
const MIN_SEGMENT_CPU: usize = 64;

/// A yardstick kernel and its layout.
#[derive(Clone, Debug)]
pub(super) struct Yardstick {
    entry: Entry,
    dtype: DType,
    /// Elements per row (a multiple of four).
    cols: usize,
    /// Segments per row and groups of four per segment (row sums; 1 and 1 otherwise).
    segs: usize,
    seg_len: usize,
}

impl Yardstick {
    /// `copy` or `exp_map` over rows of four elements of `dtype`.
    pub fn elementwise(entry: Entry, dtype: DType) -> Self {
        Yardstick {
            entry,
            dtype,
            cols: 4,
            segs: 1,
            seg_len: 1,
        }
    }

    /// The row sums of `rows` rows of `cols` elements of `dtype` (`cols` a multiple of four),
    /// laid out for `policy`: enough segments per row for `TARGET_ITEMS_GPU` workgroups on a
    /// GPU or `MIN_WORKGROUPS_CPU` full workgroups on a CPU adapter, as the row kernels aim
    /// for, and no serial segment past lavapipe's loop limit.
    pub fn row_sum(dtype: DType, rows: usize, cols: usize, policy: Policy) -> Self {
        let cols_v = cols / 4;
        let (entry, items, min_len) = match policy {
            Policy::Gpu => (Entry::RowSum, TARGET_ITEMS_GPU, WG),
            Policy::Cpu => (
                Entry::RowSumSerial,
                MIN_WORKGROUPS_CPU * WG,
                MIN_SEGMENT_CPU,
            ),
        };
        let mut segs = items.div_ceil(rows.max(1)).min(cols_v.div_ceil(min_len));
        if entry == Entry::RowSumSerial {
            segs = segs.max(cols_v.div_ceil(SERIAL_MAX_GROUPS));
        }
        let seg_len = cols_v.div_ceil(segs.max(1)).max(1);
        Yardstick {
            entry,
            dtype,
            cols,
            segs: cols_v.div_ceil(seg_len).max(1),
            seg_len,
        }
    }

    /// Elements each row writes: one group of four per segment (the row's partial sums in
    /// the first element of each; a row sum writes `B·segs` groups where the floor it stands
    /// for writes `B` values, under 1% of what it reads at the bench's shapes).
    pub fn out_per_row(&self) -> usize {
        4 * self.segs
    }
}

impl Job for Yardstick {
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        chunk: &Chunk,
    ) -> Result<Vec<PooledBuffer>> {
        let (x, y) = (chunk.inputs[0].slice, chunk.outputs[0].slice);
        let (segs, seg_len) = (self.segs as u32, self.seg_len as u32);
        let params = Params::new(chunk.rows, self.cols, segs, seg_len, 1.0)
            .placed(x.base, self.cols, y.base);
        let items = chunk.rows * self.segs;
        // `row_sum`: a workgroup per item; the others: an invocation per item.
        let groups = if self.entry == Entry::RowSum {
            items
        } else {
            items.div_ceil(WG)
        };
        let pass = record_pass(
            ctx,
            encoder,
            Kernel::yardstick(self.entry, self.dtype),
            groups,
            params,
            vec![(Slot::X, x.binding()), (Slot::Y, y.binding())],
        )?;
        Ok(vec![pass])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::launch::{launch, Input, Layout, Mode, Output, Sink, Source};
    use crate::gpu::readback::Wait;
    use crate::Gpu;

    /// Both row-sum layouts, whatever the adapter's class, read every element of every row
    /// (else they would be a false floor): each row's partial sums add up to its sum, at
    /// widths (multiples of four, as the bench pads its rows) with every tail of the serial
    /// loop, one to hundreds of segments per row, in f32 (small integers: every partial sum
    /// exact) and bf16 (sparse ones: every partial sum exact in bf16). With
    /// `SMOOTHMAX_REQUIRE_GPU=1` a missing adapter fails the test.
    #[test]
    fn row_sums_read_every_element() {
        let gpu = match Gpu::new() {
            Ok(g) => g,
            Err(e) if std::env::var("SMOOTHMAX_REQUIRE_GPU").as_deref() == Ok("1") => {
                panic!("SMOOTHMAX_REQUIRE_GPU=1 but no GPU: {e}")
            }
            Err(_) => return,
        };
        for (rows, cols) in [
            (5, 1000),
            (3, 4),
            (2, 12),
            (2, 20),
            (2, 32),
            (8, 20_000),
            (1, 300_000),
        ] {
            let x = ndarray::Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 7 + j) % 5) as f32);
            let sparse = |(i, j): (usize, usize)| ((i * 7 + j) % 997 == 0) as u8 as f32;
            let xb =
                ndarray::Array2::from_shape_fn((rows, cols), |ij| half::bf16::from_f32(sparse(ij)));
            let m32 = gpu.upload(x.view()).unwrap();
            let m16 = gpu.upload(xb.view()).unwrap();
            for policy in [Policy::Gpu, Policy::Cpu] {
                for (m, dtype) in [(&m32, DType::F32), (&m16, DType::BF16)] {
                    let job = Yardstick::row_sum(dtype, rows, cols, policy);
                    let (elem, per_row) = (dtype.size(), job.out_per_row());
                    let mut data = vec![0u8; rows * per_row * elem];
                    let inputs = [Input {
                        source: Source::Device(m),
                        layout: Layout::Based,
                    }];
                    let mut outputs = [Output {
                        sink: Sink::Host {
                            row_bytes: per_row * elem,
                            data: &mut data,
                            elem,
                        },
                        layout: Layout::Based,
                    }];
                    let mode = Mode::Stream(Wait::Inline);
                    let run = launch(&gpu.ctx, &job, rows, cols, &inputs, &mut outputs, mode);
                    pollster::block_on(run).unwrap();
                    let partial = |k: usize| match dtype {
                        DType::F32 => bytemuck::cast_slice::<u8, f32>(&data)[k],
                        _ => half::bf16::from_bits(bytemuck::cast_slice(&data)[k]).to_f32(),
                    };
                    for r in 0..rows {
                        let got: f32 = (0..job.segs).map(|s| partial(r * per_row + 4 * s)).sum();
                        let want: f32 = match dtype {
                            DType::F32 => x.row(r).sum(),
                            _ => (0..cols).map(|j| sparse((r, j))).sum(),
                        };
                        let what = format!("{policy:?} {dtype:?} [{rows}, {cols}] row {r}");
                        assert_eq!(got, want, "{what} ({} segments)", job.segs);
                    }
                }
            }
        }
    }

    /// The layout: enough work items for the adapter class, every group of every row in
    /// exactly one segment, and no serial segment past lavapipe's loop limit, however long
    /// the rows (here past it, where the GPU's one segment per row would be).
    #[test]
    fn row_sum_segments_cover_rows_and_respect_the_loop_limit() {
        for (rows, cols_v) in [
            (1, 1),
            (8, 64_000),
            (4096, 8000),
            (4096, SERIAL_MAX_GROUPS + 1),
            (3, 250),
        ] {
            for policy in [Policy::Gpu, Policy::Cpu] {
                let y = Yardstick::row_sum(DType::F32, rows, 4 * cols_v, policy);
                assert!(
                    y.segs * y.seg_len >= cols_v,
                    "{policy:?} [{rows}, {cols_v}]: {y:?}"
                );
                assert!(
                    (y.segs - 1) * y.seg_len < cols_v,
                    "{policy:?}: empty segment {y:?}"
                );
                if policy == Policy::Cpu {
                    assert!(y.seg_len <= SERIAL_MAX_GROUPS, "{y:?}");
                }
            }
        }
        let few = Yardstick::row_sum(DType::F32, 8, 4 * 64_000, Policy::Cpu);
        assert!(8 * few.segs >= MIN_WORKGROUPS_CPU * WG, "{few:?}");
        let few = Yardstick::row_sum(DType::F32, 8, 4 * 64_000, Policy::Gpu);
        assert!(8 * few.segs >= TARGET_ITEMS_GPU, "{few:?}");
    }
}
