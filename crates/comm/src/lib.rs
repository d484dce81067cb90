//! `exodus-comm`: collectives between the processes of a job.
//!
//! - [`bootstrap`]: rank, size and meeting point from the launcher's
//!   environment (`exodus launch`, torchrun-style, `mpirun`, `srun`);
//! - [`communicator`]: the TCP rendezvous that connects every pair of
//!   ranks, and the collectives (ring AllReduce, ReduceScatter and
//!   AllGather, pairwise AllToAll, Broadcast, Barrier, Send/Recv);
//! - [`element`]: the element types they carry (f32, i32);
//! - [`error`]: typed errors that name the operation, algorithm, step and
//!   peer, with a timeout on every operation and an abort that works from
//!   any thread.
//!
//! This is the first part of issue 7: one transport (TCP, also between
//! ranks of one host) and the ring algorithms. Shared memory, the other
//! algorithms and their selector come next.

pub mod bootstrap;
pub mod communicator;
pub mod element;
pub mod error;
mod link;

pub use bootstrap::Bootstrap;
pub use communicator::{AbortHandle, AllReduceAlgo, Communicator, ReduceOp};
pub use element::Element;
pub use error::{At, CommError};
