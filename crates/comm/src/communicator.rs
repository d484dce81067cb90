//! The communicator: a rank's links to every other (see
//! [`rendezvous`](crate::rendezvous)), and the collectives over them.
//!
//! # Collectives
//!
//! Ring algorithms: AllReduce as a reduce-scatter then an all-gather
//! around the ring (each rank sends `2 (n - 1) / n` of the buffer, the
//! bandwidth-optimal amount); AllGather as the second half alone. In each
//! ring step a rank sends to its right neighbour while it receives from its
//! left one, so no two ranks wait on each other, and the incoming partial
//! sums are reduced straight into the caller's buffer. Broadcast sends from
//! the root to every rank; Barrier is a dissemination barrier (`log2 n`
//! rounds of empty messages). Every reduction of a chunk happens in the
//! same order on every rank, so all ranks end with the same bits.

use std::net::TcpStream;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bootstrap::Bootstrap;
use crate::element::Element;
use crate::error::{At, CommError};
use crate::link::{self, Rx, Sink, Tx};
use crate::reduce::ReduceOp;
use crate::rendezvous;
use crate::shared::SharedBuffer;
use crate::shm::Segment;

/// AllReduce messages up to this size go by Mesh or Doubling (one or
/// `log2 n` steps), larger ones by Ring.
const MESH_MAX_BYTES: usize = 8 << 10;

/// `buf[send]` to read and `buf[recv]` to write: two disjoint ranges of
/// one buffer (one of them may be empty).
fn split_ranges<T>(buf: &mut [T], send: Range<usize>, recv: Range<usize>) -> (&[T], &mut [T]) {
    if send.start >= recv.end {
        let (low, high) = buf.split_at_mut(send.start);
        (&high[..send.len()], &mut low[recv])
    } else {
        assert!(
            send.end <= recv.start,
            "overlapping ranges {send:?} and {recv:?}"
        );
        let (low, high) = buf.split_at_mut(recv.start);
        (&low[send], &mut high[..recv.len()])
    }
}

/// The AllReduce algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduceAlgo {
    /// Reduce-scatter then all-gather around the ring: `2 (n - 1)` steps,
    /// each rank sends `2 (n - 1) / n` of the buffer (bandwidth-optimal).
    Ring,
    /// Everyone sends everything to everyone, once: one step, `n - 1`
    /// buffers per rank (latency-optimal for small messages and few ranks).
    Mesh,
    /// Recursive doubling: `log2 n` steps of whole-buffer exchanges (for
    /// tiny messages on many ranks).
    Doubling,
}

impl AllReduceAlgo {
    /// The algorithm for `bytes` per rank on `n` ranks:
    /// `EXODUS_COMM_ALGO=allreduce:ring|mesh|doubling` if set, else Mesh
    /// up to 8 KiB on up to 8 ranks, Doubling up to 8 KiB beyond, Ring
    /// above (a cost model with measured constants is the next step).
    pub fn select(bytes: usize, n: usize) -> AllReduceAlgo {
        if let Some(algo) = std::env::var("EXODUS_COMM_ALGO")
            .ok()
            .and_then(|v| v.strip_prefix("allreduce:").and_then(AllReduceAlgo::parse))
        {
            return algo;
        }
        match (bytes <= MESH_MAX_BYTES, n <= 8) {
            (true, true) => AllReduceAlgo::Mesh,
            (true, false) => AllReduceAlgo::Doubling,
            _ => AllReduceAlgo::Ring,
        }
    }

    /// `ring`, `mesh` or `doubling`.
    pub fn parse(name: &str) -> Option<AllReduceAlgo> {
        match name {
            "ring" => Some(AllReduceAlgo::Ring),
            "mesh" => Some(AllReduceAlgo::Mesh),
            "doubling" => Some(AllReduceAlgo::Doubling),
            _ => None,
        }
    }
}

/// Handles that can cut every connection, from any thread.
#[derive(Debug, Clone)]
pub struct AbortHandle {
    aborted: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
}

impl AbortHandle {
    /// Aborts the communicator: every blocked or later operation of every
    /// rank connected to this one ends with an error (here
    /// [`CommError::Aborted`], on the peers [`CommError::PeerGone`]). Never
    /// blocks.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for s in sockets.iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A communicator of `size` ranks (see the [module docs](self)).
#[derive(Debug)]
pub struct Communicator {
    rank: usize,
    size: usize,
    hosts: Vec<String>,
    tx: Vec<Option<Tx>>,
    rx: Vec<Option<Rx>>,
    timeout: Duration,
    abort: AbortHandle,
}

impl Communicator {
    /// Joins the job `boot` describes; every operation (and the
    /// rendezvous itself) gives up after `timeout`. Ranks on one host talk
    /// through shared memory, others over TCP.
    pub fn connect(boot: &Bootstrap, timeout: Duration) -> Result<Communicator, CommError> {
        let links = rendezvous::connect(boot, timeout)?;
        Ok(Communicator {
            rank: boot.rank,
            size: boot.size,
            hosts: links.hosts,
            tx: links.tx,
            rx: links.rx,
            timeout,
            abort: AbortHandle {
                aborted: Arc::new(AtomicBool::new(false)),
                sockets: Arc::new(Mutex::new(links.sockets)),
            },
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the job.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether `peer` runs on this machine (same host name).
    pub fn same_host(&self, peer: usize) -> bool {
        self.hosts.get(peer) == self.hosts.get(self.rank)
    }

    /// How this rank talks to `peer`: `shm` or `tcp` (`None` for itself
    /// or a rank outside the job).
    pub fn transport(&self, peer: usize) -> Option<&'static str> {
        self.tx
            .get(peer)
            .and_then(Option::as_ref)
            .map(Tx::transport)
    }

    /// A handle that aborts this communicator from any thread.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    fn check(&self, err: CommError) -> CommError {
        if self.abort.aborted.load(Ordering::SeqCst) {
            let at = match err {
                CommError::Timeout { at, .. }
                | CommError::PeerGone { at, .. }
                | CommError::Mismatch { at, .. }
                | CommError::Aborted { at } => at,
                other => return other,
            };
            return CommError::Aborted { at };
        }
        err
    }

    fn not_a_peer(&self, peer: usize) -> CommError {
        CommError::BadArgument(format!("rank {peer} is not a peer of rank {}", self.rank))
    }

    /// Sends `data` to `peer` as one message; `at` names the operation.
    fn send_to(&mut self, at: At, data: &[u8]) -> Result<(), CommError> {
        let timeout = self.timeout;
        let peer = at.peer;
        let Some(Some(tx)) = self.tx.get_mut(peer) else {
            return Err(self.not_a_peer(peer));
        };
        let r = tx.send(at, data, timeout);
        r.map_err(|e| self.check(e))
    }

    /// Receives one message from `at.peer` into `sink`.
    fn recv_from(&mut self, at: At, sink: Sink<'_>) -> Result<(), CommError> {
        let timeout = self.timeout;
        let peer = at.peer;
        let Some(Some(rx)) = self.rx.get_mut(peer) else {
            return Err(self.not_a_peer(peer));
        };
        let r = rx.recv(at, sink, timeout);
        r.map_err(|e| self.check(e))
    }

    /// Sends `out` to `to` while receiving into `sink` from `from` (a ring
    /// step); `at` names the operation, algorithm and step (its peer is
    /// set per direction).
    fn exchange(
        &mut self,
        at: At,
        to: usize,
        out: &[u8],
        from: usize,
        sink: Sink<'_>,
    ) -> Result<(), CommError> {
        let timeout = self.timeout;
        let (Some(Some(tx)), Some(Some(rx))) = (self.tx.get_mut(to), self.rx.get_mut(from)) else {
            return Err(CommError::BadArgument(format!(
                "ranks {to} / {from} are not peers of rank {}",
                self.rank
            )));
        };
        let send_at = At {
            peer: to,
            ..at.clone()
        };
        let r = link::exchange(tx, send_at, out, rx, At { peer: from, ..at }, sink, timeout);
        r.map_err(|e| self.check(e))
    }

    /// Sends `data` to `peer`.
    pub fn send(&mut self, peer: usize, data: &[u8]) -> Result<(), CommError> {
        let at = At {
            op: "send",
            algo: "direct",
            step: 0,
            peer,
        };
        self.send_to(at, data)
    }

    /// Receives exactly `buf.len()` bytes from `peer`.
    pub fn recv(&mut self, peer: usize, buf: &mut [u8]) -> Result<(), CommError> {
        let at = At {
            op: "recv",
            algo: "direct",
            step: 0,
            peer,
        };
        self.recv_from(at, Sink::bytes(buf))
    }

    /// Every rank gets the element-wise reduction of every rank's `buf`
    /// (`buf` must be as long on every rank), by the algorithm
    /// [`AllReduceAlgo::select`] picks for this size (or
    /// `EXODUS_COMM_ALGO=allreduce:ring|mesh|doubling`).
    pub fn all_reduce<T: Element>(&mut self, buf: &mut [T], op: ReduceOp) -> Result<(), CommError> {
        let algo = AllReduceAlgo::select(buf.len() * T::BYTES, self.size);
        self.all_reduce_with(buf, op, algo)
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

    /// [`all_reduce`](Self::all_reduce) by a given algorithm.
    pub fn all_reduce_with<T: Element>(
        &mut self,
        buf: &mut [T],
        op: ReduceOp,
        algo: AllReduceAlgo,
    ) -> Result<(), CommError> {
        let n = self.size;
        if n > 1 && !buf.is_empty() {
            match algo {
                AllReduceAlgo::Ring => {
                    let len = buf.len();
                    let chunk = |c: usize| (c * len / n)..((c + 1) * len / n);
                    self.ring_reduce_scatter(buf, &chunk, op, "all_reduce")?;
                    self.ring_gather(buf, &chunk, (self.rank + 1) % n, "all_reduce", n - 1)?;
                }
                AllReduceAlgo::Mesh => self.mesh_all_reduce(buf, op)?,
                AllReduceAlgo::Doubling => self.doubling_all_reduce(buf, op)?,
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
        let (n, me) = (self.size, self.rank);
        let mut all: Vec<Vec<T>> = vec![buf.to_vec(); n];
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
            self.exchange(at, to, out, from, Sink::copy(&mut all[from]))?;
        }
        // acc = op(all[r], acc) for r = 1, 2, ...: rank order.
        buf.copy_from_slice(&all[0]);
        for v in &all[1..] {
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
        let (n, me) = (self.size, self.rank);
        let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let at = |step, peer| At {
            op: "all_reduce",
            algo: "doubling",
            step,
            peer,
        };
        // Extra ranks fold into ranks 0..n-p.
        if me >= p {
            self.send_to(at(0, me - p), bytemuck::cast_slice(&*buf))?;
            return self.recv_from(at(usize::MAX, me - p), Sink::copy(buf));
        }
        let mut other = buf.to_vec();
        if me + p < n {
            self.recv_from(at(0, me + p), Sink::copy(&mut other))?;
            op.apply(buf, &other);
        }
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
        if me + p < n {
            self.send_to(at(usize::MAX, me + p), bytemuck::cast_slice(&*buf))?;
        }
        Ok(())
    }

    /// The reduce-scatter half of a ring: after `n - 1` steps this rank
    /// holds the whole reduction of chunk `rank + 1`.
    fn ring_reduce_scatter<T: Element>(
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
    fn ring_gather<T: Element>(
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

    /// `out` (`size * mine.len()` values) gets every rank's `mine`, in rank
    /// order (ring algorithm).
    pub fn all_gather<T: Element>(&mut self, mine: &[T], out: &mut [T]) -> Result<(), CommError> {
        let (n, m) = (self.size, mine.len());
        if out.len() != n * m {
            return Err(CommError::BadArgument(format!(
                "all_gather: out holds {} values, {n} ranks x {m} need {}",
                out.len(),
                n * m
            )));
        }
        out[self.rank * m..(self.rank + 1) * m].copy_from_slice(mine);
        if n > 1 && m > 0 {
            self.ring_gather(out, &|c| c * m..(c + 1) * m, self.rank, "all_gather", 0)?;
        }
        Ok(())
    }

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

    /// In-place [`all_gather`](Self::all_gather): `buf` holds `size`
    /// blocks, this rank's already in place; every rank ends with all.
    pub fn all_gather_in_place<T: Element>(&mut self, buf: &mut [T]) -> Result<(), CommError> {
        let n = self.size;
        if !buf.len().is_multiple_of(n) {
            return Err(CommError::BadArgument(format!(
                "all_gather: {} values are not {n} equal blocks",
                buf.len()
            )));
        }
        let m = buf.len() / n;
        if n > 1 && m > 0 {
            self.ring_gather(buf, &|c| c * m..(c + 1) * m, self.rank, "all_gather", 0)?;
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
            self.ring_reduce_scatter(&mut buf, &chunk, op, "reduce_scatter")?;
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
    pub fn all_to_all<T: Element>(&mut self, input: &[T], out: &mut [T]) -> Result<(), CommError> {
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

    /// Every rank gets `root`'s `buf`.
    pub fn broadcast<T: Element>(&mut self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        if root >= self.size {
            return Err(CommError::BadArgument(format!(
                "broadcast from rank {root} of {}",
                self.size
            )));
        }
        let at = |peer| At {
            op: "broadcast",
            algo: "direct",
            step: 0,
            peer,
        };
        if self.rank == root {
            for peer in (0..self.size).filter(|&p| p != root) {
                self.send_to(at(peer), bytemuck::cast_slice(&*buf))?;
            }
            Ok(())
        } else {
            self.recv_from(at(root), Sink::copy(buf))
        }
    }

    /// Returns once every rank has called it (dissemination barrier).
    pub fn barrier(&mut self) -> Result<(), CommError> {
        self.barrier_as("barrier", "dissemination", 0)
    }

    /// A dissemination barrier whose errors name `op` and `algo`, its
    /// steps counted from `step0`.
    fn barrier_as(
        &mut self,
        op: &'static str,
        algo: &'static str,
        step0: usize,
    ) -> Result<(), CommError> {
        let n = self.size;
        let mut dist = 1;
        let mut step = step0;
        while dist < n {
            let to = (self.rank + dist) % n;
            let from = (self.rank + n - dist) % n;
            let at = At {
                op,
                algo,
                step,
                peer: to,
            };
            self.exchange(at, to, &[], from, Sink::bytes(&mut []))?;
            dist *= 2;
            step += 1;
        }
        Ok(())
    }
}
