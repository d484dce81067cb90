//! The device abstraction: what any backend offers the layers above
//! (buffers, streams, events, memory statistics), and the CPU device that
//! implements it with the caching allocator and worker-thread streams. A
//! GPU backend implements the same trait.

use crate::allocator::{CachingAllocator, MemoryStats};
use crate::arena::Arena;
use crate::buffer::DeviceBuffer;
use crate::error::RuntimeError;
use crate::event::Event;
use crate::pod::Pod;
use crate::stream::Stream;

/// A device: where buffers live and streams run.
pub trait Device: Send + Sync {
    /// A human-readable name, e.g. "cpu".
    fn name(&self) -> &str;

    /// A buffer of `len` elements, all `T::default()`.
    fn alloc<T: Pod>(&self, len: usize) -> Result<DeviceBuffer<T>, RuntimeError>;

    /// A buffer holding a copy of `data`.
    fn upload<T: Pod>(&self, data: &[T]) -> Result<DeviceBuffer<T>, RuntimeError> {
        let buffer = self.alloc(data.len())?;
        buffer.copy_from_host(data)?;
        Ok(buffer)
    }

    /// An arena of `len` elements, all `T::default()`, for planned memory
    /// (borrowed by range; see [`Arena`]).
    fn alloc_arena<T: Pod>(&self, len: usize) -> Result<Arena<T>, RuntimeError>;

    /// A new stream.
    fn create_stream(&self) -> Result<Stream, RuntimeError>;

    /// A new event (not yet recorded).
    fn create_event(&self) -> Event {
        Event::new()
    }

    /// Allocator counters.
    fn memory_stats(&self) -> MemoryStats;

    /// Returns cached free memory to the system.
    fn empty_cache(&self);
}

/// The host CPU as a device: buffers in host memory through a
/// [`CachingAllocator`], streams on worker threads.
#[derive(Debug, Default)]
pub struct CpuDevice {
    allocator: CachingAllocator,
}

impl CpuDevice {
    /// A CPU device without a memory limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A CPU device whose reserved memory may not exceed `bytes`.
    pub fn with_memory_limit(bytes: usize) -> Self {
        CpuDevice {
            allocator: CachingAllocator::new(Some(bytes)),
        }
    }

    /// The device's allocator.
    pub fn allocator(&self) -> &CachingAllocator {
        &self.allocator
    }
}

impl Device for CpuDevice {
    fn name(&self) -> &str {
        "cpu"
    }

    fn alloc<T: Pod>(&self, len: usize) -> Result<DeviceBuffer<T>, RuntimeError> {
        DeviceBuffer::new(&self.allocator, len)
    }

    fn alloc_arena<T: Pod>(&self, len: usize) -> Result<Arena<T>, RuntimeError> {
        Arena::new(&self.allocator, len)
    }

    fn create_stream(&self) -> Result<Stream, RuntimeError> {
        Stream::new()
    }

    fn memory_stats(&self) -> MemoryStats {
        self.allocator.stats()
    }

    fn empty_cache(&self) {
        self.allocator.empty_cache();
    }
}
