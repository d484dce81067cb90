//! Shared buffers: memory that every rank of a host maps, so that a
//! collective among them reads and writes the others' data in place
//! instead of copying it through links.
//!
//! [`Communicator::shared_buffer`](crate::Communicator::shared_buffer)
//! (a collective) gives each rank a buffer of `len` values that every
//! other rank of its host maps too. A caller that computes straight into
//! it (an engine's activations) then runs
//! [`all_reduce_shared`](crate::Communicator::all_reduce_shared) with no
//! copy at all: rank `r` owns chunk `r` of the buffer, and for each piece
//! of it folds the values of every rank's buffer in rank order and writes
//! the result into every rank's buffer. Two barriers bound the pass (every
//! input is written before it, every result after it). Each rank reads and
//! writes the buffer's size once, where a ring over links copies every
//! byte into a ring and out again at each step.
//!
//! The fold runs in rank order, `((b0 . b1) . b2) ...`, so every rank gets
//! the same bits, whatever the number of pieces.
//!
//! # The protocol, and safety
//!
//! A rank's buffer is written by other ranks only inside
//! `all_reduce_shared`, between its two barriers, and only in the chunk
//! each of them owns. Outside it the buffer belongs to its rank alone,
//! which is why [`SharedBuffer::as_mut_slice`] can hand out a plain slice.
//! The values are plain numbers ([`Element`] is `Pod`): a peer that broke
//! the protocol could garble them, never this process's memory safety.

use std::marker::PhantomData;

use crate::element::Element;
use crate::shm::Segment;

/// A buffer of `len` values that every rank of this host maps (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct SharedBuffer<T: Element> {
    pub(crate) len: usize,
    pub(crate) rank: usize,
    /// Every rank's segment, this rank's own included; `None` for a rank
    /// that does not share this host (or whose segment could not be
    /// mapped).
    pub(crate) segments: Vec<Option<Segment>>,
    /// Whether every rank maps every other's buffer (agreed by all ranks):
    /// otherwise the collectives on it go over the links.
    pub(crate) shared_by_all: bool,
    pub(crate) values: PhantomData<T>,
}

impl<T: Element> SharedBuffer<T> {
    /// Values in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every rank of the job maps every other's buffer, so that
    /// [`all_reduce_shared`](crate::Communicator::all_reduce_shared) runs
    /// in place (else it goes over the links, with the same result).
    pub fn is_shared_by_all(&self) -> bool {
        self.shared_by_all
    }

    /// The first value of rank `r`'s buffer, if this rank maps it.
    pub(crate) fn ptr(&self, r: usize) -> Option<*mut T> {
        let (ptr, bytes) = self.segments.get(r)?.as_ref()?.payload();
        debug_assert!(bytes >= self.len * T::BYTES);
        Some(ptr.cast::<T>())
    }

    fn own(&self) -> *mut T {
        self.ptr(self.rank)
            .expect("a shared buffer always maps its own rank's segment")
    }

    /// This rank's values.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the payload holds at least `len` values (sized at
        // creation), starts on a page (aligned for any element), lives as
        // long as `self`; between collectives no other rank writes it (see
        // the module docs), and `T` is plain data, valid for any bytes.
        unsafe { std::slice::from_raw_parts(self.own(), self.len) }
    }

    /// This rank's values, to write.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` makes it the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.own(), self.len) }
    }
}
