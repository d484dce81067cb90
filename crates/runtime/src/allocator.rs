//! The caching allocator: requests are rounded up to a size class (four
//! classes per power of two, at least 512 bytes), freed blocks go to a
//! per-(element type, class) free list and are handed out again without a
//! real allocation; `empty_cache` returns them to the system. An optional
//! limit on reserved bytes turns into a typed out-of-memory error after
//! the cache has been released once. `reset_peak` starts the high-water
//! marks afresh, so a caller can measure the peak of one piece of work.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::RuntimeError;
use crate::pod::Pod;

/// Smallest size class in bytes.
pub const MIN_CLASS_BYTES: usize = 512;

/// The size class (bytes actually reserved) of a request of `bytes`:
/// 0 for 0, otherwise at least [`MIN_CLASS_BYTES`] and at most 25% above
/// `bytes`. `None` when the class would overflow `usize`.
pub fn size_class(bytes: usize) -> Option<usize> {
    if bytes == 0 {
        return Some(0);
    }
    if bytes <= MIN_CLASS_BYTES {
        return Some(MIN_CLASS_BYTES);
    }
    let pow = 1usize << (usize::BITS - 1 - bytes.leading_zeros());
    let step = pow / 4;
    bytes.div_ceil(step).checked_mul(step)
}

/// Allocator counters, in bytes of size classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live buffers.
    pub allocated_bytes: usize,
    /// Bytes held by live buffers plus cached free blocks.
    pub reserved_bytes: usize,
    /// Highest `allocated_bytes` so far.
    pub peak_allocated_bytes: usize,
    /// Highest `reserved_bytes` so far.
    pub peak_reserved_bytes: usize,
    /// Allocation requests (including zero-length ones).
    pub requests: u64,
    /// Requests served from the cache.
    pub cache_hits: u64,
    /// Real allocations from the system.
    pub real_allocs: u64,
    /// Blocks returned to the system (`empty_cache`, memory pressure).
    pub real_frees: u64,
    /// Free blocks currently cached.
    pub cached_blocks: usize,
    /// The limit on `reserved_bytes`, if any.
    pub limit: Option<usize>,
}

/// A block of storage: the elements plus the size class it was carved as.
pub(crate) struct Block<T> {
    pub(crate) data: Vec<T>,
    pub(crate) class: usize,
}

type FreeList = Vec<Box<dyn Any + Send + Sync>>;

struct State {
    free: HashMap<(TypeId, usize), FreeList>,
    stats: MemoryStats,
}

/// A caching allocator; cheap to clone (a shared handle). Buffers return
/// their blocks to it when their last handle drops.
#[derive(Clone)]
pub struct CachingAllocator {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for CachingAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingAllocator")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for CachingAllocator {
    fn default() -> Self {
        Self::new(None)
    }
}

impl CachingAllocator {
    /// An allocator whose reserved bytes may not exceed `limit` (if any).
    pub fn new(limit: Option<usize>) -> Self {
        CachingAllocator {
            state: Arc::new(Mutex::new(State {
                free: HashMap::new(),
                stats: MemoryStats {
                    limit,
                    ..MemoryStats::default()
                },
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters stay consistent: every update is complete before any
        // code that could panic runs.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current counters.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// Starts the peak counters afresh: `peak_allocated_bytes` and
    /// `peak_reserved_bytes` become the current `allocated_bytes` and
    /// `reserved_bytes` (like `torch.cuda.reset_peak_memory_stats`), so a
    /// later peak is the high-water mark since this call.
    pub fn reset_peak(&self) {
        let mut st = self.lock();
        st.stats.peak_allocated_bytes = st.stats.allocated_bytes;
        st.stats.peak_reserved_bytes = st.stats.reserved_bytes;
    }

    /// Returns every cached free block to the system.
    pub fn empty_cache(&self) {
        let dropped = {
            let mut st = self.lock();
            release_cache(&mut st)
        };
        drop(dropped); // Outside the lock.
    }

    /// A block of `len` elements, all `T::default()`.
    pub(crate) fn alloc<T: Pod>(&self, len: usize) -> Result<Block<T>, RuntimeError> {
        let elem = std::mem::size_of::<T>().max(1);
        let too_big = |st: &State| RuntimeError::OutOfMemory {
            requested: usize::MAX,
            allocated: st.stats.allocated_bytes,
            reserved: st.stats.reserved_bytes,
            limit: st.stats.limit.unwrap_or(usize::MAX),
        };
        let class = len.checked_mul(elem).and_then(size_class);
        let mut st = self.lock();
        st.stats.requests += 1;
        let Some(class) = class else {
            return Err(too_big(&st));
        };
        if class == 0 {
            return Ok(Block {
                data: Vec::new(),
                class,
            });
        }
        let cached = st
            .free
            .get_mut(&(TypeId::of::<T>(), class))
            .and_then(Vec::pop)
            .and_then(|b| b.downcast::<Vec<T>>().ok());
        if let Some(mut data) = cached {
            st.stats.cache_hits += 1;
            st.stats.cached_blocks -= 1;
            take_allocated(&mut st.stats, class);
            drop(st);
            data.clear();
            data.resize(len, T::default());
            return Ok(Block { data: *data, class });
        }
        let mut dropped = Vec::new();
        if let Some(limit) = st.stats.limit {
            if st.stats.reserved_bytes.saturating_add(class) > limit {
                dropped = release_cache(&mut st);
            }
            if st.stats.reserved_bytes.saturating_add(class) > limit {
                return Err(RuntimeError::OutOfMemory {
                    requested: class,
                    allocated: st.stats.allocated_bytes,
                    reserved: st.stats.reserved_bytes,
                    limit,
                });
            }
        }
        st.stats.real_allocs += 1;
        st.stats.reserved_bytes += class;
        st.stats.peak_reserved_bytes = st.stats.peak_reserved_bytes.max(st.stats.reserved_bytes);
        take_allocated(&mut st.stats, class);
        drop(st);
        drop(dropped);
        let mut data = Vec::new();
        if data.try_reserve_exact(class / elem).is_err() {
            let mut st = self.lock();
            st.stats.real_allocs -= 1;
            st.stats.reserved_bytes -= class;
            st.stats.allocated_bytes -= class;
            return Err(RuntimeError::OutOfMemory {
                requested: class,
                allocated: st.stats.allocated_bytes,
                reserved: st.stats.reserved_bytes,
                limit: st.stats.limit.unwrap_or(usize::MAX),
            });
        }
        data.resize(len, T::default());
        Ok(Block { data, class })
    }

    /// Takes a block back into the cache.
    pub(crate) fn free<T: Pod>(&self, block: Block<T>) {
        if block.class == 0 {
            return;
        }
        let mut st = self.lock();
        st.stats.allocated_bytes -= block.class;
        st.stats.cached_blocks += 1;
        st.free
            .entry((TypeId::of::<T>(), block.class))
            .or_default()
            .push(Box::new(block.data));
    }
}

fn take_allocated(stats: &mut MemoryStats, class: usize) {
    stats.allocated_bytes += class;
    stats.peak_allocated_bytes = stats.peak_allocated_bytes.max(stats.allocated_bytes);
}

/// Empties the free lists; the caller drops the blocks outside the lock.
fn release_cache(st: &mut State) -> Vec<FreeList> {
    let cached = st.stats.reserved_bytes - st.stats.allocated_bytes;
    st.stats.reserved_bytes = st.stats.allocated_bytes;
    st.stats.real_frees += st.stats.cached_blocks as u64;
    st.stats.cached_blocks = 0;
    debug_assert!(cached == 0 || !st.free.is_empty());
    st.free.drain().map(|(_, list)| list).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_bound_waste() {
        let mut prev = 0;
        for bytes in (0..100_000).chain([1 << 20, (1 << 20) + 1, 3 << 30]) {
            let class = size_class(bytes).unwrap();
            assert!(class >= bytes);
            assert!(class >= prev || bytes < prev, "monotonic");
            if bytes > MIN_CLASS_BYTES {
                assert!(class * 4 <= bytes * 5 + 4, "{bytes} -> {class}");
            }
            prev = class;
        }
        assert_eq!(size_class(usize::MAX), None);
    }
}
