//! The communicator: the rendezvous that connects every pair of ranks, and
//! the collectives over those links.
//!
//! # Rendezvous
//!
//! Rank 0 listens at the meeting point. Every other rank connects to it
//! (retrying until the timeout, since rank 0 may start last), says its
//! rank, the address it listens on and its host name; rank 0 answers each
//! with the whole table. That connection stays as the rank's link with
//! rank 0; every other pair connects directly (the higher rank dials the
//! lower), so the job ends with one TCP connection per pair. Host names
//! give the topology: which ranks share a machine.
//!
//! # Collectives
//!
//! Ring algorithms: AllReduce as a reduce-scatter then an all-gather
//! around the ring (each rank sends `2 (n - 1) / n` of the buffer, the
//! bandwidth-optimal amount); AllGather as the second half alone. In each
//! ring step a rank sends to its right neighbour while it receives from its
//! left one (the send runs on a scoped thread), so no two ranks wait on
//! each other. Broadcast sends from the root to every rank; Barrier is a
//! dissemination barrier (`log2 n` rounds of empty messages). Every
//! reduction of a chunk happens in the same order on every rank, so all
//! ranks end with the same bits.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bootstrap::Bootstrap;
use crate::element::{decode, encode, Element};
use crate::error::{At, CommError};
use crate::link::{self, Rx, Tx};

/// Messages up to this size are sent without a helper thread in a ring
/// step (well below the smallest default TCP send buffer).
const INLINE_SEND_BYTES: usize = 8 << 10;

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Mean over ranks.
    Avg,
}

impl ReduceOp {
    fn apply<T: Element>(self, acc: &mut [T], x: &[T]) {
        for (a, &b) in acc.iter_mut().zip(x) {
            *a = match self {
                ReduceOp::Sum | ReduceOp::Avg => T::add(*a, b),
                ReduceOp::Max => T::max(*a, b),
                ReduceOp::Min => T::min(*a, b),
            };
        }
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
        match (bytes <= INLINE_SEND_BYTES, n <= 8) {
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

/// This machine's name (topology: ranks with the same name share memory).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take_str(b: &[u8], at: &mut usize) -> Option<String> {
    let len = u32::from_le_bytes(b.get(*at..*at + 4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(b.get(*at + 4..*at + 4 + len)?)
        .ok()?
        .to_string();
    *at += 4 + len;
    Some(s)
}

impl Communicator {
    /// Joins the job `boot` describes; every operation (and the
    /// rendezvous itself) gives up after `timeout`.
    pub fn connect(boot: &Bootstrap, timeout: Duration) -> Result<Communicator, CommError> {
        let (rank, size) = (boot.rank, boot.size);
        let fail = |reason: String| CommError::Rendezvous { rank, size, reason };
        let deadline = Instant::now() + timeout;
        let mut tx: Vec<Option<Tx>> = (0..size).map(|_| None).collect();
        let mut rx: Vec<Option<Rx>> = (0..size).map(|_| None).collect();
        let mut sockets = Vec::new();
        let me = host_name();
        let rendezvous_at = |peer: usize| At {
            op: "rendezvous",
            algo: "tcp",
            step: 0,
            peer,
        };
        let attach = |peer: usize,
                      stream: TcpStream,
                      tx: &mut Vec<Option<Tx>>,
                      rx: &mut Vec<Option<Rx>>,
                      sockets: &mut Vec<TcpStream>| {
            let clone = stream
                .try_clone()
                .map_err(|e| fail(format!("peer {peer}: {e}")))?;
            sockets.push(clone);
            let (t, r) = link::split(stream).map_err(|e| fail(format!("peer {peer}: {e}")))?;
            tx[peer] = Some(t);
            rx[peer] = Some(r);
            Ok::<(), CommError>(())
        };
        let (listener, table) = if rank == 0 {
            let listener = TcpListener::bind(boot.master)
                .map_err(|e| fail(format!("listening at {}: {e}", boot.master)))?;
            let mut entries: Vec<Option<(String, String)>> = vec![None; size];
            entries[0] = Some((boot.master.to_string(), me.clone()));
            let mut pending = Vec::new();
            listener
                .set_nonblocking(true)
                .map_err(|e| fail(e.to_string()))?;
            while pending.len() < size - 1 {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).map_err(|e| fail(e.to_string()))?;
                        let (t, mut r) =
                            link::split(s.try_clone().map_err(|e| fail(e.to_string()))?)
                                .map_err(|e| fail(e.to_string()))?;
                        let mut len = [0u8; 8];
                        r.recv(rendezvous_at(usize::MAX), &mut len, timeout)?;
                        let mut hello = vec![0u8; u64::from_le_bytes(len) as usize];
                        r.recv(rendezvous_at(usize::MAX), &mut hello, timeout)?;
                        let peer = u64::from_le_bytes(
                            hello
                                .get(..8)
                                .and_then(|b| b.try_into().ok())
                                .unwrap_or_default(),
                        ) as usize;
                        let mut at = 8;
                        let (addr, host) = take_str(&hello, &mut at)
                            .zip(take_str(&hello, &mut at))
                            .ok_or_else(|| fail("a malformed hello".into()))?;
                        if peer == 0 || peer >= size || entries[peer].is_some() {
                            return Err(fail(format!(
                                "a hello from rank {peer}, which is out of range or taken"
                            )));
                        }
                        entries[peer] = Some((addr, host));
                        pending.push((peer, s, t, r));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<usize> =
                                (1..size).filter(|r| entries[*r].is_none()).collect();
                            return Err(fail(format!("ranks {missing:?} never arrived")));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
            let table: Vec<(String, String)> =
                entries.into_iter().map(|e| e.unwrap_or_default()).collect();
            let mut blob = Vec::new();
            for (addr, host) in &table {
                put_str(&mut blob, addr);
                put_str(&mut blob, host);
            }
            for (peer, s, mut t, r) in pending {
                t.send(
                    rendezvous_at(peer),
                    &(blob.len() as u64).to_le_bytes(),
                    timeout,
                )?;
                t.send(rendezvous_at(peer), &blob, timeout)?;
                let clone = s.try_clone().map_err(|e| fail(e.to_string()))?;
                sockets.push(clone);
                tx[peer] = Some(t);
                rx[peer] = Some(r);
            }
            listener
                .set_nonblocking(false)
                .map_err(|e| fail(e.to_string()))?;
            (listener, table)
        } else {
            let stream = loop {
                match TcpStream::connect_timeout(&boot.master, Duration::from_millis(500)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(fail(format!(
                            "rank 0 at {} never answered: {e}",
                            boot.master
                        )))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            let ip = stream.local_addr().map_err(|e| fail(e.to_string()))?.ip();
            let listener =
                TcpListener::bind(SocketAddr::new(ip, 0)).map_err(|e| fail(e.to_string()))?;
            let mine = listener.local_addr().map_err(|e| fail(e.to_string()))?;
            let (mut t, mut r) = link::split(stream.try_clone().map_err(|e| fail(e.to_string()))?)
                .map_err(|e| fail(e.to_string()))?;
            let mut hello = (rank as u64).to_le_bytes().to_vec();
            put_str(&mut hello, &mine.to_string());
            put_str(&mut hello, &me);
            t.send(
                rendezvous_at(0),
                &(hello.len() as u64).to_le_bytes(),
                timeout,
            )?;
            t.send(rendezvous_at(0), &hello, timeout)?;
            let mut len = [0u8; 8];
            r.recv(rendezvous_at(0), &mut len, timeout)?;
            let mut blob = vec![0u8; u64::from_le_bytes(len) as usize];
            r.recv(rendezvous_at(0), &mut blob, timeout)?;
            let mut at = 0;
            let mut table = Vec::with_capacity(size);
            for _ in 0..size {
                let entry = take_str(&blob, &mut at)
                    .zip(take_str(&blob, &mut at))
                    .ok_or_else(|| fail("a malformed address table".into()))?;
                table.push(entry);
            }
            sockets.push(stream);
            tx[0] = Some(t);
            rx[0] = Some(r);
            (listener, table)
        };
        // The other pairs: dial every lower rank but 0, accept every higher.
        for (peer, (addr, _)) in table.iter().enumerate().take(rank).skip(1) {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| fail(format!("rank {peer}'s address {addr:?}")))?;
            let mut s = loop {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(fail(format!("rank {peer} at {addr} never answered: {e}")))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            use std::io::Write;
            s.write_all(&(rank as u64).to_le_bytes())
                .map_err(|e| fail(e.to_string()))?;
            attach(peer, s, &mut tx, &mut rx, &mut sockets)?;
        }
        // Rank 0's links to every other rank came with the rendezvous.
        let higher = if rank == 0 { 0 } else { size - rank - 1 };
        for _ in 0..higher {
            let (mut s, _) = listener.accept().map_err(|e| fail(e.to_string()))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| fail(e.to_string()))?;
            let mut id = [0u8; 8];
            use std::io::Read;
            s.read_exact(&mut id)
                .map_err(|e| fail(format!("a peer's id: {e}")))?;
            let peer = u64::from_le_bytes(id) as usize;
            if peer <= rank || peer >= size || tx[peer].is_some() {
                return Err(fail(format!(
                    "a connection from rank {peer}, which is out of range or taken"
                )));
            }
            attach(peer, s, &mut tx, &mut rx, &mut sockets)?;
        }
        Ok(Communicator {
            rank,
            size,
            hosts: table.into_iter().map(|(_, h)| h).collect(),
            tx,
            rx,
            timeout,
            abort: AbortHandle {
                aborted: Arc::new(AtomicBool::new(false)),
                sockets: Arc::new(Mutex::new(sockets)),
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

    fn tx(&mut self, peer: usize) -> Result<&mut Tx, CommError> {
        self.tx
            .get_mut(peer)
            .and_then(Option::as_mut)
            .ok_or_else(|| {
                CommError::BadArgument(format!("rank {peer} is not a peer of rank {}", self.rank))
            })
    }

    /// Sends `data` to `peer`.
    pub fn send(&mut self, peer: usize, data: &[u8]) -> Result<(), CommError> {
        let (timeout, at) = (
            self.timeout,
            At {
                op: "send",
                algo: "direct",
                step: 0,
                peer,
            },
        );
        let r = self.tx(peer)?.send(at, data, timeout);
        r.map_err(|e| self.check(e))
    }

    /// Receives exactly `buf.len()` bytes from `peer`.
    pub fn recv(&mut self, peer: usize, buf: &mut [u8]) -> Result<(), CommError> {
        let (timeout, at) = (
            self.timeout,
            At {
                op: "recv",
                algo: "direct",
                step: 0,
                peer,
            },
        );
        let rx = self
            .rx
            .get_mut(peer)
            .and_then(Option::as_mut)
            .ok_or_else(|| CommError::BadArgument(format!("rank {peer} is not a peer")))?;
        let r = rx.recv(at, buf, timeout);
        r.map_err(|e| self.check(e))
    }

    /// Sends `out` to `to` while receiving `inp` from `from` (a ring step);
    /// `at` names the operation, algorithm and step (its peer is set per
    /// direction).
    fn exchange(
        &mut self,
        at: At,
        to: usize,
        out: &[u8],
        from: usize,
        inp: &mut [u8],
    ) -> Result<(), CommError> {
        let timeout = self.timeout;
        let (Some(Some(tx)), Some(Some(rx))) = (self.tx.get_mut(to), self.rx.get_mut(from)) else {
            return Err(CommError::BadArgument(format!(
                "ranks {to} / {from} are not peers"
            )));
        };
        // A message the kernel's socket buffer takes whole cannot block the
        // sender, so it is sent before receiving, without a thread (every
        // rank of the step does the same).
        if out.len() <= INLINE_SEND_BYTES {
            let sent = tx.send(
                At {
                    peer: to,
                    ..at.clone()
                },
                out,
                timeout,
            );
            let result = sent.and_then(|()| rx.recv(At { peer: from, ..at }, inp, timeout));
            return result.map_err(|e| self.check(e));
        }
        let result = std::thread::scope(|s| {
            let send_at = At {
                peer: to,
                ..at.clone()
            };
            let sent = s.spawn(|| tx.send(send_at, out, timeout));
            let received = rx.recv(At { peer: from, ..at }, inp, timeout);
            let sent = sent.join().unwrap_or_else(|_| {
                Err(CommError::BadArgument("the sending thread panicked".into()))
            });
            received.and(sent)
        });
        result.map_err(|e| self.check(e))
    }

    /// Every rank gets the element-wise reduction of every rank's `buf`
    /// (`buf` must be as long on every rank), by the algorithm
    /// [`AllReduceAlgo::select`] picks for this size (or
    /// `EXODUS_COMM_ALGO=allreduce:ring|mesh|doubling`).
    pub fn all_reduce<T: Element>(&mut self, buf: &mut [T], op: ReduceOp) -> Result<(), CommError> {
        let algo = AllReduceAlgo::select(buf.len() * T::BYTES, self.size);
        self.all_reduce_with(buf, op, algo)
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
        let (n, me, timeout) = (self.size, self.rank, self.timeout);
        let mut bytes = Vec::new();
        encode(buf, &mut bytes);
        let at = |peer| At {
            op: "all_reduce",
            algo: "mesh",
            step: 0,
            peer,
        };
        let mut all: Vec<Vec<T>> = vec![Vec::new(); n];
        all[me] = buf.to_vec();
        // Rank r sends to r + 1, r + 2, ... while it receives from r - 1,
        // r - 2, ...: each send meets its receive in the same round. Small
        // messages fit the socket buffers and go first without a thread;
        // large ones go from a scoped thread.
        let Self { tx, rx, .. } = self;
        let send_all = |tx: &mut Vec<Option<Tx>>| -> Result<(), CommError> {
            for s in 1..n {
                let peer = (me + s) % n;
                let link = tx[peer]
                    .as_mut()
                    .ok_or_else(|| CommError::BadArgument(format!("no link to rank {peer}")))?;
                link.send(at(peer), &bytes, timeout)?;
            }
            Ok(())
        };
        let mut recv_all = |rx: &mut Vec<Option<Rx>>| -> Result<(), CommError> {
            let mut inp = vec![0u8; bytes.len()];
            for s in 1..n {
                let peer = (me + n - s) % n;
                let link = rx[peer]
                    .as_mut()
                    .ok_or_else(|| CommError::BadArgument(format!("no link to rank {peer}")))?;
                link.recv(at(peer), &mut inp, timeout)?;
                let mut v = all[me].clone();
                decode(&inp, &mut v);
                all[peer] = v;
            }
            Ok(())
        };
        let result = if bytes.len() <= INLINE_SEND_BYTES {
            send_all(tx).and_then(|()| recv_all(rx))
        } else {
            std::thread::scope(|sc| {
                let sent = sc.spawn(|| send_all(tx));
                let received = recv_all(rx);
                let sent = sent.join().unwrap_or_else(|_| {
                    Err(CommError::BadArgument("the sending thread panicked".into()))
                });
                received.and(sent)
            })
        };
        result.map_err(|e| self.check(e))?;
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
        let mut bytes = Vec::new();
        let mut inp = vec![0u8; buf.len() * T::BYTES];
        let mut other = buf.to_vec();
        let at = |step, peer| At {
            op: "all_reduce",
            algo: "doubling",
            step,
            peer,
        };
        // Extra ranks fold into ranks 0..n-p.
        if me >= p {
            bytes.clear();
            encode(buf, &mut bytes);
            let timeout = self.timeout;
            let r = self.tx(me - p)?.send(at(0, me - p), &bytes, timeout);
            r.map_err(|e| self.check(e))?;
            return self.recv_into(at(usize::MAX, me - p), me - p, buf, &mut inp);
        }
        if me + p < n {
            self.recv_into(at(0, me + p), me + p, &mut other, &mut inp)?;
            op.apply(buf, &other);
        }
        let mut d = 1;
        let mut step = 1;
        while d < p {
            let partner = me ^ d;
            bytes.clear();
            encode(buf, &mut bytes);
            self.exchange(at(step, partner), partner, &bytes, partner, &mut inp)?;
            decode(&inp, &mut other);
            if partner < me {
                // partner's value first
                let mine = buf.to_vec();
                buf.copy_from_slice(&other);
                op.apply(buf, &mine);
            } else {
                op.apply(buf, &other);
            }
            d *= 2;
            step += 1;
        }
        if me + p < n {
            bytes.clear();
            encode(buf, &mut bytes);
            let timeout = self.timeout;
            let r = self
                .tx(me + p)?
                .send(at(usize::MAX, me + p), &bytes, timeout);
            r.map_err(|e| self.check(e))?;
        }
        Ok(())
    }

    /// Receives `out.len()` values from `peer` (through `scratch`).
    fn recv_into<T: Element>(
        &mut self,
        at: At,
        peer: usize,
        out: &mut [T],
        scratch: &mut Vec<u8>,
    ) -> Result<(), CommError> {
        scratch.resize(out.len() * T::BYTES, 0);
        let timeout = self.timeout;
        let rx = self.rx[peer]
            .as_mut()
            .ok_or_else(|| CommError::BadArgument(format!("no link to rank {peer}")))?;
        let r = rx.recv(at, scratch, timeout);
        r.map_err(|e| self.check(e))?;
        decode(scratch, out);
        Ok(())
    }

    /// The reduce-scatter half of a ring: after `n - 1` steps this rank
    /// holds the whole reduction of chunk `rank + 1`.
    fn ring_reduce_scatter<T: Element>(
        &mut self,
        buf: &mut [T],
        chunk: &dyn Fn(usize) -> std::ops::Range<usize>,
        op: ReduceOp,
        name: &'static str,
    ) -> Result<(), CommError> {
        let n = self.size;
        let (left, right) = ((self.rank + n - 1) % n, (self.rank + 1) % n);
        let (mut out, mut inp, mut tmp) = (Vec::new(), Vec::new(), Vec::new());
        for step in 0..n - 1 {
            let send_c = (self.rank + n - step) % n;
            let recv_c = (self.rank + 2 * n - step - 1) % n;
            out.clear();
            encode(&buf[chunk(send_c)], &mut out);
            inp.resize(chunk(recv_c).len() * T::BYTES, 0);
            let at = At {
                op: name,
                algo: "ring",
                step,
                peer: right,
            };
            self.exchange(at, right, &out, left, &mut inp)?;
            // The incoming partial reduction first, then this rank's
            // value: every rank reduces a chunk in the same order.
            tmp.clear();
            tmp.extend(inp.chunks_exact(T::BYTES).map(T::get));
            op.apply(&mut tmp, &buf[chunk(recv_c)]);
            buf[chunk(recv_c)].copy_from_slice(&tmp);
        }
        Ok(())
    }

    /// The all-gather half of a ring: this rank holds chunk `have`; after
    /// `n - 1` steps it holds all.
    fn ring_gather<T: Element>(
        &mut self,
        buf: &mut [T],
        chunk: &dyn Fn(usize) -> std::ops::Range<usize>,
        have: usize,
        op: &'static str,
        step0: usize,
    ) -> Result<(), CommError> {
        let n = self.size;
        let (left, right) = ((self.rank + n - 1) % n, (self.rank + 1) % n);
        let (mut out, mut inp) = (Vec::new(), Vec::new());
        for step in 0..n - 1 {
            let send_c = (have + n - step) % n;
            let recv_c = (have + 2 * n - step - 1) % n;
            out.clear();
            encode(&buf[chunk(send_c)], &mut out);
            inp.resize(chunk(recv_c).len() * T::BYTES, 0);
            let at = At {
                op,
                algo: "ring",
                step: step0 + step,
                peer: right,
            };
            self.exchange(at, right, &out, left, &mut inp)?;
            decode(&inp, &mut buf[chunk(recv_c)]);
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
        let (mut bytes, mut inp) = (Vec::new(), vec![0u8; m * T::BYTES]);
        for step in 1..n {
            let (to, from) = ((me + step) % n, (me + n - step) % n);
            bytes.clear();
            encode(&input[to * m..(to + 1) * m], &mut bytes);
            let at = At {
                op: "all_to_all",
                algo: "pairwise",
                step,
                peer: to,
            };
            self.exchange(at, to, &bytes, from, &mut inp)?;
            decode(&inp, &mut out[from * m..(from + 1) * m]);
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
        let timeout = self.timeout;
        if self.rank == root {
            let mut bytes = Vec::new();
            encode(buf, &mut bytes);
            for peer in (0..self.size).filter(|&p| p != root) {
                let at = At {
                    op: "broadcast",
                    algo: "direct",
                    step: 0,
                    peer,
                };
                let r = self.tx(peer)?.send(at, &bytes, timeout);
                r.map_err(|e| self.check(e))?;
            }
        } else {
            let mut inp = vec![0u8; buf.len() * T::BYTES];
            let at = At {
                op: "broadcast",
                algo: "direct",
                step: 0,
                peer: root,
            };
            let rx = self.rx[root]
                .as_mut()
                .ok_or_else(|| CommError::BadArgument("no link to the root".into()))?;
            let r = rx.recv(at, &mut inp, timeout);
            r.map_err(|e| self.check(e))?;
            decode(&inp, buf);
        }
        Ok(())
    }

    /// Returns once every rank has called it (dissemination barrier).
    pub fn barrier(&mut self) -> Result<(), CommError> {
        let n = self.size;
        let mut dist = 1;
        let mut step = 0;
        while dist < n {
            let to = (self.rank + dist) % n;
            let from = (self.rank + n - dist) % n;
            let at = At {
                op: "barrier",
                algo: "dissemination",
                step,
                peer: to,
            };
            self.exchange(at, to, &[], from, &mut [])?;
            dist *= 2;
            step += 1;
        }
        Ok(())
    }
}
