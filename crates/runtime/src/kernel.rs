//! What a running task sees: [`Kernel`], its arguments as typed slices.
//! For an eager launch the stream worker takes every lock of the launch (in
//! buffer-id order, on the stack for up to eight buffers) before calling
//! the task and releases them after ([`execute`]). A graph replay takes the
//! locks of a whole run of launches once ([`lock_all`]) and calls each task
//! against them ([`execute_held`]); a buffer one launch writes and a later
//! one reads is then held for writing and lent to the reader as a shared
//! borrow. An error or panic in the task becomes the message that poisons
//! the stream.

use std::any::{type_name, Any};
use std::cell::{Ref, RefCell, RefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use exodus_trace::{enabled, now_ns, record, Span, Track};

use crate::allocator::Block;
use crate::buffer::{ErasedBuffer, ReadGuard, WriteGuard};
use crate::error::RuntimeError;
use crate::launch::Node;
use crate::pod::Pod;

/// A held lock: shared for buffers only read, exclusive for buffers
/// written (a written buffer can still be lent to a reading task).
pub(crate) enum Slot<'t> {
    Read(RefCell<Box<dyn ReadGuard + 't>>),
    Write(RefCell<Box<dyn WriteGuard + 't>>),
}

/// The locked arguments of one task, behind a trait object so that
/// [`Kernel`] needs a single lifetime.
trait Frame {
    fn name(&self) -> &str;
    fn counts(&self) -> (usize, usize);
    fn input_any(&self, index: usize) -> Result<(Ref<'_, dyn Any>, &'static str), RuntimeError>;
    fn output_any(&self, index: usize)
        -> Result<(RefMut<'_, dyn Any>, &'static str), RuntimeError>;
}

struct Locked<'k, 't> {
    node: &'k Node,
    table: &'t [Arc<dyn ErasedBuffer>],
    slots: &'k [Option<Slot<'t>>],
    /// Where lock `i` of the node's plan is in `slots` (`None`: at `i`).
    map: Option<&'k [usize]>,
}

impl<'t> Locked<'_, 't> {
    fn slot(&self, plan_slot: usize) -> Option<&Slot<'t>> {
        let at = self.map.map_or(plan_slot, |m| m[plan_slot]);
        self.slots.get(at).and_then(Option::as_ref)
    }

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

    fn input_any(&self, index: usize) -> Result<(Ref<'_, dyn Any>, &'static str), RuntimeError> {
        let inputs = &self.node.plan.inputs;
        let slot = *inputs
            .get(index)
            .ok_or_else(|| self.err("input", index, inputs.len()))?;
        let block = match self.slot(slot) {
            Some(Slot::Read(cell)) => {
                let guard = cell.try_borrow().map_err(|_| self.aliased(slot))?;
                Ref::map(guard, |g| g.block())
            }
            // Held for writing by a graph run in which another task writes
            // it; `Plan::new` rejects a task that both reads and writes a
            // buffer, so this task holds no mutable borrow of it.
            Some(Slot::Write(cell)) => {
                let guard = cell.try_borrow().map_err(|_| self.aliased(slot))?;
                Ref::map(guard, |g| g.block())
            }
            None => return Err(self.aliased(slot)),
        };
        Ok((block, self.buffer_type(slot)))
    }

    fn output_any(
        &self,
        index: usize,
    ) -> Result<(RefMut<'_, dyn Any>, &'static str), RuntimeError> {
        let outputs = &self.node.plan.outputs;
        let slot = *outputs
            .get(index)
            .ok_or_else(|| self.err("output", index, outputs.len()))?;
        let Some(Slot::Write(cell)) = self.slot(slot) else {
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

    /// Input `index` as a shared borrow of a slice of `T`.
    pub fn input<T: Pod>(&self, index: usize) -> Result<Ref<'_, [T]>, RuntimeError> {
        let (block, actual) = self.frame.input_any(index)?;
        Ref::filter_map(block, |b| {
            b.downcast_ref::<Block<T>>().map(|b| b.data.as_slice())
        })
        .map_err(|_| self.type_err::<T>("input", index, actual))
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
    Some(lock_one(table, (t, write)))
}

fn lock_one(table: &[Arc<dyn ErasedBuffer>], (t, write): (usize, bool)) -> Slot<'_> {
    if write {
        Slot::Write(RefCell::new(table[t].lock_write()))
    } else {
        Slot::Read(RefCell::new(table[t].lock_read()))
    }
}

/// The locks of a graph run, held until dropped.
pub(crate) struct Held<'t> {
    slots: Vec<Option<Slot<'t>>>,
}

/// Takes `locks` (table index, write), which must be sorted by buffer id
/// with each buffer once, and holds them.
pub(crate) fn lock_all<'t>(
    table: &'t [Arc<dyn ErasedBuffer>],
    locks: &[(usize, bool)],
) -> Held<'t> {
    Held {
        slots: locks.iter().map(|&l| Some(lock_one(table, l))).collect(),
    }
}

/// Runs `node` against locks already `held`; `map[i]` is where lock `i`
/// of the node's plan is in `held`.
pub(crate) fn execute_held<'t>(
    node: &Node,
    table: &'t [Arc<dyn ErasedBuffer>],
    held: &Held<'t>,
    map: &[usize],
) -> Result<(), String> {
    let frame = Locked {
        node,
        table,
        slots: &held.slots,
        map: Some(map),
    };
    report(node, call(node, &frame))
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
        let frame = Locked {
            node,
            table,
            slots: &slots[..locks.len()],
            map: None,
        };
        call(node, &frame)
    } else {
        let slots: Vec<Option<Slot<'_>>> = locks.iter().map(|&l| lock(table, l)).collect();
        let frame = Locked {
            node,
            table,
            slots: &slots,
            map: None,
        };
        call(node, &frame)
    };
    report(node, outcome)
}

/// Runs `node` through `run` (which takes or already holds its locks) and,
/// when tracing is on, records its span on `track`.
pub(crate) fn traced(
    node: &Node,
    track: Track,
    run: impl FnOnce(&Node) -> Result<(), String>,
) -> Result<(), String> {
    let start = enabled().then(now_ns);
    let outcome = run(node);
    if let Some(start) = start {
        record(Span::new(
            node.name.clone(),
            node.category,
            track,
            start,
            now_ns() - start,
        ));
    }
    outcome
}

/// The stream's message for a task's error or panic.
fn report(node: &Node, outcome: Outcome) -> Result<(), String> {
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

fn call(node: &Node, frame: &Locked<'_, '_>) -> Outcome {
    let kernel = Kernel { frame };
    catch_unwind(AssertUnwindSafe(|| (node.task)(&kernel)))
}
