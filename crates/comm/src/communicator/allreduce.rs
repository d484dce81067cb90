//! AllReduce: the algorithms (Ring, Mesh, recursive doubling,
//! Rabenseifner's halving-doubling) and the choice among them.

use super::*;

/// The AllReduce algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduceAlgo {
    /// Reduce-scatter then all-gather around the ring: `2 (n - 1)` steps,
    /// each rank sends `2 (n - 1) / n` of the buffer (bandwidth-optimal);
    /// run slice by slice of 256 KiB on large buffers.
    Ring,
    /// Everyone sends everything to everyone, once: one step, `n - 1`
    /// buffers per rank (latency-optimal for small messages and few ranks).
    Mesh,
    /// Recursive doubling: `log2 n` steps of whole-buffer exchanges (for
    /// tiny messages on many ranks).
    Doubling,
    /// Rabenseifner's: a reduce-scatter by recursive halving, then an
    /// all-gather by recursive doubling: `2 log2 n` steps and the
    /// bandwidth-optimal volume (for large messages on many ranks).
    Halving,
    /// For jobs over several hosts: reduce within each host to its
    /// leader, Ring among the leaders, broadcast within each host (see
    /// `hierarchical.rs`).
    Hierarchical,
}

impl AllReduceAlgo {
    /// The algorithms that treat every rank alike, in the order the cost
    /// model prefers on a tie.
    pub const FLAT: [AllReduceAlgo; 4] = [
        AllReduceAlgo::Mesh,
        AllReduceAlgo::Doubling,
        AllReduceAlgo::Ring,
        AllReduceAlgo::Halving,
    ];

    /// Every algorithm.
    pub const ALL: [AllReduceAlgo; 5] = [
        AllReduceAlgo::Mesh,
        AllReduceAlgo::Doubling,
        AllReduceAlgo::Ring,
        AllReduceAlgo::Halving,
        AllReduceAlgo::Hierarchical,
    ];

    /// `ring`, `mesh`, `doubling` or `halving`.
    pub fn parse(name: &str) -> Option<AllReduceAlgo> {
        AllReduceAlgo::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The name in messages and in `EXODUS_COMM_ALGO`.
    pub fn name(self) -> &'static str {
        match self {
            AllReduceAlgo::Ring => "ring",
            AllReduceAlgo::Mesh => "mesh",
            AllReduceAlgo::Doubling => "doubling",
            AllReduceAlgo::Halving => "halving",
            AllReduceAlgo::Hierarchical => "hierarchical",
        }
    }

    /// The algorithm `EXODUS_COMM_ALGO` forces, if any
    /// (`EXODUS_COMM_ALGO=allreduce:ring`, among other collectives'
    /// choices separated by commas).
    pub fn forced() -> Option<AllReduceAlgo> {
        forced_algo("allreduce").and_then(|name| AllReduceAlgo::parse(&name))
    }
}

/// Bytes of the buffer one pass of the Ring AllReduce covers. A whole
/// pass (reduce-scatter, then all-gather) over one slice keeps the chunk a
/// rank has just reduced in its cache for the all-gather's send. Measured
/// on 2 ranks against one pass over the whole buffer: 256 KiB took 8.2 ms
/// to 6.5 ms at 32 MiB and 360 us to 300 us at 2 MiB (in place); 64 KiB
/// and 1-2 MiB slices were slower (bench/results/comm-ring-slice.txt).
const RING_SLICE_BYTES: usize = 256 << 10;

/// The most scratch bytes the Mesh AllReduce keeps between calls (the
/// cost model picks it for small messages only).
const MESH_SCRATCH_KEPT: usize = 1 << 20;

impl Communicator {
    /// Every rank gets the element-wise reduction of every rank's `buf`
    /// (`buf` must be as long on every rank), by the algorithm
    /// [`select_all_reduce`](Self::select_all_reduce) picks for this size.
    pub fn all_reduce<T: Element>(&mut self, buf: &mut [T], op: ReduceOp) -> Result<(), CommError> {
        let algo = self.select_all_reduce(buf.len() * T::BYTES);
        self.all_reduce_with(buf, op, algo)
    }

    /// The AllReduce algorithm for `bytes` per rank:
    /// `EXODUS_COMM_ALGO=allreduce:NAME` if set, else the flat algorithm
    /// the cost model (see [`CostModel`]) predicts fastest, except that a
    /// job over several hosts, some with more than one rank, goes
    /// Hierarchical where the model picks a bandwidth algorithm (Ring or
    /// Halving). Every rank holds the same model and topology, so every
    /// rank picks the same.
    pub fn select_all_reduce(&self, bytes: usize) -> AllReduceAlgo {
        if let Some(algo) = self.forced_all_reduce {
            return algo;
        }
        let flat = self.cost.best_all_reduce(bytes, self.size);
        match flat {
            AllReduceAlgo::Ring | AllReduceAlgo::Halving if self.layered => {
                AllReduceAlgo::Hierarchical
            }
            other => other,
        }
    }

    /// Out-of-place [`all_reduce`](Self::all_reduce): `out` gets the
    /// reduction of every rank's `input` (same lengths).
    pub fn all_reduce_into<T: Element>(
        &mut self,
        input: &[T],
        out: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        if input.len() != out.len() {
            return Err(CommError::BadArgument(format!(
                "all_reduce: {} input and {} output values",
                input.len(),
                out.len()
            )));
        }
        out.copy_from_slice(input);
        self.all_reduce(out, op)
    }

    /// [`all_reduce`](Self::all_reduce) by a given algorithm. In
    /// deterministic mode (see
    /// [`set_deterministic`](Self::set_deterministic)) every algorithm
    /// gives the rank-order fold, bit for bit.
    pub fn all_reduce_with<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        algo: AllReduceAlgo,
    ) -> Result<(), CommError> {
        let _span = self.span("all_reduce", buf.len() * T::BYTES, algo.name());
        let n = self.size;
        if n > 1 && !buf.is_empty() && self.deterministic {
            match algo {
                // Already the rank-order fold.
                AllReduceAlgo::Mesh | AllReduceAlgo::Doubling => self.mesh_all_reduce(buf, op)?,
                AllReduceAlgo::Ring | AllReduceAlgo::Halving | AllReduceAlgo::Hierarchical => {
                    self.ordered_all_reduce(buf, op, algo.name())?
                }
            }
        } else if n > 1 && !buf.is_empty() {
            match algo {
                AllReduceAlgo::Ring => {
                    // Slice by slice, so that a chunk this rank reduces is
                    // still in its cache when the gather half sends it on.
                    let slice = (RING_SLICE_BYTES / T::BYTES).max(n);
                    for part in buf.chunks_mut(slice) {
                        let len = part.len();
                        let chunk = |c: usize| (c * len / n)..((c + 1) * len / n);
                        let everyone = self.everyone();
                        self.ring_reduce_scatter(part, &chunk, op, "all_reduce", &everyone)?;
                        self.ring_gather(
                            part,
                            &chunk,
                            (self.rank + 1) % n,
                            "all_reduce",
                            n - 1,
                            &everyone,
                        )?;
                    }
                }
                AllReduceAlgo::Mesh => self.mesh_all_reduce(buf, op)?,
                AllReduceAlgo::Doubling => self.doubling_all_reduce(buf, op)?,
                AllReduceAlgo::Halving => self.halving_all_reduce(buf, op)?,
                AllReduceAlgo::Hierarchical => self.hierarchical_all_reduce(buf, op)?,
            }
        }
        if op == ReduceOp::Avg {
            buf.iter_mut().for_each(|v| *v = T::mean(*v, n));
        }
        Ok(())
    }

    /// Full mesh in one step: every rank sends its buffer to every other
    /// and reduces all of them in rank order (so the result does not depend
    /// on who sent first). For small messages: `n - 1` buffers in flight.
    fn mesh_all_reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        // Every rank's buffer, this one's included, side by side in the
        // kept scratch (taken out of `self` while the exchanges borrow it).
        let units = (self.size * buf.len() * T::BYTES).div_ceil(16);
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.len() < units {
            scratch.resize(units, 0);
        }
        let all = &mut bytemuck::cast_slice_mut::<u128, T>(&mut scratch)[..self.size * buf.len()];
        let result = self.mesh_exchange_and_fold(buf, op, all);
        // Kept for the next call unless a forced Mesh on a large buffer
        // grew it.
        if scratch.len() * 16 <= MESH_SCRATCH_KEPT {
            self.scratch = scratch;
        }
        result
    }

    /// [`mesh_all_reduce`](Self::mesh_all_reduce) with `all` (`n` buffers'
    /// room) to receive into.
    fn mesh_exchange_and_fold<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        all: &mut [T],
    ) -> Result<(), CommError> {
        let (n, me, len) = (self.size, self.rank, buf.len());
        all[me * len..(me + 1) * len].copy_from_slice(buf);
        // In round s rank r sends to r + s while it receives from r - s:
        // each send meets its receive in the same round.
        for s in 1..n {
            let (to, from) = ((me + s) % n, (me + n - s) % n);
            let at = At {
                op: "all_reduce",
                algo: "mesh",
                step: 0,
                peer: to,
            };
            let out = bytemuck::cast_slice(&*buf);
            let into = &mut all[from * len..(from + 1) * len];
            self.exchange(at, to, out, from, Sink::copy(into))?;
        }
        // acc = op(all[r], acc) for r = 1, 2, ...: rank order.
        buf.copy_from_slice(&all[..len]);
        for v in all[len..].chunks_exact(len) {
            op.apply(buf, v);
        }
        Ok(())
    }

    /// Recursive doubling: `log2 p` steps of exchanging the whole buffer
    /// with the partner `rank ^ d` (p the largest power of two <= n; the
    /// `n - p` extra ranks first hand their buffer to a partner and get the
    /// result back at the end). Each pair reduces lower rank first, so both
    /// hold the same bits. For tiny messages, where steps cost more than
    /// bytes.
    fn doubling_all_reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        self.with_extra_ranks_folded(buf, op, "doubling", |comm, buf, p| {
            comm.doubling_core(buf, op, p)
        })
    }

    /// Recursive doubling among the first `p` ranks (a power of two).
    fn doubling_core<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        p: usize,
    ) -> Result<(), CommError> {
        let me = self.rank;
        let at = |step, peer| At {
            op: "all_reduce",
            algo: "doubling",
            step,
            peer,
        };
        let mut other = buf.to_vec();
        let mut d = 1;
        let mut step = 1;
        while d < p {
            let partner = me ^ d;
            let out = bytemuck::cast_slice(&*buf);
            self.exchange(
                at(step, partner),
                partner,
                out,
                partner,
                Sink::copy(&mut other),
            )?;
            // The lower rank's value first.
            if partner < me {
                op.apply(buf, &other);
            } else {
                op.apply(&mut other, buf);
                buf.copy_from_slice(&other);
            }
            d *= 2;
            step += 1;
        }
        Ok(())
    }

    /// Runs `core` on the first `p` ranks, `p` the largest power of two <=
    /// n: each of the `n - p` extra ranks first hands its buffer to rank
    /// `rank - p`, which reduces it into its own (step 0), and gets the
    /// result back once `core` is done (step `usize::MAX`).
    fn with_extra_ranks_folded<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        algo: &'static str,
        core: impl FnOnce(&mut Self, &mut [T], usize) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        let (n, me) = (self.size, self.rank);
        let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let at = |step, peer| At {
            op: "all_reduce",
            algo,
            step,
            peer,
        };
        if me >= p {
            self.send_to(at(0, me - p), bytemuck::cast_slice(&*buf))?;
            return self.recv_from(at(usize::MAX, me - p), Sink::copy(buf));
        }
        if me + p < n {
            self.recv_from(at(0, me + p), Sink::reduce(buf, op))?;
        }
        core(self, buf, p)?;
        if me + p < n {
            self.send_to(at(usize::MAX, me + p), bytemuck::cast_slice(&*buf))?;
        }
        Ok(())
    }

    /// Rabenseifner's AllReduce on `p` ranks (the largest power of two <=
    /// n; the `n - p` extra ranks first hand their buffer to a partner and
    /// get the result back at the end, as in recursive doubling).
    ///
    /// Reduce-scatter by recursive halving: in step `k` a rank and its
    /// partner `rank ^ (p >> k)` split the range they share, each sends
    /// the half the other keeps and reduces the half it keeps. Then an
    /// all-gather by recursive doubling retraces the steps backwards. Each
    /// value is reduced by one rank per step, so every rank ends with the
    /// same bits.
    fn halving_all_reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
    ) -> Result<(), CommError> {
        self.with_extra_ranks_folded(buf, op, "halving", |comm, buf, p| {
            comm.halving_core(buf, op, p)
        })
    }

    /// Recursive halving then doubling among the first `p` ranks (a power
    /// of two).
    fn halving_core<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        p: usize,
    ) -> Result<(), CommError> {
        let me = self.rank;
        let at = |step, peer| At {
            op: "all_reduce",
            algo: "halving",
            step,
            peer,
        };
        let (mut lo, mut hi) = (0, buf.len());
        let mut trail = Vec::new();
        let mut step = 1;
        let mut d = p / 2;
        while d >= 1 {
            let partner = me ^ d;
            let mid = lo + (hi - lo) / 2;
            // The lower rank of the pair keeps the lower half.
            let (keep, give) = if me < partner {
                (lo..mid, mid..hi)
            } else {
                (mid..hi, lo..mid)
            };
            let (out, acc) = split_ranges(buf, give, keep.clone());
            let out = bytemuck::cast_slice(out);
            self.exchange(
                at(step, partner),
                partner,
                out,
                partner,
                Sink::reduce(acc, op),
            )?;
            trail.push((partner, lo, hi));
            (lo, hi) = (keep.start, keep.end);
            d /= 2;
            step += 1;
        }
        // This rank holds the reduction of [lo, hi); gather the rest back.
        while let Some((partner, plo, phi)) = trail.pop() {
            let other = if lo == plo { hi..phi } else { plo..lo };
            let (out, into) = split_ranges(buf, lo..hi, other);
            let out = bytemuck::cast_slice(out);
            self.exchange(at(step, partner), partner, out, partner, Sink::copy(into))?;
            (lo, hi) = (plo, phi);
            step += 1;
        }
        Ok(())
    }

    /// The deterministic form of the bandwidth algorithms: every rank
    /// gathers its chunk from every rank (pairwise: in step `s` it sends
    /// chunk `rank + s` to rank `rank + s` and receives its own from rank
    /// `rank - s`), folds them in rank order, then a ring all-gather
    /// spreads the chunks. Each rank sends `2 (n - 1) / n` of the buffer,
    /// as in the ring, and every value is the rank-order fold
    /// `op(x[n-1], ... op(x[1], x[0]))`, as Mesh and the shared-buffer
    /// pass compute it.
    fn ordered_all_reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        algo: &'static str,
    ) -> Result<(), CommError> {
        let (n, me, len) = (self.size, self.rank, buf.len());
        let chunk = |c: usize| (c * len / n)..((c + 1) * len / n);
        let mine = chunk(me);
        let mut parts: Vec<Vec<T>> = (0..n).map(|_| buf[mine.clone()].to_vec()).collect();
        for step in 1..n {
            let (to, from) = ((me + step) % n, (me + n - step) % n);
            let at = At {
                op: "all_reduce",
                algo,
                step: step - 1,
                peer: to,
            };
            let out = bytemuck::cast_slice(&buf[chunk(to)]);
            self.exchange(at, to, out, from, Sink::copy(&mut parts[from]))?;
        }
        let (first, rest) = parts.split_at_mut(1);
        let acc = &mut first[0];
        for part in rest.iter() {
            op.apply(acc, part);
        }
        buf[mine].copy_from_slice(acc);
        self.ring_gather(buf, &chunk, me, "all_reduce", n - 1, &self.everyone())
    }
}
