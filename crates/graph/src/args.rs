//! Where a launch finds its operands. A value lives either in a runtime
//! buffer that the launch names (graph inputs, weights, constants, state,
//! every value in eager mode, u32 intermediates) or in a range of the
//! shape bucket's arena (f32 intermediates in graph mode, placed by the
//! memory plan). A kernel asks [`Args`] for operand `i` and gets a slice
//! either way; arena ranges are borrowed for the kernel's duration and
//! checked against every live borrow by the runtime.
//!
//! An output placed on the very range of one of its inputs (the plan's
//! in-place reuse) is [`aliased`](Args::aliased): the kernel then reads
//! that input from its output and must not borrow the input separately.

use std::cell::{Ref, RefMut};
use std::ops::{Deref, DerefMut, Range};
use std::sync::Arc;

use exodus_runtime::{Arena, ArenaMut, ArenaRef, Kernel, Pod, TaskError};

/// Where one operand lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// The launch's input or output number `index` (by kind), cut to
    /// `len` elements (`usize::MAX`: the whole buffer).
    Arg {
        /// Index among the launch's inputs (for an input) or outputs.
        index: usize,
        /// Elements of the value.
        len: usize,
    },
    /// Elements `range` of the bucket's arena.
    Arena(Range<usize>),
}

/// The places of a node's operands.
#[derive(Debug, Clone, Default)]
pub(crate) struct Args {
    /// Per node input.
    pub inputs: Vec<Place>,
    /// Per node output.
    pub outputs: Vec<Place>,
    /// The arena, when any operand lives there.
    pub arena: Option<Arc<Arena<f32>>>,
}

/// A borrowed f32 input.
pub(crate) enum In<'a> {
    Buf(Ref<'a, [f32]>),
    Arena(ArenaRef<'a, f32>),
}

/// A borrowed f32 output.
pub(crate) enum Out<'a> {
    Buf(RefMut<'a, [f32]>),
    Arena(ArenaMut<'a, f32>),
}

impl Deref for In<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            In::Buf(r) => r,
            In::Arena(r) => r,
        }
    }
}

impl Deref for Out<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Out::Buf(r) => r,
            Out::Arena(r) => r,
        }
    }
}

impl DerefMut for Out<'_> {
    fn deref_mut(&mut self) -> &mut [f32] {
        match self {
            Out::Buf(r) => r,
            Out::Arena(r) => r,
        }
    }
}

fn cut<T>(whole: &[T], len: usize, what: &str) -> Result<usize, TaskError> {
    if len != usize::MAX && whole.len() < len {
        return Err(format!("{what}: buffer of {} for {len} values", whole.len()).into());
    }
    Ok(len.min(whole.len()))
}

impl Args {
    /// Whether output `out` was placed on input `input`'s range (in
    /// place).
    pub(crate) fn aliased(&self, input: usize, out: usize) -> bool {
        matches!(
            (self.inputs.get(input), self.outputs.get(out)),
            (Some(Place::Arena(a)), Some(Place::Arena(b))) if a.start == b.start
        )
    }

    fn arena(&self) -> Result<&Arena<f32>, TaskError> {
        self.arena
            .as_deref()
            .ok_or_else(|| "an operand is placed in an arena the launch does not have".into())
    }

    /// Input `i` as f32.
    pub(crate) fn f32_in<'a>(&'a self, k: &'a Kernel<'_>, i: usize) -> Result<In<'a>, TaskError> {
        match self.inputs.get(i) {
            Some(Place::Arg { index, len }) => {
                let whole = k.input::<f32>(*index)?;
                let n = cut(&whole, *len, &format!("input {i}"))?;
                Ok(In::Buf(Ref::map(whole, |s| &s[..n])))
            }
            Some(Place::Arena(r)) => Ok(In::Arena(self.arena()?.borrow(r.clone())?)),
            None => Err(format!("no input {i}").into()),
        }
    }

    /// Input `i` of another element type (never in the arena).
    pub(crate) fn in_of<'a, T: Pod>(
        &'a self,
        k: &'a Kernel<'_>,
        i: usize,
    ) -> Result<Ref<'a, [T]>, TaskError> {
        match self.inputs.get(i) {
            Some(Place::Arg { index, len }) => {
                let whole = k.input::<T>(*index)?;
                let n = cut(&whole, *len, &format!("input {i}"))?;
                Ok(Ref::map(whole, |s| &s[..n]))
            }
            _ => Err(format!("input {i} is not a launch buffer").into()),
        }
    }

    /// Output `i` as f32.
    pub(crate) fn f32_out<'a>(&'a self, k: &'a Kernel<'_>, i: usize) -> Result<Out<'a>, TaskError> {
        match self.outputs.get(i) {
            Some(Place::Arg { index, len }) => {
                let whole = k.output::<f32>(*index)?;
                let n = cut(&whole, *len, &format!("output {i}"))?;
                Ok(Out::Buf(RefMut::map(whole, |s| &mut s[..n])))
            }
            Some(Place::Arena(r)) => Ok(Out::Arena(self.arena()?.borrow_mut(r.clone())?)),
            None => Err(format!("no output {i}").into()),
        }
    }

    /// Output `i` of another element type (never in the arena).
    pub(crate) fn out_of<'a, T: Pod>(
        &'a self,
        k: &'a Kernel<'_>,
        i: usize,
    ) -> Result<RefMut<'a, [T]>, TaskError> {
        match self.outputs.get(i) {
            Some(Place::Arg { index, len }) => {
                let whole = k.output::<T>(*index)?;
                let n = cut(&whole, *len, &format!("output {i}"))?;
                Ok(RefMut::map(whole, |s| &mut s[..n]))
            }
            _ => Err(format!("output {i} is not a launch buffer").into()),
        }
    }
}
