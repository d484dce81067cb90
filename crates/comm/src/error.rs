//! What can go wrong in a job, said so that the rank that reads it knows
//! which operation, which algorithm, which step and which peer.

use std::time::Duration;

/// Where in a collective an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The operation (`all_reduce`, `barrier`, `send`, ...).
    pub op: &'static str,
    /// The algorithm (`ring`, `direct`, ...).
    pub algo: &'static str,
    /// The step of the algorithm (0-based).
    pub step: usize,
    /// The peer rank it was talking to.
    pub peer: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}), step {}, peer rank {}",
            self.op, self.algo, self.step, self.peer
        )
    }
}

/// Errors of the communicator.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// The launcher's environment or the explicit arguments are wrong.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// The rendezvous did not complete.
    #[error("rendezvous (rank {rank} of {size}): {reason}")]
    Rendezvous {
        /// This rank.
        rank: usize,
        /// The job size.
        size: usize,
        /// What failed.
        reason: String,
    },
    /// A peer did not answer in time (stuck, or too slow).
    #[error("{at}: no answer within {timeout:?}")]
    Timeout {
        /// Where.
        at: At,
        /// The operation's timeout.
        timeout: Duration,
    },
    /// A peer closed its connection (it died, or aborted).
    #[error("{at}: the peer closed the connection ({detail})")]
    PeerGone {
        /// Where.
        at: At,
        /// The I/O error.
        detail: String,
    },
    /// A message that is not the one expected: another sequence number or
    /// length (the ranks disagree on the collective being run).
    #[error(
        "{at}: expected message {want_seq} of {want_len} bytes, got {got_seq} of {got_len} bytes"
    )]
    Mismatch {
        /// Where.
        at: At,
        /// Expected sequence number.
        want_seq: u64,
        /// Expected length.
        want_len: u64,
        /// Received sequence number.
        got_seq: u64,
        /// Received length.
        got_len: u64,
    },
    /// The communicator was aborted (by [`AbortHandle::abort`](crate::AbortHandle::abort)).
    #[error("{at}: the communicator was aborted")]
    Aborted {
        /// Where.
        at: At,
    },
    /// The caller's buffers do not fit the collective.
    #[error("{0}")]
    BadArgument(String),
    /// Shared memory could not be created or mapped.
    #[error("shared memory (rank {rank}): {reason}")]
    SharedMemory {
        /// This rank.
        rank: usize,
        /// What failed.
        reason: String,
    },
}
