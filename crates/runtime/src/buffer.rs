//! Typed device buffers: a shared handle to a block from the caching
//! allocator, with host copies in and out and an explicit resize. The
//! block goes back to the allocator's cache when the last handle drops.
//! Streams see buffers type-erased ([`ErasedBuffer`]) and lock them for
//! the duration of one task.

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::allocator::{Block, CachingAllocator};
use crate::error::RuntimeError;
use crate::pod::Pod;

static NEXT_BUFFER: AtomicU64 = AtomicU64::new(1);

pub(crate) struct BufferInner<T: Pod> {
    id: u64,
    len: AtomicUsize,
    block: RwLock<Block<T>>,
    allocator: CachingAllocator,
}

impl<T: Pod> Drop for BufferInner<T> {
    fn drop(&mut self) {
        let block = self.block.get_mut().unwrap_or_else(PoisonError::into_inner);
        let block = std::mem::replace(
            block,
            Block {
                data: Vec::new(),
                class: 0,
            },
        );
        self.allocator.free(block);
    }
}

/// A device buffer of `len` elements of `T`. Cloning makes another handle
/// to the same memory; launches hold handles while they are queued.
pub struct DeviceBuffer<T: Pod> {
    inner: Arc<BufferInner<T>>,
}

impl<T: Pod> Clone for DeviceBuffer<T> {
    fn clone(&self) -> Self {
        DeviceBuffer {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Pod> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>(id {}, len {})",
            std::any::type_name::<T>(),
            self.id(),
            self.len()
        )
    }
}

impl<T: Pod> DeviceBuffer<T> {
    pub(crate) fn new(allocator: &CachingAllocator, len: usize) -> Result<Self, RuntimeError> {
        let block = allocator.alloc::<T>(len)?;
        Ok(DeviceBuffer {
            inner: Arc::new(BufferInner {
                id: NEXT_BUFFER.fetch_add(1, Ordering::Relaxed),
                len: AtomicUsize::new(len),
                block: RwLock::new(block),
                allocator: allocator.clone(),
            }),
        })
    }

    /// Process-unique id of the memory (shared by clones).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the elements in bytes (not of the size class).
    pub fn size_bytes(&self) -> usize {
        self.len() * std::mem::size_of::<T>()
    }

    fn read(&self) -> RwLockReadGuard<'_, Block<T>> {
        self.inner
            .block
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Block<T>> {
        self.inner
            .block
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies `src` into the buffer now (blocking; order it after queued
    /// work with `Stream::synchronize` or use `Stream::upload`).
    pub fn copy_from_host(&self, src: &[T]) -> Result<(), RuntimeError> {
        let mut block = self.write();
        check_len("copy_from_host source", block.data.len(), src.len())?;
        block.data.copy_from_slice(src);
        Ok(())
    }

    /// Copies the buffer into `dst` now (blocking).
    pub fn copy_to_host(&self, dst: &mut [T]) -> Result<(), RuntimeError> {
        let block = self.read();
        check_len("copy_to_host destination", block.data.len(), dst.len())?;
        dst.copy_from_slice(&block.data);
        Ok(())
    }

    /// The buffer's contents as a new vector (blocking).
    pub fn to_host(&self) -> Vec<T> {
        self.read().data.clone()
    }

    /// Changes the length to `len`, keeping the common prefix; new elements
    /// are `T::default()`. Takes a new block from the allocator when the
    /// size class changes. Graphs captured with the old length refuse to
    /// replay.
    pub fn resize(&self, len: usize) -> Result<(), RuntimeError> {
        let mut block = self.write();
        let elem = std::mem::size_of::<T>().max(1);
        let same_class =
            len.checked_mul(elem).and_then(crate::allocator::size_class) == Some(block.class);
        if same_class {
            block.data.resize(len, T::default());
        } else {
            let mut fresh = self.inner.allocator.alloc::<T>(len)?;
            let keep = len.min(block.data.len());
            fresh.data[..keep].copy_from_slice(&block.data[..keep]);
            let old = std::mem::replace(&mut *block, fresh);
            self.inner.allocator.free(old);
        }
        self.inner.len.store(len, Ordering::Release);
        Ok(())
    }

    pub(crate) fn erased(&self) -> Arc<dyn ErasedBuffer> {
        self.inner.clone()
    }
}

pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), RuntimeError> {
    if expected == got {
        Ok(())
    } else {
        Err(RuntimeError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

/// A held read lock whose block can be downcast to `Block<T>`.
pub(crate) trait ReadGuard {
    fn block(&self) -> &dyn Any;
}

/// A held write lock whose block can be downcast to `Block<T>`.
pub(crate) trait WriteGuard {
    fn block(&self) -> &dyn Any;
    fn block_mut(&mut self) -> &mut dyn Any;
}

impl<T: Pod> ReadGuard for RwLockReadGuard<'_, Block<T>> {
    fn block(&self) -> &dyn Any {
        &**self
    }
}

impl<T: Pod> WriteGuard for RwLockWriteGuard<'_, Block<T>> {
    fn block(&self) -> &dyn Any {
        &**self
    }

    fn block_mut(&mut self) -> &mut dyn Any {
        &mut **self
    }
}

/// A buffer of any element type, as streams and graphs hold it.
pub(crate) trait ErasedBuffer: Send + Sync {
    fn id(&self) -> u64;
    fn len(&self) -> usize;
    fn type_name(&self) -> &'static str;
    fn lock_read(&self) -> Box<dyn ReadGuard + '_>;
    fn lock_write(&self) -> Box<dyn WriteGuard + '_>;
}

impl<T: Pod> ErasedBuffer for BufferInner<T> {
    fn id(&self) -> u64 {
        self.id
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn lock_read(&self) -> Box<dyn ReadGuard + '_> {
        Box::new(self.block.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn lock_write(&self) -> Box<dyn WriteGuard + '_> {
        Box::new(self.block.write().unwrap_or_else(PoisonError::into_inner))
    }
}
