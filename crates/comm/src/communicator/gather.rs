//! The data-moving collectives: AllGather, ReduceScatter and AllToAll.

use super::*;

impl Communicator {
    /// `out` (`size * mine.len()` values) gets every rank's `mine`, in rank
    /// order (ring algorithm).
    pub fn all_gather<T: Payload>(&mut self, mine: &[T], out: &mut [T]) -> Result<(), CommError> {
        let (n, m) = (self.size, mine.len());
        if out.len() != n * m {
            return Err(CommError::BadArgument(format!(
                "all_gather: out holds {} values, {n} ranks x {m} need {}",
                out.len(),
                n * m
            )));
        }
        out[self.rank * m..(self.rank + 1) * m].copy_from_slice(mine);
        self.all_gather_in_place(out)
    }

    /// In-place [`all_gather`](Self::all_gather): `buf` holds `size`
    /// blocks, this rank's already in place; every rank ends with all.
    pub fn all_gather_in_place<T: Payload>(&mut self, buf: &mut [T]) -> Result<(), CommError> {
        let _span = self.span("all_gather", std::mem::size_of_val(buf), "ring");
        let n = self.size;
        if !buf.len().is_multiple_of(n) {
            return Err(CommError::BadArgument(format!(
                "all_gather: {} values are not {n} equal blocks",
                buf.len()
            )));
        }
        let m = buf.len() / n;
        if n > 1 && m > 0 {
            self.ring_gather(
                buf,
                &|c| c * m..(c + 1) * m,
                self.rank,
                "all_gather",
                0,
                &self.everyone(),
            )?;
        }
        Ok(())
    }

    /// `out` (`input.len() / size` values) gets this rank's block of the
    /// element-wise reduction of every rank's `input` (ring algorithm;
    /// `input.len()` must be a multiple of the size).
    pub fn reduce_scatter<T: Element>(
        &mut self,
        input: &[T],
        out: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        let _span = self.span("reduce_scatter", input.len() * T::BYTES, "ring");
        let n = self.size;
        let m = out.len();
        if input.len() != n * m {
            return Err(CommError::BadArgument(format!(
                "reduce_scatter: {} input values for {n} ranks x {m}",
                input.len()
            )));
        }
        let mut buf = input.to_vec();
        if n > 1 && m > 0 {
            // The ring leaves chunk `rank + 1` here; shifting the chunks by
            // one makes it this rank's own block.
            let chunk = |c: usize| {
                let b = (c + n - 1) % n;
                b * m..(b + 1) * m
            };
            self.ring_reduce_scatter(&mut buf, &chunk, op, "reduce_scatter", &self.everyone())?;
        }
        out.copy_from_slice(&buf[self.rank * m..(self.rank + 1) * m]);
        if op == ReduceOp::Avg {
            out.iter_mut().for_each(|v| *v = T::mean(*v, n));
        }
        Ok(())
    }

    /// Block `j` of this rank's `input` goes to rank `j`; block `i` of
    /// `out` comes from rank `i` (pairwise exchange: in step `s` each rank
    /// sends to `rank + s` and receives from `rank - s`).
    pub fn all_to_all<T: Payload>(&mut self, input: &[T], out: &mut [T]) -> Result<(), CommError> {
        let _span = self.span("all_to_all", std::mem::size_of_val(input), "pairwise");
        let n = self.size;
        if input.len() != out.len() || !input.len().is_multiple_of(n) {
            return Err(CommError::BadArgument(format!(
                "all_to_all: {} input and {} output values for {n} ranks",
                input.len(),
                out.len()
            )));
        }
        let m = input.len() / n;
        let me = self.rank;
        out[me * m..(me + 1) * m].copy_from_slice(&input[me * m..(me + 1) * m]);
        for step in 1..n {
            let (to, from) = ((me + step) % n, (me + n - step) % n);
            let at = At {
                op: "all_to_all",
                algo: "pairwise",
                step,
                peer: to,
            };
            let block = bytemuck::cast_slice(&input[to * m..(to + 1) * m]);
            self.exchange(
                at,
                to,
                block,
                from,
                Sink::copy(&mut out[from * m..(from + 1) * m]),
            )?;
        }
        Ok(())
    }
}
