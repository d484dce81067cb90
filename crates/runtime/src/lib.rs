//! `exodus-runtime`: where and when work runs — devices, streams, events,
//! a caching allocator and captured launch graphs. It knows nothing of
//! ops: a launch is a named closure over the buffers it reads and writes.
//!
//! - [`Device`] (implemented by [`CpuDevice`]) hands out typed
//!   [`DeviceBuffer`]s from a [`CachingAllocator`] (size classes, reuse,
//!   `empty_cache`, [`MemoryStats`], optional limit with a typed
//!   out-of-memory error) and creates [`Stream`]s and [`Event`]s.
//! - A [`Stream`] is an in-order queue run by its own worker thread:
//!   [`Launch`]es, copies, fills, uploads, host callbacks, event records
//!   and waits. Events order streams without blocking the host.
//! - Capture: `begin_capture` ... `end_capture` gives a [`Graph`];
//!   [`Graph::instantiate`] gives a [`GraphExec`] that `Stream::replay`
//!   submits as one queue entry. Other streams join a capture through
//!   events (fork/join), making the graph a DAG whose branches replay
//!   concurrently on the graph's lane threads.
//! - Misuse returns a [`RuntimeError`]; a failing or panicking task
//!   poisons only its stream. Every launch, copy and event wait records an
//!   `exodus-trace` span on the stream's track when tracing is on.
//! - An [`Arena`] is one planned allocation borrowed by range, so that
//!   disjoint ranges can be held by concurrent launches; every borrow is
//!   checked against the live ones (its module is the runtime's only
//!   `unsafe` code).
#![deny(unsafe_code)]

mod allocator;
mod arena;
mod buffer;
mod device;
mod error;
mod event;
mod graph;
mod kernel;
mod launch;
mod pod;
mod stream;

pub use allocator::{size_class, CachingAllocator, MemoryStats, MIN_CLASS_BYTES};
pub use arena::{Arena, ArenaMut, ArenaRef};
pub use buffer::DeviceBuffer;
pub use device::{CpuDevice, Device};
pub use error::{RuntimeError, TaskError};
pub use event::Event;
pub use graph::{Graph, GraphExec};
pub use kernel::Kernel;
pub use launch::{Launch, Task};
pub use pod::Pod;
pub use stream::{Stream, StreamStats};
