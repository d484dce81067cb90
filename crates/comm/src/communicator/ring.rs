//! The two halves of a ring, shared by AllReduce, ReduceScatter and
//! AllGather: in each step a rank sends a chunk to its right neighbour
//! while it receives one from its left, reducing it in place (first half)
//! or storing it (second half). A ring runs over `members` (global ranks
//! in ring order: every rank, or the leaders of the hosts), and chunks are
//! numbered by position in it.

use super::*;

impl Communicator {
    /// The reduce-scatter half of a ring: after `n - 1` steps this rank
    /// holds the whole reduction of chunk `position + 1`.
    pub(super) fn ring_reduce_scatter<T: Element>(
        &mut self,
        buf: &mut [T],
        chunk: &dyn Fn(usize) -> Range<usize>,
        op: ReduceOp,
        name: &'static str,
        members: &[usize],
    ) -> Result<(), CommError> {
        let (n, me) = self.position_in(members)?;
        let (left, right) = (members[(me + n - 1) % n], members[(me + 1) % n]);
        for step in 0..n - 1 {
            let send_c = (me + n - step) % n;
            let recv_c = (me + 2 * n - step - 1) % n;
            let at = At {
                op: name,
                algo: "ring",
                step,
                peer: right,
            };
            // The incoming partial reduction first, then this rank's
            // value: every rank reduces a chunk in the same order.
            let (out, acc) = split_ranges(buf, chunk(send_c), chunk(recv_c));
            self.exchange(
                at,
                right,
                bytemuck::cast_slice(out),
                left,
                Sink::reduce(acc, op),
            )?;
        }
        Ok(())
    }

    /// The all-gather half of a ring: this rank holds chunk `have`; after
    /// `n - 1` steps it holds all.
    pub(super) fn ring_gather<T: Payload>(
        &mut self,
        buf: &mut [T],
        chunk: &dyn Fn(usize) -> Range<usize>,
        have: usize,
        op: &'static str,
        step0: usize,
        members: &[usize],
    ) -> Result<(), CommError> {
        let (n, me) = self.position_in(members)?;
        let (left, right) = (members[(me + n - 1) % n], members[(me + 1) % n]);
        for step in 0..n - 1 {
            let send_c = (have + n - step) % n;
            let recv_c = (have + 2 * n - step - 1) % n;
            let at = At {
                op,
                algo: "ring",
                step: step0 + step,
                peer: right,
            };
            let (out, into) = split_ranges(buf, chunk(send_c), chunk(recv_c));
            self.exchange(at, right, bytemuck::cast_slice(out), left, Sink::copy(into))?;
        }
        Ok(())
    }

    /// The size of `members` and this rank's position in it.
    pub(super) fn position_in(&self, members: &[usize]) -> Result<(usize, usize), CommError> {
        let me = members
            .iter()
            .position(|&r| r == self.rank)
            .ok_or_else(|| {
                CommError::BadArgument(format!("rank {} is not in the ring {members:?}", self.rank))
            })?;
        Ok((members.len(), me))
    }
}
