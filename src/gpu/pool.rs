//! Buffer pool: creating a buffer (and binding it the first time) is expensive, so buffers are
//! kept by (usage, size class) and handed out again. A buffer goes back to the pool when its
//! `PooledBuffer` is dropped, so no error path can leak one. Idle buffers are bounded in bytes
//! (`Gpu::set_pool_limit`); past the bound the least recently returned ones are evicted
//! (dropped, which frees them in wgpu). `SMOOTHMAX_NO_POOL=1` turns reuse off, for debugging.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default bound on the bytes the pool keeps idle.
pub(crate) const DEFAULT_RETAIN_BYTES: u64 = 1 << 30;

/// Size classes: powers of two up to 1 MiB, then whole MiB, never above the caller's cap
/// (the binding limit), so a size class is always bindable.
fn size_class(size: u64, cap: u64) -> u64 {
    let size = size.max(256);
    let class = if size <= 1 << 20 {
        size.next_power_of_two()
    } else {
        size.div_ceil(1 << 20) << 20
    };
    class.min(cap.max(size))
}

type Key = (u32, u64);

struct Idle {
    /// Oldest first.
    buffers: VecDeque<(Key, wgpu::Buffer)>,
    bytes: u64,
}

/// Idle buffers by (usage bits, size class), with a bound on the bytes kept.
pub(crate) struct BufferPool {
    idle: Mutex<Idle>,
    retain_bytes: AtomicU64,
    enabled: bool,
    created: AtomicU64,
    /// The largest buffer the engine has created, pooled or not (`note_created`).
    largest: AtomicU64,
}

impl BufferPool {
    /// A pool, reusing buffers unless `SMOOTHMAX_NO_POOL=1` (`0` or unset: reuse; anything
    /// else is an error).
    pub fn from_env() -> crate::Result<Self> {
        let enabled = crate::env::choice("SMOOTHMAX_NO_POOL", &[("1", false), ("0", true)], true)?;
        Ok(BufferPool {
            idle: Mutex::new(Idle {
                buffers: VecDeque::new(),
                bytes: 0,
            }),
            retain_bytes: AtomicU64::new(DEFAULT_RETAIN_BYTES),
            enabled,
            created: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        })
    }

    /// Buffers created since the pool was made (for tests and reports).
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Records a buffer of `bytes` created by the engine (the pool's own, and device
    /// matrices made outside it).
    pub fn note_created(&self, bytes: u64) {
        self.largest.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Starts [`BufferPool::largest`] over (to measure one call: the bench).
    #[cfg(feature = "cli")]
    pub fn reset_largest(&self) {
        self.largest.store(0, Ordering::Relaxed);
    }

    /// The largest buffer created since the pool was made (or reset), in bytes.
    pub fn largest(&self) -> u64 {
        self.largest.load(Ordering::Relaxed)
    }

    /// Bytes held by idle buffers now.
    pub fn idle_bytes(&self) -> u64 {
        self.idle.lock().map(|g| g.bytes).unwrap_or(0)
    }

    /// Sets the bound on idle bytes and evicts down to it.
    pub fn set_limit(&self, bytes: u64) {
        self.retain_bytes.store(bytes, Ordering::Relaxed);
        if let Ok(mut g) = self.idle.lock() {
            evict(&mut g, bytes);
        }
    }

    /// A buffer of at least `size` bytes with exactly `usage`.
    pub fn acquire(
        self: &Arc<Self>,
        device: &wgpu::Device,
        usage: wgpu::BufferUsages,
        size: u64,
        cap: u64,
    ) -> PooledBuffer {
        let class = size_class(size, cap);
        let key = (usage.bits(), class);
        let reused = if self.enabled {
            self.idle.lock().ok().and_then(|mut g| {
                // Most recently returned first: likeliest to be warm.
                let at = g.buffers.iter().rposition(|(k, _)| *k == key)?;
                let (_, b) = g.buffers.remove(at)?;
                g.bytes -= class;
                Some(b)
            })
        } else {
            None
        };
        let buffer = reused.unwrap_or_else(|| {
            self.created.fetch_add(1, Ordering::Relaxed);
            self.note_created(class);
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("smoothmax/pooled"),
                size: class,
                usage,
                mapped_at_creation: false,
            })
        });
        PooledBuffer {
            buffer: Some(buffer),
            key,
            pool: self.clone(),
            keep: true,
        }
    }

    fn release(&self, key: Key, buffer: wgpu::Buffer) {
        if !self.enabled {
            return;
        }
        let limit = self.retain_bytes.load(Ordering::Relaxed);
        if let Ok(mut g) = self.idle.lock() {
            if key.1 > limit {
                return; // larger than the whole bound: not kept
            }
            g.bytes += key.1;
            g.buffers.push_back((key, buffer));
            evict(&mut g, limit);
        }
    }
}

/// Drops the least recently returned idle buffers until `limit` holds.
fn evict(g: &mut Idle, limit: u64) {
    while g.bytes > limit {
        match g.buffers.pop_front() {
            Some(((_, class), _buffer)) => g.bytes -= class,
            None => break,
        }
    }
}

/// A buffer on loan from the pool; returned on drop unless [`PooledBuffer::discard`] was
/// called (after an error, when its state is unknown).
pub(crate) struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    key: Key,
    pool: Arc<BufferPool>,
    keep: bool,
}

impl PooledBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }

    /// Do not return this buffer to the pool.
    pub fn discard(&mut self) {
        self.keep = false;
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if self.keep {
                self.pool.release(self.key, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_and_respect_the_cap() {
        assert_eq!(size_class(1, 1 << 30), 256);
        assert_eq!(size_class(1000, 1 << 30), 1024);
        assert_eq!(size_class((1 << 20) + 1, 1 << 30), 2 << 20);
        assert_eq!(size_class(127 << 20, 128 << 20), 127 << 20);
        assert_eq!(
            size_class((127 << 20) + 5, (127 << 20) + 8),
            (127 << 20) + 8
        );
    }
}
