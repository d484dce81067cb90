//! Broadcast and Reduce, by binomial trees rooted at any rank: in
//! `ceil(log2 n)` rounds the root's buffer reaches every rank, or every
//! rank's buffer is folded into the root's. With two ranks the tree is the
//! direct send.
//!
//! Ranks are renumbered relative to the root (`v = (rank - root) mod n`).
//! Broadcast: rank `v` receives from `v - 2^k` (2^k its lowest set bit),
//! then sends to `v + 2^j` for every smaller `j`. Reduce runs the same tree
//! backwards: rank `v` folds in the partial results of `v + 1`, `v + 2`,
//! `v + 4`, ... (those below its lowest set bit), then sends its own to
//! `v - 2^k`.

use super::*;

/// The Broadcast algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastAlgo {
    /// The root sends to every rank in turn (`n - 1` sends at the root).
    Direct,
    /// A binomial tree (`ceil(log2 n)` rounds).
    Tree,
}

impl BroadcastAlgo {
    /// `EXODUS_COMM_ALGO=broadcast:direct|tree` if set, else the tree from
    /// three ranks on (with two, both are one send).
    pub fn select(n: usize) -> BroadcastAlgo {
        match forced_algo("broadcast").as_deref() {
            Some("direct") => BroadcastAlgo::Direct,
            Some("tree") => BroadcastAlgo::Tree,
            _ if n <= 2 => BroadcastAlgo::Direct,
            _ => BroadcastAlgo::Tree,
        }
    }
}

impl Communicator {
    /// Every rank gets `root`'s `buf` (by [`BroadcastAlgo::select`]).
    pub fn broadcast<T: Payload>(&mut self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        self.broadcast_with(buf, root, BroadcastAlgo::select(self.size))
    }

    /// [`broadcast`](Self::broadcast) by a given algorithm.
    pub fn broadcast_with<T: Payload>(
        &mut self,
        buf: &mut [T],
        root: usize,
        algo: BroadcastAlgo,
    ) -> Result<(), CommError> {
        let _span = self.span(
            "broadcast",
            std::mem::size_of_val(buf),
            match algo {
                BroadcastAlgo::Direct => "direct",
                BroadcastAlgo::Tree => "tree",
            },
        );
        let n = self.size;
        if root >= n {
            return Err(CommError::BadArgument(format!(
                "broadcast from rank {root} of {n}"
            )));
        }
        let at = |step, peer| At {
            op: "broadcast",
            algo: match algo {
                BroadcastAlgo::Direct => "direct",
                BroadcastAlgo::Tree => "tree",
            },
            step,
            peer,
        };
        if algo == BroadcastAlgo::Direct {
            if self.rank == root {
                for peer in (0..n).filter(|&p| p != root) {
                    self.send_to(at(0, peer), bytemuck::cast_slice(&*buf))?;
                }
                return Ok(());
            }
            return self.recv_from(at(0, root), Sink::copy(buf));
        }
        let v = (self.rank + n - root) % n;
        let real = |v: usize| (v + root) % n;
        let mut mask = 1;
        while mask < n {
            if v & mask != 0 {
                let step = mask.trailing_zeros() as usize;
                self.recv_from(at(step, real(v - mask)), Sink::copy(buf))?;
                break;
            }
            mask <<= 1;
        }
        mask >>= 1;
        while mask > 0 {
            if v + mask < n {
                let step = mask.trailing_zeros() as usize;
                self.send_to(at(step, real(v + mask)), bytemuck::cast_slice(&*buf))?;
            }
            mask >>= 1;
        }
        Ok(())
    }

    /// `root`'s `buf` gets the element-wise reduction of every rank's
    /// `buf` (binomial tree); the other ranks' buffers are left as they
    /// were. In deterministic mode the root folds every rank's buffer in
    /// rank order instead, as AllReduce does there.
    pub fn reduce<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        root: usize,
    ) -> Result<(), CommError> {
        let _span = self.span("reduce", buf.len() * T::BYTES, "tree");
        let n = self.size;
        if root >= n {
            return Err(CommError::BadArgument(format!(
                "reduce to rank {root} of {n}"
            )));
        }
        let at = |algo, step, peer| At {
            op: "reduce",
            algo,
            step,
            peer,
        };
        if n > 1 && self.deterministic {
            if self.rank != root {
                return self.send_to(at("direct", 0, root), bytemuck::cast_slice(&*buf));
            }
            let mut parts: Vec<Vec<T>> = (0..n).map(|_| buf.to_vec()).collect();
            for (peer, part) in parts.iter_mut().enumerate().filter(|(p, _)| *p != root) {
                self.recv_from(at("direct", 0, peer), Sink::copy(part))?;
            }
            buf.copy_from_slice(&parts[0]);
            for part in &parts[1..] {
                op.apply(buf, part);
            }
        } else if n > 1 {
            let v = (self.rank + n - root) % n;
            let real = |v: usize| (v + root) % n;
            let mut scratch;
            let acc: &mut [T] = if self.rank == root {
                buf
            } else {
                scratch = buf.to_vec();
                &mut scratch
            };
            let mut mask = 1;
            while mask < n {
                let step = mask.trailing_zeros() as usize;
                if v & mask == 0 {
                    if v + mask < n {
                        self.recv_from(at("tree", step, real(v + mask)), Sink::reduce(acc, op))?;
                    }
                } else {
                    return self
                        .send_to(at("tree", step, real(v - mask)), bytemuck::cast_slice(acc));
                }
                mask <<= 1;
            }
            if op == ReduceOp::Avg {
                acc.iter_mut().for_each(|x| *x = T::mean(*x, n));
            }
            return Ok(());
        }
        if op == ReduceOp::Avg {
            buf.iter_mut().for_each(|x| *x = T::mean(*x, n));
        }
        Ok(())
    }
}
