//! Buffer pool: creating a buffer (and binding it the first time) is expensive, so buffers are
//! kept by (usage, size class) and handed out again. A buffer goes back to the pool when its
//! `PooledBuffer` is dropped, so no error path can leak one. `SMOOTHMAX_NO_POOL=1` turns reuse
//! off (every call creates fresh buffers), for debugging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default bound on the bytes the pool keeps idle.
const DEFAULT_RETAIN_BYTES: u64 = 1 << 30;

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

/// Idle buffers by (usage bits, size class), with a bound on the bytes kept.
pub(crate) struct BufferPool {
    free: Mutex<(HashMap<Key, Vec<wgpu::Buffer>>, u64)>,
    retain_bytes: u64,
    enabled: bool,
    created: AtomicU64,
}

impl BufferPool {
    pub fn from_env() -> Self {
        let enabled = std::env::var("SMOOTHMAX_NO_POOL")
            .map(|v| v != "1")
            .unwrap_or(true);
        BufferPool {
            free: Mutex::new((HashMap::new(), 0)),
            retain_bytes: DEFAULT_RETAIN_BYTES,
            enabled,
            created: AtomicU64::new(0),
        }
    }

    /// Buffers created since the pool was made (for tests and reports).
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
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
            self.free.lock().ok().and_then(|mut g| {
                let b = g.0.get_mut(&key).and_then(Vec::pop);
                if b.is_some() {
                    g.1 -= class;
                }
                b
            })
        } else {
            None
        };
        let buffer = reused.unwrap_or_else(|| {
            self.created.fetch_add(1, Ordering::Relaxed);
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
        if let Ok(mut g) = self.free.lock() {
            if g.1 + key.1 <= self.retain_bytes {
                g.1 += key.1;
                g.0.entry(key).or_default().push(buffer);
            }
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
