//! What a running task sees: [`Kernel`], its arguments as typed slices.
//! The stream worker takes every lock of the launch (in buffer-id order,
//! on the stack for up to eight buffers) before calling the task and
//! releases them after; an error or panic in the task becomes the message
//! that poisons the stream.

use std::any::{type_name, Any};
use std::cell::{RefCell, RefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::allocator::Block;
use crate::buffer::{ErasedBuffer, ReadGuard, WriteGuard};
use crate::error::RuntimeError;
use crate::launch::Node;
use crate::pod::Pod;

/// A lock held for one task: shared for inputs, exclusive for outputs.
enum Slot<'t> {
    Read(Box<dyn ReadGuard + 't>),
    Write(RefCell<Box<dyn WriteGuard + 't>>),
}

/// The locked arguments of one task, behind a trait object so that
/// [`Kernel`] needs a single lifetime.
trait Frame {
    fn name(&self) -> &str;
    fn counts(&self) -> (usize, usize);
    fn input_any(&self, index: usize) -> Result<(&dyn Any, &'static str), RuntimeError>;
    fn output_any(&self, index: usize)
        -> Result<(RefMut<'_, dyn Any>, &'static str), RuntimeError>;
}

struct Locked<'k, 't> {
    node: &'k Node,
    table: &'t [Arc<dyn ErasedBuffer>],
    slots: &'k [Option<Slot<'t>>],
}

impl Locked<'_, '_> {
    fn err(&self, kind: &'static str, index: usize, count: usize) -> RuntimeError {
        RuntimeError::ArgIndex {
            task: self.node.name.to_string(),
            kind,
            index,
            count,
        }
    }

    fn aliased(&self, slot: usize) -> RuntimeError {
        RuntimeError::ArgAliased {
            task: self.node.name.to_string(),
            buffer: self.table[self.node.plan.locks[slot].0].id(),
        }
    }

    fn buffer_type(&self, slot: usize) -> &'static str {
        self.table[self.node.plan.locks[slot].0].type_name()
    }
}

impl Frame for Locked<'_, '_> {
    fn name(&self) -> &str {
        &self.node.name
    }

    fn counts(&self) -> (usize, usize) {
        (self.node.plan.inputs.len(), self.node.plan.outputs.len())
    }

    fn input_any(&self, index: usize) -> Result<(&dyn Any, &'static str), RuntimeError> {
        let inputs = &self.node.plan.inputs;
        let slot = *inputs
            .get(index)
            .ok_or_else(|| self.err("input", index, inputs.len()))?;
        match &self.slots[slot] {
            Some(Slot::Read(guard)) => Ok((guard.block(), self.buffer_type(slot))),
            // `Plan::new` rejects a buffer that is both read and written.
            _ => Err(self.aliased(slot)),
        }
    }

    fn output_any(
        &self,
        index: usize,
    ) -> Result<(RefMut<'_, dyn Any>, &'static str), RuntimeError> {
        let outputs = &self.node.plan.outputs;
        let slot = *outputs
            .get(index)
            .ok_or_else(|| self.err("output", index, outputs.len()))?;
        let Some(Slot::Write(cell)) = &self.slots[slot] else {
            return Err(self.aliased(slot));
        };
        let guard = cell.try_borrow_mut().map_err(|_| self.aliased(slot))?;
        Ok((
            RefMut::map(guard, |g| g.block_mut()),
            self.buffer_type(slot),
        ))
    }
}

/// The arguments of a running task: `input(i)` and `output(i)` in the
/// order they were added to the [`Launch`](crate::Launch).
pub struct Kernel<'a> {
    frame: &'a (dyn Frame + 'a),
}

impl Kernel<'_> {
    /// The task's name.
    pub fn name(&self) -> &str {
        self.frame.name()
    }

    /// Number of inputs.
    pub fn num_inputs(&self) -> usize {
        self.frame.counts().0
    }

    /// Number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.frame.counts().1
    }

    fn type_err<T>(&self, kind: &'static str, index: usize, actual: &'static str) -> RuntimeError {
        RuntimeError::ArgType {
            task: self.name().to_owned(),
            kind,
            index,
            expected: type_name::<T>(),
            actual,
        }
    }

    /// Input `index` as a slice of `T`.
    pub fn input<T: Pod>(&self, index: usize) -> Result<&[T], RuntimeError> {
        let (block, actual) = self.frame.input_any(index)?;
        block
            .downcast_ref::<Block<T>>()
            .map(|b| b.data.as_slice())
            .ok_or_else(|| self.type_err::<T>("input", index, actual))
    }

    /// Output `index` as a mutable slice of `T` (it holds the buffer's
    /// previous contents, so in-place updates work). Borrow each output
    /// once at a time.
    pub fn output<T: Pod>(&self, index: usize) -> Result<RefMut<'_, [T]>, RuntimeError> {
        let (block, actual) = self.frame.output_any(index)?;
        RefMut::filter_map(block, |b| {
            b.downcast_mut::<Block<T>>().map(|b| b.data.as_mut_slice())
        })
        .map_err(|_| self.type_err::<T>("output", index, actual))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Launches with at most this many distinct buffers keep their locks on
/// the stack instead of in a heap vector.
const INLINE_SLOTS: usize = 8;

fn lock(table: &[Arc<dyn ErasedBuffer>], (t, write): (usize, bool)) -> Option<Slot<'_>> {
    Some(if write {
        Slot::Write(RefCell::new(table[t].lock_write()))
    } else {
        Slot::Read(table[t].lock_read())
    })
}

/// Runs `node` over `table`: takes its locks, calls the task, releases the
/// locks. An error or panic becomes the message that poisons the stream.
pub(crate) fn execute(node: &Node, table: &[Arc<dyn ErasedBuffer>]) -> Result<(), String> {
    let locks = &node.plan.locks;
    let outcome = if locks.len() <= INLINE_SLOTS {
        let mut slots: [Option<Slot<'_>>; INLINE_SLOTS] = Default::default();
        for (slot, &l) in slots.iter_mut().zip(locks) {
            *slot = lock(table, l);
        }
        call(node, table, &slots[..locks.len()])
    } else {
        let slots: Vec<Option<Slot<'_>>> = locks.iter().map(|&l| lock(table, l)).collect();
        call(node, table, &slots)
    };
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("task '{}' failed: {e}", node.name)),
        Err(payload) => Err(format!(
            "task '{}' panicked: {}",
            node.name,
            panic_message(payload.as_ref())
        )),
    }
}

type Outcome = std::thread::Result<Result<(), crate::error::TaskError>>;

fn call<'t>(
    node: &Node,
    table: &'t [Arc<dyn ErasedBuffer>],
    slots: &[Option<Slot<'t>>],
) -> Outcome {
    let frame = Locked { node, table, slots };
    let kernel = Kernel { frame: &frame };
    catch_unwind(AssertUnwindSafe(|| (node.task)(&kernel)))
}
