//! The communicator: a rank's links to every other (made by the
//! `rendezvous` module), and the collectives over them, one
//! file per kind:
//!
//! - `allreduce`: Ring, Mesh, recursive Doubling, Rabenseifner's Halving
//!   and the choice among them (the cost model), plus the deterministic
//!   form;
//! - `hierarchical`: AllReduce over several hosts (leaders in a ring);
//! - `ring`: the two halves of a ring over any list of members, shared by
//!   AllReduce, ReduceScatter and AllGather;
//! - `gather`: AllGather, ReduceScatter, AllToAll;
//! - `tree`: Broadcast and Reduce by binomial trees;
//! - `shared_memory`: shared buffers and the one-pass AllReduce on them.
//!
//! Every algorithm reduces each value in the same order on every rank, so
//! all ranks end with the same bits. This file holds what they share: the
//! communicator, its send / receive / exchange moves (each naming the
//! operation, algorithm, step and peer in its errors), the barrier, the
//! calibration of the cost model.

use std::net::TcpStream;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bootstrap::Bootstrap;
use crate::cost::CostModel;
use crate::element::{Element, Payload};
use crate::error::{At, CommError};
use crate::link::{self, Rx, Sink, Tx};
use crate::reduce::ReduceOp;
use crate::rendezvous;

mod allreduce;
mod gather;
mod hierarchical;
mod ring;
mod shared_memory;
mod tree;

use crate::shared::SharedBuffer;
use crate::shm::Segment;
pub use allreduce::AllReduceAlgo;
pub use tree::BroadcastAlgo;

/// AllReduce messages up to this size go by Mesh or Doubling (one or
/// `log2 n` steps), larger ones by Ring.
const MESH_MAX_BYTES: usize = 8 << 10;

/// The algorithm `EXODUS_COMM_ALGO=op:name,op:name` names for `op`.
pub(crate) fn forced_algo(op: &str) -> Option<String> {
    let spec = std::env::var("EXODUS_COMM_ALGO").ok()?;
    spec.split(',')
        .filter_map(|part| part.trim().split_once(':'))
        .find(|(o, _)| *o == op)
        .map(|(_, name)| name.to_string())
}

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
    /// The model that picks algorithms; the same on every rank.
    cost: CostModel,
    /// Whether AllReduce fixes its reduction order (rank order) whatever
    /// the algorithm.
    deterministic: bool,
    /// `EXODUS_COMM_ALGO`'s AllReduce choice, read once at connect (as
    /// every setting of the job is).
    forced_all_reduce: Option<AllReduceAlgo>,
    /// The job spans several hosts and some host has more than one rank
    /// (then bandwidth AllReduces go hierarchical).
    layered: bool,
    /// Receive buffers of the small-message AllReduce, kept between calls
    /// so that the latency path allocates nothing (16-byte units: aligned
    /// for every element type).
    scratch: Vec<u128>,
}

impl Communicator {
    /// Joins the job `boot` describes; every operation (and the
    /// rendezvous itself) gives up after `timeout`. Ranks on one host talk
    /// through shared memory, others over TCP.
    ///
    /// The cost model that picks algorithms comes from the calibration
    /// file `EXODUS_COMM_CALIBRATION` names, else it is measured now (see
    /// [`calibrate`](Self::calibrate)).
    pub fn connect(boot: &Bootstrap, timeout: Duration) -> Result<Communicator, CommError> {
        let links = rendezvous::connect(boot, timeout)?;
        let mut comm = Communicator {
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
            cost: CostModel::SHARED_MEMORY,
            deterministic: std::env::var("EXODUS_COMM_DETERMINISTIC").is_ok_and(|v| v == "1"),
            forced_all_reduce: AllReduceAlgo::forced(),
            layered: false,
            scratch: Vec::new(),
        };
        let hosts = comm.hosts();
        comm.layered = hosts.len() > 1 && hosts.iter().any(|h| h.len() > 1);
        comm.cost = match std::env::var_os("EXODUS_COMM_CALIBRATION") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    CommError::Bootstrap(format!("EXODUS_COMM_CALIBRATION={path:?}: {e}"))
                })?;
                CostModel::parse(&text).map_err(|e| {
                    CommError::Bootstrap(format!("EXODUS_COMM_CALIBRATION={path:?}: {e}"))
                })?
            }
            None => comm.calibrate()?,
        };
        Ok(comm)
    }

    /// Measures the cost model's constants with this rank's ring
    /// neighbours (8-byte and 1 MiB exchanges, a 1 MiB reduction) and
    /// agrees on the slowest rank's values, so that every rank then picks
    /// the same algorithms. A collective: every rank calls it.
    pub fn calibrate(&mut self) -> Result<CostModel, CommError> {
        let n = self.size;
        if n < 2 {
            return Ok(CostModel::SHARED_MEMORY);
        }
        let (left, right) = ((self.rank + n - 1) % n, (self.rank + 1) % n);
        let at = |step| At {
            op: "calibrate",
            algo: "ring",
            step,
            peer: right,
        };
        let exchange = |comm: &mut Communicator, bytes: usize, times: usize| {
            let out = vec![0u8; bytes];
            let mut inp = vec![0u8; bytes];
            let start = std::time::Instant::now();
            for step in 0..times {
                comm.exchange(at(step), right, &out, left, Sink::bytes(&mut inp))?;
            }
            Ok::<f64, CommError>(start.elapsed().as_secs_f64() / times as f64)
        };
        const BIG: usize = 1 << 20;
        exchange(self, 8, 8)?;
        let alpha = exchange(self, 8, 32)?;
        exchange(self, BIG, 1)?;
        let big = exchange(self, BIG, 4)?;
        let beta = (big - alpha).max(big / 2.0) / BIG as f64;
        let mut acc = vec![1f32; BIG / 4];
        let x = vec![2f32; BIG / 4];
        let start = std::time::Instant::now();
        for _ in 0..4 {
            ReduceOp::Sum.apply(&mut acc, &x);
        }
        let gamma = start.elapsed().as_secs_f64() / 4.0 / BIG as f64;
        std::hint::black_box(&acc);
        let mut worst = [alpha, beta, gamma];
        self.all_reduce_with(&mut worst, ReduceOp::Max, AllReduceAlgo::Doubling)?;
        let floor = 1e-12;
        Ok(CostModel {
            alpha: worst[0].max(floor),
            beta: worst[1].max(floor),
            gamma: worst[2].max(floor),
        })
    }

    /// Deterministic mode (also `EXODUS_COMM_DETERMINISTIC=1`): every
    /// AllReduce algorithm reduces each value in rank order,
    /// `op(x[n-1], ... op(x[1], x[0]))`, so results are bit-identical
    /// whatever the algorithm the size or an override picks (and equal to
    /// [`all_reduce_shared`](Self::all_reduce_shared)'s). Ring and
    /// Halving then move the same bytes through a pairwise
    /// reduce-scatter; Doubling becomes Mesh. Every rank must set the same.
    pub fn set_deterministic(&mut self, on: bool) {
        self.deterministic = on;
    }

    /// Whether deterministic mode is on.
    pub fn deterministic(&self) -> bool {
        self.deterministic
    }

    /// How long every operation may wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes how long every operation may wait (a rank that idles until
    /// its peers have work, as a tensor-parallel worker does between
    /// steps, waits longer than a collective should).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The model that picks algorithms.
    pub fn cost_model(&self) -> CostModel {
        self.cost
    }

    /// Replaces the model that picks algorithms. Every rank must set the
    /// same one (ranks that pick different algorithms for one collective
    /// fail with a typed error or time out).
    pub fn set_cost_model(&mut self, cost: CostModel) {
        self.cost = cost;
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

    /// A trace span (category `comm`) for one collective: its name, bytes
    /// per rank, algorithm and the job's size, on this rank's timeline.
    fn span(&self, op: &'static str, bytes: usize, algo: &'static str) -> exodus_trace::SpanGuard {
        exodus_trace::span(op, "comm")
            .arg("bytes", bytes)
            .arg("algo", algo)
            .arg("rank", self.rank)
            .arg("ranks", self.size)
    }

    /// Every rank, in order (the ring of the whole job).
    fn everyone(&self) -> Vec<usize> {
        (0..self.size).collect()
    }

    /// The ranks of each host, hosts in order of their lowest rank, ranks
    /// in order within each.
    pub fn hosts(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for rank in 0..self.size {
            match groups
                .iter_mut()
                .find(|g| self.hosts[g[0]] == self.hosts[rank])
            {
                Some(g) => g.push(rank),
                None => groups.push(vec![rank]),
            }
        }
        groups
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

    /// Returns once every rank has called it (dissemination barrier).
    pub fn barrier(&mut self) -> Result<(), CommError> {
        let _span = self.span("barrier", 0, "dissemination");
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
