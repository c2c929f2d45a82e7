//! Output allocation. A fresh `[4096, 32000]` output is 524 MB of new pages: with 4 KiB pages
//! that is 128k page faults, each taking a kernel lock, which cost a quarter of a CPU softmax
//! (measured with perf). On Linux the range is advised `MADV_HUGEPAGE` before it is touched,
//! so transparent huge pages (in `madvise` mode on most distributions) cut the faults 512-fold.

/// A zeroed `Vec<T>` of length `n` (calloc: no page is touched here), advised for huge pages
/// when large.
pub(crate) fn output_vec<T: bytemuck::Zeroable + Copy>(n: usize) -> Vec<T> {
    let v: Vec<T> = bytemuck::allocation::zeroed_vec(n);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n * std::mem::size_of::<T>();
        if bytes >= 4 * HUGE {
            let start = v.as_ptr() as usize;
            let first = start.next_multiple_of(HUGE);
            let end = (start + bytes) / HUGE * HUGE;
            if end > first {
                // SAFETY: advice only, on whole 2 MiB pages inside this allocation; it changes
                // no contents and no mapping. Failure (e.g. THP disabled) is harmless.
                unsafe {
                    libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    v
}
