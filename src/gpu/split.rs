//! How a chunk of a `[B, C]` row op is cut up for an adapter class: each row into segments
//! when rows are long and few, and work items into a folded 2-D grid (chunks themselves are
//! `launch::chunk_rows`).
//! Pure arithmetic, unit-tested without a GPU.

/// How rows are cut for an adapter class.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// A real GPU: many invocations per row (coalesced loads, short serial chains), and long
    /// rows split until there are `TARGET_ITEMS_GPU` work items.
    Gpu,
    /// A CPU adapter (lavapipe): each invocation is a SIMD lane of a CPU thread, so the serial
    /// loop is cheap and the shared-memory tree (barriers are coroutine switches) is not: as many
    /// vec4 steps per invocation as possible (up to `MAX_STEPS_CPU`) while at least
    /// `MIN_WORKGROUPS_CPU` workgroups keep every CPU thread busy. Measured at [4096, 32000]:
    /// logsumexp 176 -> 81 ms, cross-entropy forward 272 -> 105 ms.
    Cpu,
}

/// Below this many (row, segment) items a dispatch leaves a large GPU idle: long rows are then
/// split into segments, one workgroup each, merged afterwards.
pub(crate) const TARGET_ITEMS_GPU: usize = 512;
const MAX_STEPS_CPU: usize = 2048;
pub(crate) const MIN_WORKGROUPS_CPU: usize = 16;
/// Shortest segment worth a workgroup, in vec4 units (8192 floats).
const MIN_SEG_V: usize = 2048;
/// Vec4 steps each invocation should get before more invocations are added to a row.
const STEPS_PER_THREAD: usize = 8;
/// Invocations per workgroup (the shaders' `WG`, generated from this value).
pub(crate) const WG: usize = 256;
/// Invocations per item in a CPU adapter's write pass: lavapipe's SIMD width on a 256-bit
/// CPU ("llvmpipe (..., 256 bits)"), so each SIMD step covers 128 contiguous bytes of one row.
const WRITE_THREADS_CPU: usize = 8;
/// On a CPU adapter, a fused pass re-reads a row after the statistics of all its workgroup's
/// rows (lavapipe runs each barrier phase for all of a workgroup's invocations in turn).
/// Fused only when those rows fit this far inside a core's L2, so the second read is a cache
/// hit, and an item has at least a SIMD step's lanes (one
/// lane per row makes the fused write loop gather from 8 rows at once: at [65536, 1000]
/// fused softmax took 134 ms, two passes 127 ms); else two passes. Small shapes gain most
/// from fusing (one dispatch instead of two or three: [32, 1000] softmax 0.30 -> 0.20 ms).
const FUSED_BYTES_CPU: usize = 512 << 10;

/// The split of one chunk's rows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowSplit {
    /// Invocations per (row, segment) item: power of two in 1..=256.
    pub row_threads: u32,
    /// Segments per row.
    pub segs: u32,
    /// Vec4 units per segment.
    pub seg_len: u32,
    /// Ops that write a `[B, C]` result (softmax, the CE gradient) and have one segment per
    /// row: one pass that reads the row twice while it is hot, instead of a statistics pass,
    /// then a write pass. On CPU adapters only when the rows read in between fit in cache
    /// (see `FUSED_BYTES_CPU`): lavapipe runs a workgroup's statistics loops for all its rows
    /// (8 MB at [4096, 32000]) before any write loop, the second read then misses, and the
    /// fused pass cost more than two passes (measured at [4096, 32000]: softmax 272 -> 240 ms,
    /// log-softmax 260 -> 228 ms).
    pub fused: bool,
    /// Invocations per item in a separate write pass (no reduction there, so any layout works).
    pub write_threads: u32,
}

impl RowSplit {
    /// Splits `rows` rows of `cols_v` vec4 units for an adapter class.
    pub fn new(rows: usize, cols_v: usize, policy: Policy) -> Self {
        match policy {
            Policy::Gpu => Self::with(rows, cols_v, TARGET_ITEMS_GPU, STEPS_PER_THREAD),
            Policy::Cpu => {
                let min_threads = MIN_WORKGROUPS_CPU * WG;
                let steps = (rows * cols_v / min_threads).clamp(STEPS_PER_THREAD, MAX_STEPS_CPU);
                let mut s = Self::with(rows, cols_v, 1, steps);
                if s.workgroups(rows) < MIN_WORKGROUPS_CPU {
                    // Too few workgroups: split rows into segments as well.
                    let per_row = WG / s.row_threads as usize;
                    s = Self::with(rows, cols_v, MIN_WORKGROUPS_CPU * per_row, steps);
                }
                let rows_between = WG / s.row_threads as usize;
                s.fused = s.segs == 1
                    && s.row_threads as usize >= WRITE_THREADS_CPU
                    && rows_between * s.seg_len as usize * 16 <= FUSED_BYTES_CPU;
                s.write_threads = (s.seg_len as usize)
                    .next_power_of_two()
                    .min(WRITE_THREADS_CPU) as u32;
                s
            }
        }
    }

    /// Splits aiming at `target_items` work items and `steps` vec4 per invocation.
    fn with(rows: usize, cols_v: usize, target_items: usize, steps: usize) -> Self {
        let want_segs = if rows >= target_items {
            1
        } else {
            target_items.div_ceil(rows.max(1))
        };
        let segs = want_segs.min(cols_v.div_ceil(MIN_SEG_V)).max(1);
        let seg_len = cols_v.div_ceil(segs).max(1);
        let segs = cols_v.div_ceil(seg_len).max(1); // no empty trailing segment
        let row_threads = seg_len.div_ceil(steps).next_power_of_two().clamp(1, WG) as u32;
        RowSplit {
            row_threads,
            segs: segs as u32,
            seg_len: seg_len as u32,
            fused: segs == 1,
            write_threads: row_threads,
        }
    }

    /// A split that keeps every row in one work item (`segs = 1`), for kernels without a
    /// cross-workgroup merge: invocations per row chosen as in [`RowSplit::new`].
    pub fn whole_rows(rows: usize, cols_v: usize, policy: Policy) -> Self {
        let steps = match policy {
            Policy::Gpu => STEPS_PER_THREAD,
            Policy::Cpu => {
                (rows * cols_v / (MIN_WORKGROUPS_CPU * WG)).clamp(STEPS_PER_THREAD, MAX_STEPS_CPU)
            }
        };
        let row_threads = cols_v.div_ceil(steps).next_power_of_two().clamp(1, WG) as u32;
        RowSplit {
            row_threads,
            segs: 1,
            seg_len: cols_v.max(1) as u32,
            fused: true,
            write_threads: row_threads,
        }
    }

    /// Workgroups needed for `rows` rows (the statistics or fused pass).
    pub fn workgroups(&self, rows: usize) -> usize {
        self.workgroups_with(rows, self.row_threads)
    }

    /// Workgroups needed for `rows` rows in a separate write pass.
    pub fn write_workgroups(&self, rows: usize) -> usize {
        self.workgroups_with(rows, self.write_threads)
    }

    fn workgroups_with(&self, rows: usize, row_threads: u32) -> usize {
        (rows * self.segs as usize).div_ceil(WG / row_threads as usize)
    }
}

/// A grid of `n` workgroups folded into `(x, y)` with `x, y ≤ max_dim`.
pub(crate) fn fold_grid(n: usize, max_dim: u32) -> Option<(u32, u32)> {
    if n == 0 {
        return Some((0, 0));
    }
    let gx = n.min(max_dim as usize);
    let gy = n.div_ceil(gx);
    (gy <= max_dim as usize).then_some((gx as u32, gy as u32))
}

/// Rows per chunk when at most `most` fit: as many chunks as needed, of equal size.
/// [512, 128256] goes as 256 + 256 rows, not 261 + 251, whose 17 workgroups of 16 rows left
/// one of two CPU threads a workgroup behind (logsumexp 46.7 -> 43.8 ms, cross-entropy
/// forward 48.7 -> 45.1 ms on lavapipe).
pub(crate) fn even_chunks(rows: usize, most: usize) -> usize {
    let most = most.max(1);
    rows.div_ceil(rows.div_ceil(most).max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_rows_share_a_workgroup() {
        let s = RowSplit::new(70_000, 1, Policy::Gpu);
        assert_eq!((s.row_threads, s.segs), (1, 1));
        assert_eq!(s.workgroups(70_000), 70_000usize.div_ceil(256));
        let s = RowSplit::new(4096, 16, Policy::Gpu); // C = 64
        assert_eq!((s.row_threads, s.segs), (2, 1));
    }

    #[test]
    fn long_rows_use_whole_workgroups_and_few_rows_split() {
        let s = RowSplit::new(4096, 8000, Policy::Gpu); // [4096, 32000]
        assert_eq!((s.row_threads, s.segs), (256, 1));
        assert!(s.fused && s.write_threads == s.row_threads);
        let s = RowSplit::new(8, 64_000, Policy::Gpu); // [8, 256000]
        assert_eq!(s.row_threads, 256);
        assert_eq!(s.segs, 32);
        assert!(s.segs * s.seg_len >= 64_000 && (s.segs - 1) * s.seg_len < 64_000);
    }

    #[test]
    fn cpu_adapters_get_long_serial_loops_and_enough_workgroups() {
        let s = RowSplit::new(4096, 8000, Policy::Cpu); // [4096, 32000]
        assert_eq!((s.row_threads, s.segs), (4, 1));
        // A separate write pass, one SIMD step (8 lanes) per row, except for rows too short.
        assert!(!s.fused && s.write_threads == 8);
        assert_eq!(s.write_workgroups(4096), 4096 / 32);
        assert_eq!(RowSplit::new(100, 1, Policy::Cpu).write_threads, 1);
        // Small rows, several lanes each: fused (the rows of a workgroup stay in cache).
        assert!(RowSplit::new(32, 250, Policy::Cpu).fused); // [32, 1000]
        assert!(!RowSplit::new(65_536, 250, Policy::Cpu).fused); // one lane per row
        assert!(s.workgroups(4096) >= MIN_WORKGROUPS_CPU);
        let s = RowSplit::new(8, 64_000, Policy::Cpu); // [8, 256000]: split to stay busy
        assert!(s.segs > 1 && s.workgroups(8) >= MIN_WORKGROUPS_CPU, "{s:?}");
        let s = RowSplit::new(65_536, 250, Policy::Cpu); // [65536, 1000]: one lane per row
        assert_eq!(s.row_threads, 1);
    }

    #[test]
    fn grids_fold_past_65535() {
        assert_eq!(fold_grid(70_000, 65_535), Some((65_535, 2)));
        assert_eq!(fold_grid(5, 65_535), Some((5, 1)));
        assert_eq!(fold_grid(0, 65_535), Some((0, 0)));
        assert_eq!(fold_grid(10, 3), None);
    }
}
