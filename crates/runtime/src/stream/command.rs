//! What a stream's queue holds: one entry per submission.

use std::sync::Arc;

use crate::buffer::ErasedBuffer;
use crate::event::EventInner;
use crate::graph::ExecInner;
use crate::launch::Node;

/// One queue entry.
pub(crate) enum Command {
    /// Run one task (launch, copy, fill, upload, host callback).
    Run {
        node: Node,
        table: Vec<Arc<dyn ErasedBuffer>>,
    },
    /// Run every node of an instantiated graph, in order.
    Replay {
        exec: Arc<ExecInner>,
        table: Vec<Arc<dyn ErasedBuffer>>,
    },
    /// Mark record `generation` of the event as reached.
    Record {
        event: Arc<EventInner>,
        generation: u64,
    },
    /// Block this stream until record `generation` of the event is reached.
    Wait {
        event: Arc<EventInner>,
        generation: u64,
    },
}
