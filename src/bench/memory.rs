//! Heap measurement for the benchmarks: a counting global allocator that the `smoothmax`
//! binary installs (`#[global_allocator]` in src/main.rs), and the peak of live heap bytes
//! during one call. Where it is not installed (the library in someone else's program), no
//! figure is reported rather than a wrong one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator with counters of live and peak bytes.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static USED: AtomicBool = AtomicBool::new(false);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the same arguments; the counters
// are plain atomics and allocate nothing.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        USED.store(true, Ordering::Relaxed);
        grew(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        USED.store(true, Ordering::Relaxed);
        grew(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        grew(new);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

/// Runs `f` and returns its result with the peak of live heap bytes during it above those
/// live when it started (`None` when [`CountingAlloc`] is not the global allocator). Other
/// threads' allocations during `f` count too: measure with nothing else running.
pub fn peak_heap<R>(f: impl FnOnce() -> R) -> (R, Option<usize>) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (r, USED.load(Ordering::Relaxed).then_some(peak))
}
