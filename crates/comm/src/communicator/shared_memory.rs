//! Collectives on [`SharedBuffer`]s: creating them, and the one-pass
//! in-place AllReduce (see [`crate::shared`]).

use super::*;

impl Communicator {
    /// A buffer of `len` values that every rank of this host maps (a
    /// collective: every rank calls it with the same `len`). See
    /// [`SharedBuffer`] and [`all_reduce_shared`](Self::all_reduce_shared).
    pub fn shared_buffer<T: Element>(&mut self, len: usize) -> Result<SharedBuffer<T>, CommError> {
        let (n, me) = (self.size, self.rank);
        let fail = |reason: String| CommError::SharedMemory { rank: me, reason };
        let bytes = len
            .checked_mul(T::BYTES)
            .ok_or_else(|| fail(format!("{len} values of {} overflow", T::NAME)))?;
        let cookie = rendezvous::random_u64(me, len);
        let (own, path) = Segment::create(cookie, bytes)
            .map_err(|e| fail(format!("creating {bytes} bytes: {e}")))?;
        let local: Vec<usize> = (0..n)
            .filter(|&p| self.transport(p) == Some("shm"))
            .collect();
        let at = |peer| At {
            op: "shared_buffer",
            algo: "direct",
            step: 0,
            peer,
        };
        // Offer this rank's segment to every local peer, then map theirs.
        let mut offer = cookie.to_le_bytes().to_vec();
        offer.extend_from_slice(path.to_string_lossy().as_bytes());
        let exchanged = (|| {
            for &p in &local {
                self.send_to(at(p), &(offer.len() as u64).to_le_bytes())?;
                self.send_to(at(p), &offer)?;
            }
            let mut segments: Vec<Option<Segment>> = (0..n).map(|_| None).collect();
            for &p in &local {
                let mut len_bytes = [0u8; 8];
                self.recv_from(at(p), Sink::bytes(&mut len_bytes))?;
                let offer_len = u64::from_le_bytes(len_bytes) as usize;
                if !(8..=8 + 4096).contains(&offer_len) {
                    return Err(fail(format!(
                        "rank {p} offered {offer_len} bytes of description"
                    )));
                }
                let mut theirs = vec![0u8; offer_len];
                self.recv_from(at(p), Sink::bytes(&mut theirs))?;
                let cookie = u64::from_le_bytes(theirs[..8].try_into().unwrap_or_default());
                let path = String::from_utf8_lossy(&theirs[8..]).into_owned();
                segments[p] = Segment::open(std::path::Path::new(&path), cookie, bytes).ok();
            }
            // Every rank has mapped what it could: the files can go.
            self.barrier_as("shared_buffer", "dissemination", 1)?;
            Ok(segments)
        })();
        let _ = std::fs::remove_file(&path);
        let mut segments = exchanged?;
        let mapped_all = (0..n).all(|p| p == me || segments[p].is_some());
        segments[me] = Some(own);
        // Every rank must agree to take the in-place path.
        let mut agreed = [i32::from(mapped_all)];
        self.all_reduce_with(&mut agreed, ReduceOp::Min, AllReduceAlgo::Doubling)?;
        Ok(SharedBuffer {
            len,
            rank: me,
            segments,
            shared_by_all: agreed[0] == 1,
            values: std::marker::PhantomData,
        })
    }

    /// In-place AllReduce of every rank's shared buffer, in one pass over
    /// the others' memory (see [`SharedBuffer`]); the fold runs in rank
    /// order. Small buffers, and buffers not every rank maps, go over the
    /// links instead ([`all_reduce`](Self::all_reduce)).
    pub fn all_reduce_shared<T: Element>(
        &mut self,
        buf: &mut SharedBuffer<T>,
        op: ReduceOp,
    ) -> Result<(), CommError> {
        let _span = self.span("all_reduce_shared", buf.len * T::BYTES, "shared");
        let (n, me, len) = (self.size, self.rank, buf.len);
        if buf.rank != me || buf.segments.len() != n {
            return Err(CommError::BadArgument(
                "all_reduce_shared: a buffer of another communicator".into(),
            ));
        }
        if !buf.shared_by_all || len * T::BYTES <= MESH_MAX_BYTES || n == 1 {
            return self.all_reduce(buf.as_mut_slice(), op);
        }
        let ptrs: Vec<*mut T> = (0..n).filter_map(|r| buf.ptr(r)).collect();
        if ptrs.len() != n {
            return Err(CommError::BadArgument(
                "all_reduce_shared: a rank's buffer is not mapped".into(),
            ));
        }
        // 1. Every rank's input is written.
        self.barrier_as("all_reduce", "shared", 0)?;
        // 2. Fold this rank's chunk, piece by piece, into every buffer.
        const PIECE: usize = 4096;
        let chunk = (me * len / n)..((me + 1) * len / n);
        let mut acc: Vec<T> = vec![T::zeroed(); PIECE.min(chunk.len())];
        let mut start = chunk.start;
        while start < chunk.end {
            let end = (start + PIECE).min(chunk.end);
            let acc = &mut acc[..end - start];
            // SAFETY: every buffer holds `len` values (same `len` on every
            // rank, checked by the segment size when mapping) and
            // `start..end` lies in this rank's chunk, which between the two
            // barriers no other rank reads or writes in any buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(ptrs[0].add(start), acc.as_mut_ptr(), acc.len());
                for &p in &ptrs[1..] {
                    op.apply(acc, std::slice::from_raw_parts(p.add(start), acc.len()));
                }
                if op == ReduceOp::Avg {
                    acc.iter_mut().for_each(|v| *v = T::mean(*v, n));
                }
                for &p in &ptrs {
                    std::ptr::copy_nonoverlapping(acc.as_ptr(), p.add(start), acc.len());
                }
            }
            start = end;
        }
        // 3. Every result is written.
        self.barrier_as("all_reduce", "shared", 1 + n.ilog2() as usize)
    }
}
