//! `exodus-comm`: collectives between the processes of a job.
//!
//! - [`bootstrap`]: rank, size and meeting point from the launcher's
//!   environment (`exodus launch`, torchrun-style, `mpirun`, `srun`);
//! - `rendezvous`: the ranks find each other over TCP, connect every pair,
//!   and move the pairs of one host onto shared memory;
//! - [`communicator`]: the collectives (AllReduce by Ring, Mesh,
//!   recursive doubling or Rabenseifner's halving-doubling,
//!   ReduceScatter, AllGather, pairwise AllToAll, Broadcast, Barrier,
//!   Send/Recv);
//! - [`cost`]: the alpha-beta model, measured at startup or read from a
//!   calibration file, that picks the AllReduce algorithm;
//! - [`shared`]: buffers every rank of a host maps, and the in-place
//!   AllReduce over them (no copy at all);
//! - `link`, `tcp`, `shm`: a link to one peer over TCP or shared memory,
//!   framed and checked, and the send / receive / exchange moves the
//!   collectives are made of;
//! - [`element`]: the element types they carry (f32, f64, f16, bf16, i32) and
//!   [`ReduceOp`];
//! - [`error`]: typed errors that name the operation, algorithm, step and
//!   peer, with a timeout on every operation and an abort that works from
//!   any thread.

pub mod bootstrap;
pub mod communicator;
pub mod cost;
pub mod element;
pub mod error;
mod link;
mod reduce;
mod rendezvous;
pub mod shared;
mod shm;
mod tcp;

pub use bootstrap::Bootstrap;
pub use communicator::{AbortHandle, AllReduceAlgo, BroadcastAlgo, Communicator};
pub use cost::CostModel;
pub use element::{Element, Payload};
pub use error::{At, CommError};
pub use reduce::ReduceOp;
pub use shared::SharedBuffer;
