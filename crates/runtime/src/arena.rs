//! Arenas: one allocation that a memory planner carves into ranges, so
//! that values whose lifetimes do not overlap share bytes (the graph
//! compiler's planned memory). Launches borrow ranges of it while they
//! run; unlike a [`DeviceBuffer`](crate::DeviceBuffer), which a launch locks
//! whole, two launches (on two lanes of a replayed graph, say) may hold
//! disjoint ranges of one arena at once.
//!
//! Every borrow is checked when it is taken: a range that overlaps a live
//! mutable borrow, or a mutable borrow that overlaps any live borrow, is
//! refused with [`RuntimeError::ArenaConflict`] instead of waiting. A
//! correct plan never conflicts (the launches that touch one range are
//! ordered by their stream or by events), so a conflict is a planner bug
//! reported as a typed error, never two `&mut` to the same bytes.
//!
//! This is the one module of the runtime with `unsafe` code: handing out
//! `&[T]` / `&mut [T]` into one allocation from a shared `&Arena` cannot be
//! said in safe Rust. Its soundness rests on the borrow table (see
//! [`Arena::borrow`]).
#![allow(unsafe_code)]

use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::allocator::{Block, CachingAllocator};
use crate::error::RuntimeError;
use crate::pod::Pod;

static NEXT_ARENA: AtomicU64 = AtomicU64::new(1);

/// A live borrow of a range.
#[derive(Debug, Clone, Copy)]
struct Borrow {
    start: usize,
    end: usize,
    mutable: bool,
    token: u64,
}

impl Borrow {
    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.start < end && start < self.end
    }
}

#[derive(Default)]
struct Table {
    live: Vec<Borrow>,
    next_token: u64,
}

/// A planned allocation of `len` elements of `T`, borrowed by range (see
/// the module docs). Share it as `Arc<Arena<T>>`.
pub struct Arena<T: Pod> {
    id: u64,
    len: usize,
    /// Start of the elements: the block's heap storage, which never moves
    /// or changes length while the arena lives (the `Vec` in `block` is not
    /// touched again until `drop`).
    base: NonNull<T>,
    block: Option<Block<T>>,
    table: Mutex<Table>,
    allocator: CachingAllocator,
}

// SAFETY: `Arena` owns its elements like a `Vec<T>` does (`T: Pod` is
// `Send + Sync`); shared access to them goes through the borrow table,
// whose mutex orders every borrow and release, so handing `&Arena` to
// other threads is as safe as handing them a `Mutex<Vec<T>>`.
unsafe impl<T: Pod> Send for Arena<T> {}
// SAFETY: see `Send` above.
unsafe impl<T: Pod> Sync for Arena<T> {}

impl<T: Pod> std::fmt::Debug for Arena<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Arena<{}>(id {}, len {})",
            std::any::type_name::<T>(),
            self.id,
            self.len
        )
    }
}

impl<T: Pod> Drop for Arena<T> {
    fn drop(&mut self) {
        if let Some(block) = self.block.take() {
            self.allocator.free(block);
        }
    }
}

/// A shared borrow of a range of an [`Arena`]; released on drop.
pub struct ArenaRef<'a, T: Pod> {
    arena: &'a Arena<T>,
    token: u64,
    slice: &'a [T],
}

/// A mutable borrow of a range of an [`Arena`]; released on drop.
pub struct ArenaMut<'a, T: Pod> {
    arena: &'a Arena<T>,
    token: u64,
    slice: &'a mut [T],
}

impl<T: Pod> Deref for ArenaRef<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.slice
    }
}

impl<T: Pod> Deref for ArenaMut<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.slice
    }
}

impl<T: Pod> DerefMut for ArenaMut<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.slice
    }
}

impl<T: Pod> Drop for ArenaRef<'_, T> {
    fn drop(&mut self) {
        self.arena.release(self.token);
    }
}

impl<T: Pod> Drop for ArenaMut<'_, T> {
    fn drop(&mut self) {
        self.arena.release(self.token);
    }
}

impl<T: Pod> Arena<T> {
    pub(crate) fn new(allocator: &CachingAllocator, len: usize) -> Result<Self, RuntimeError> {
        let mut block = allocator.alloc::<T>(len)?;
        let base = NonNull::new(block.data.as_mut_ptr()).unwrap_or(NonNull::dangling());
        Ok(Arena {
            id: NEXT_ARENA.fetch_add(1, Ordering::Relaxed),
            len,
            base,
            block: Some(block),
            table: Mutex::new(Table::default()),
            allocator: allocator.clone(),
        })
    }

    /// Process-unique id (errors name it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the arena has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ranges borrowed right now.
    pub fn live_borrows(&self) -> usize {
        self.lock().live.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is consistent whenever the lock is free: every update
        // is a single push or remove.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a borrow of `range`, or says what it conflicts with.
    fn register(&self, range: &Range<usize>, mutable: bool) -> Result<u64, RuntimeError> {
        let (start, end) = (range.start, range.end);
        if start > end || end > self.len {
            return Err(RuntimeError::ArenaRange {
                arena: self.id,
                start,
                end,
                len: self.len,
            });
        }
        let mut table = self.lock();
        if let Some(other) = table
            .live
            .iter()
            .find(|b| b.overlaps(start, end) && (mutable || b.mutable))
        {
            return Err(RuntimeError::ArenaConflict {
                arena: self.id,
                start,
                end,
                mutable,
                other_start: other.start,
                other_end: other.end,
                other_mutable: other.mutable,
            });
        }
        let token = table.next_token;
        table.next_token += 1;
        table.live.push(Borrow {
            start,
            end,
            mutable,
            token,
        });
        Ok(token)
    }

    fn release(&self, token: u64) {
        let mut table = self.lock();
        if let Some(i) = table.live.iter().position(|b| b.token == token) {
            table.live.swap_remove(i);
        }
    }

    /// Borrows `range` for reading; refused if it overlaps a live mutable
    /// borrow or lies outside the arena.
    pub fn borrow(&self, range: Range<usize>) -> Result<ArenaRef<'_, T>, RuntimeError> {
        let token = self.register(&range, false)?;
        // SAFETY: `range` lies inside the allocation (checked by
        // `register`), whose `len` elements are initialized and stay put
        // while `self` lives (`base`). The table now holds a shared borrow
        // of `range` until the guard drops, and `register` refuses any
        // mutable borrow overlapping it meanwhile, so no `&mut` aliases
        // this slice for its lifetime.
        let slice =
            unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(range.start), range.len()) };
        Ok(ArenaRef {
            arena: self,
            token,
            slice,
        })
    }

    /// Borrows `range` for writing; refused if it overlaps any live borrow
    /// or lies outside the arena.
    pub fn borrow_mut(&self, range: Range<usize>) -> Result<ArenaMut<'_, T>, RuntimeError> {
        let token = self.register(&range, true)?;
        // SAFETY: as in `borrow`, and `register` refused this borrow if any
        // live borrow overlaps `range` and refuses every overlapping borrow
        // until this guard drops, so this is the only reference to these
        // elements for its lifetime.
        let slice = unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(range.start), range.len())
        };
        Ok(ArenaMut {
            arena: self,
            token,
            slice,
        })
    }

    /// Copies `range` to the host.
    pub fn to_host(&self, range: Range<usize>) -> Result<Vec<T>, RuntimeError> {
        Ok(self.borrow(range)?.to_vec())
    }

    /// Copies `data` into the arena at `offset`.
    pub fn copy_from_host(&self, offset: usize, data: &[T]) -> Result<(), RuntimeError> {
        let end = offset.saturating_add(data.len());
        self.borrow_mut(offset..end)?.copy_from_slice(data);
        Ok(())
    }

    /// Sets every element to `value` (tests poison a planned arena this
    /// way).
    pub fn fill(&self, value: T) -> Result<(), RuntimeError> {
        self.borrow_mut(0..self.len)?.fill(value);
        Ok(())
    }
}
