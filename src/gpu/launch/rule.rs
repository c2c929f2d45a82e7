//! The one chunking rule.

use crate::error::{Error, Result};
use crate::gpu::split::{even_chunks, WG};

/// Bytes of one stream per chunk when host data is streamed: several chunks even where one
/// binding could take the whole input, so that transfers overlap compute, and two sets of
/// buffers cost a bounded amount of memory.
const STREAM_CHUNK_BYTES: u64 = 64 << 20;

/// The one chunking rule: rows per chunk so that every stream's chunk fits one storage
/// binding (with room for the alignment slack of a matrix bound where it lies), the grid fits
/// `max_dim²` workgroups, and, when host data is streamed, no stream exceeds
/// `STREAM_CHUNK_BYTES`; then equal chunks. `row_bytes` is the widest stream's row.
pub(super) fn chunk_rows(
    rows: usize,
    cols: usize,
    row_bytes: u64,
    max_binding: u64,
    align: u64,
    max_dim: u32,
    streamed: bool,
) -> Result<usize> {
    let room = max_binding.saturating_sub(align);
    if row_bytes > room {
        return Err(Error::ShapeTooLarge {
            rows,
            cols,
            what: "one row is larger than the device's largest storage binding",
            limit: max_binding,
        });
    }
    let cap = if streamed {
        room.min(STREAM_CHUNK_BYTES)
    } else {
        room
    };
    let by_bytes = (cap / row_bytes.max(4)).max(1) as usize;
    // A bound on rows per chunk so that a pass's grid (at most one workgroup per row and
    // segment, and segments only when rows are few) stays below max_dim² workgroups: far
    // above any real shape; `record_pass` still checks the fold and returns an error.
    let by_grid = (max_dim as usize)
        .saturating_mul(max_dim as usize)
        .saturating_mul(WG / 2);
    Ok(even_chunks(rows, rows.min(by_bytes).min(by_grid)))
}

#[cfg(test)]
mod tests {
    use super::chunk_rows;

    #[test]
    fn chunks_fit_the_binding_and_streamed_chunks_stay_small() {
        let lim = 128 << 20;
        let row = |cols: usize| (cols * 4) as u64;
        let rule =
            |rows, cols, streamed| chunk_rows(rows, cols, row(cols), lim, 256, 65_535, streamed);
        // Device data: as large as a binding allows, in equal chunks.
        assert_eq!(rule(4096, 32_000, false).unwrap(), 1024); // 4 chunks
        assert_eq!(rule(512, 128_256, false).unwrap(), 256);
        assert_eq!(rule(1049, 32_000, false).unwrap(), 525);
        assert_eq!(rule(3, 7, false).unwrap(), 3);
        // Host data: at most 64 MiB per stream, so transfers overlap compute.
        assert_eq!(rule(4096, 32_000, true).unwrap(), 512); // 8 chunks of 65.5 MB
        assert_eq!(rule(65_536, 1000, true).unwrap(), 16_384); // 4 chunks
                                                               // A row larger than a binding (less the alignment slack) is an error.
        assert!(rule(1, 40 << 20, false).is_err());
        assert!(chunk_rows(1, 1, lim, lim, 256, 65_535, false).is_err());
    }
}
