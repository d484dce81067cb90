//! The two halves of a ring, shared by AllReduce, ReduceScatter and
//! AllGather: in each step a rank sends a chunk to its right neighbour
//! while it receives one from its left, reducing it in place (first half)
//! or storing it (second half).

use super::*;

impl Communicator {
    /// The reduce-scatter half of a ring: after `n - 1` steps this rank
    /// holds the whole reduction of chunk `rank + 1`.
    pub(super) fn ring_reduce_scatter<T: Element>(
        &mut self,
        buf: &mut [T],
        chunk: &dyn Fn(usize) -> Range<usize>,
        op: ReduceOp,
        name: &'static str,
    ) -> Result<(), CommError> {
        let n = self.size;
        let (left, right) = ((self.rank + n - 1) % n, (self.rank + 1) % n);
        for step in 0..n - 1 {
            let send_c = (self.rank + n - step) % n;
            let recv_c = (self.rank + 2 * n - step - 1) % n;
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
    ) -> Result<(), CommError> {
        let n = self.size;
        let (left, right) = ((self.rank + n - 1) % n, (self.rank + 1) % n);
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
}
