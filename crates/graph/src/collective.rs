//! What a graph's [`Op::AllReduce`](crate::Op::AllReduce) and
//! [`Op::AllGather`](crate::Op::AllGather) nodes call: the
//! collective of the job a sharded model runs in (tensor parallelism). The
//! graph crate knows no transport; whoever runs the session (the engine,
//! over exodus-comm) gives it one with
//! [`Session::set_collective`](crate::Session::set_collective). Without
//! one an AllReduce is the identity: a job of one rank.

/// A job's AllReduce, as the graph needs it.
pub trait Collective: Send + Sync {
    /// Replaces `values` with their element-wise sum over every rank of
    /// the job (every rank calls it with as many values, in the same order
    /// of calls).
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), String>;
}
