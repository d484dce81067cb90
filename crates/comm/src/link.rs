//! A link to one peer, over TCP or, when the peer shares this host, over
//! shared memory; and the three moves the collectives are made of (send,
//! receive, and the exchange of a ring step), each bounded by the
//! operation's timeout and each naming the peer when it fails.
//!
//! A shared-memory exchange is one loop that pushes the outgoing frame and
//! pulls the incoming one piece by piece, so no thread is needed and the
//! incoming values are reduced straight out of the ring. While nothing
//! moves it spins, then yields, then sleeps, and now and then checks the
//! deadline and whether the peers are alive: a shared-memory pair keeps its
//! TCP connection, idle, and the kernel closes it when the peer dies.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::element::{Element, Payload};
use crate::error::{At, CommError};
use crate::reduce::ReduceOp;
use crate::shm::{Incoming, Outgoing, ShmRx, ShmTx};
use crate::tcp::{self, TcpRx, TcpTx};

/// Messages up to this size are sent before receiving, without a helper
/// thread, on TCP (well below the smallest default socket buffer).
pub(crate) const INLINE_SEND_BYTES: usize = 8 << 10;

/// The sending half of a link.
#[derive(Debug)]
pub(crate) enum Tx {
    /// Over TCP.
    Tcp(TcpTx),
    /// Over shared memory; the pair's idle TCP connection tells whether
    /// the peer is alive.
    Shm(ShmTx, TcpStream),
}

/// The receiving half of a link.
#[derive(Debug)]
pub(crate) enum Rx {
    /// Over TCP.
    Tcp(TcpRx),
    /// Over shared memory, with the pair's idle TCP connection.
    Shm(ShmRx, TcpStream),
}

impl Tx {
    /// `tcp` or `shm`.
    pub(crate) fn transport(&self) -> &'static str {
        match self {
            Tx::Tcp(_) => "tcp",
            Tx::Shm(..) => "shm",
        }
    }
}

/// Reduces incoming wire bytes into a destination's bytes by an op (a
/// [`ReduceOp::apply_bytes`] for one element type).
type ReduceBytes = fn(ReduceOp, &mut [u8], &[u8]);

/// Where received values go: stored, or reduced into what is there.
pub(crate) struct Sink<'a> {
    dst: &'a mut [u8],
    elem: usize,
    reduce: Option<(ReduceOp, ReduceBytes)>,
}

impl<'a> Sink<'a> {
    /// Stores the values in `dst` (byte by byte: a copy needs no whole
    /// elements).
    pub(crate) fn copy<T: Payload>(dst: &'a mut [T]) -> Sink<'a> {
        Sink {
            dst: bytemuck::cast_slice_mut(dst),
            elem: 1,
            reduce: None,
        }
    }

    /// Stores raw bytes.
    pub(crate) fn bytes(dst: &'a mut [u8]) -> Sink<'a> {
        Sink {
            dst,
            elem: 1,
            reduce: None,
        }
    }

    /// `dst[i] = op(incoming[i], dst[i])`.
    pub(crate) fn reduce<T: Element>(dst: &'a mut [T], op: ReduceOp) -> Sink<'a> {
        Sink {
            dst: bytemuck::cast_slice_mut(dst),
            elem: T::BYTES,
            reduce: Some((op, ReduceOp::apply_bytes::<T>)),
        }
    }

    /// Handles the payload bytes at `offset`.
    fn take(&mut self, offset: usize, piece: &[u8]) {
        let dst = &mut self.dst[offset..offset + piece.len()];
        match self.reduce {
            None => dst.copy_from_slice(piece),
            Some((op, f)) => f(op, dst, piece),
        }
    }

    /// Receives over TCP into the sink.
    fn recv_tcp(&mut self, rx: &mut TcpRx, at: At, timeout: Duration) -> Result<(), CommError> {
        if self.reduce.is_none() {
            return rx.recv(at, self.dst, timeout);
        }
        let mut scratch = vec![0u8; self.dst.len()];
        rx.recv(at, &mut scratch, timeout)?;
        self.take(0, &scratch);
        Ok(())
    }
}

/// Why a wait ended early.
enum Stopped {
    TimedOut,
    /// The peer on this side (0: the receive, 1: the send) closed its
    /// connection.
    Gone(usize, String),
}

/// Backs off while a shared-memory move makes no progress, and watches
/// the deadline and the peers.
struct Waiter {
    deadline: Instant,
    idle: u32,
    /// When the current idle stretch began (set when it reaches the
    /// naps).
    napping_since: Option<Instant>,
}

impl Waiter {
    /// Spins this many idle rounds, then yields.
    const SPINS: u32 = 64;
    /// Then yields this many, then sleeps.
    const YIELDS: u32 = 2048;
    /// Sleep of an idle round beyond those...
    const NAP: Duration = Duration::from_micros(50);
    /// ...and once the wait has lasted this long (a peer with nothing to
    /// send, such as a tensor-parallel worker between requests), a longer
    /// one, so an idle rank costs next to no CPU; the first message after
    /// such a pause waits at most this much longer.
    const LONG_IDLE: Duration = Duration::from_millis(20);
    const LONG_NAP: Duration = Duration::from_millis(1);

    fn new(timeout: Duration) -> Waiter {
        Waiter {
            deadline: Instant::now() + timeout,
            idle: 0,
            napping_since: None,
        }
    }

    fn progressed(&mut self) {
        self.idle = 0;
        self.napping_since = None;
    }

    /// One idle round; every so often checks the deadline and `probes`
    /// (the peers' connections, receive side first).
    fn pause(&mut self, probes: [Option<&TcpStream>; 2]) -> Result<(), Stopped> {
        self.idle = self.idle.saturating_add(1);
        let sleeping = self.idle > Self::SPINS + Self::YIELDS;
        if self.idle <= Self::SPINS {
            std::hint::spin_loop();
        } else if !sleeping {
            std::thread::yield_now();
        } else {
            let since = *self.napping_since.get_or_insert_with(Instant::now);
            std::thread::sleep(if since.elapsed() < Self::LONG_IDLE {
                Self::NAP
            } else {
                Self::LONG_NAP
            });
        }
        if sleeping || self.idle.is_multiple_of(64) {
            for (side, probe) in probes.iter().enumerate() {
                if let Some(stream) = probe {
                    tcp::probe(stream).map_err(|detail| Stopped::Gone(side, detail))?;
                }
            }
            if Instant::now() > self.deadline {
                return Err(Stopped::TimedOut);
            }
        }
        Ok(())
    }
}

/// Moves an outgoing frame into `tx` and an incoming one out of `rx` (each
/// optional) until both are done, over shared memory.
fn shm_progress(
    mut send: Option<(&mut ShmTx, &TcpStream, At, &[u8])>,
    mut recv: Option<(&mut ShmRx, &TcpStream, At, &mut Sink<'_>)>,
    timeout: Duration,
) -> Result<(), CommError> {
    let mut out = send.as_ref().map(|(_, _, _, data)| Outgoing::new(data));
    let mut inc = recv
        .as_ref()
        .map(|(_, _, _, sink)| Incoming::new(sink.dst.len(), sink.elem));
    let want_len = recv.as_ref().map_or(0, |(.., sink)| sink.dst.len());
    let mut waiter = Waiter::new(timeout);
    let mut stopped: Option<Stopped> = None;
    loop {
        let mut moved = false;
        if let (Some((tx, ..)), Some(out)) = (send.as_mut(), out.as_mut()) {
            moved |= tx.push(out);
        }
        if let (Some((rx, _, at, sink)), Some(inc)) = (recv.as_mut(), inc.as_mut()) {
            moved |= rx
                .pull(inc, &mut |offset, piece| sink.take(offset, piece))
                .map_err(|bad| CommError::Mismatch {
                    at: at.clone(),
                    want_seq: bad.want_seq,
                    want_len: want_len as u64,
                    got_seq: bad.got_seq,
                    got_len: bad.got_len,
                })?;
        }
        let sent = out.as_ref().is_none_or(Outgoing::done);
        let received = inc.as_ref().is_none_or(Incoming::done);
        if sent && received {
            return Ok(());
        }
        if moved {
            waiter.progressed();
            stopped = None;
            continue;
        }
        let recv_at = recv
            .as_ref()
            .filter(|_| !received)
            .map(|(_, s, at, _)| (*s, at));
        let send_at = send
            .as_ref()
            .filter(|_| !sent)
            .map(|(_, s, at, _)| (*s, at));
        if let Some(stop) = stopped.take() {
            // Nothing moved in the round after the stop (what a peer wrote
            // before it exited is still in the ring, and that round took
            // it): the stop stands. The wait is named after the receive
            // when there is one, as a stuck peer stops sending first.
            let waiting_on = |side: usize| {
                let (first, second) = if side == 0 {
                    (recv_at, send_at)
                } else {
                    (send_at, recv_at)
                };
                first
                    .or(second)
                    .map(|(_, at)| at.clone())
                    .unwrap_or_else(|| At {
                        op: "shm",
                        algo: "direct",
                        step: 0,
                        peer: usize::MAX,
                    })
            };
            return Err(match stop {
                Stopped::TimedOut => CommError::Timeout {
                    at: waiting_on(0),
                    timeout,
                },
                Stopped::Gone(side, detail) => CommError::PeerGone {
                    at: waiting_on(side),
                    detail,
                },
            });
        }
        if let Err(stop) = waiter.pause([recv_at.map(|(s, _)| s), send_at.map(|(s, _)| s)]) {
            stopped = Some(stop);
        }
    }
}

impl Tx {
    /// Sends one message.
    pub(crate) fn send(&mut self, at: At, data: &[u8], timeout: Duration) -> Result<(), CommError> {
        match self {
            Tx::Tcp(tx) => tx.send(at, data, timeout),
            Tx::Shm(tx, probe) => shm_progress(Some((tx, &*probe, at, data)), None, timeout),
        }
    }
}

impl Rx {
    /// Receives one message of exactly the sink's size into the sink.
    pub(crate) fn recv(
        &mut self,
        at: At,
        mut sink: Sink<'_>,
        timeout: Duration,
    ) -> Result<(), CommError> {
        match self {
            Rx::Tcp(rx) => sink.recv_tcp(rx, at, timeout),
            Rx::Shm(rx, probe) => shm_progress(None, Some((rx, &*probe, at, &mut sink)), timeout),
        }
    }
}

/// Sends `out` on `tx` while receiving into `sink` from `rx` (a ring
/// step): one loop over shared memory; over TCP, small messages go first
/// (the socket buffer takes them whole) and large ones from a scoped
/// thread, so no two ranks wait on each other.
pub(crate) fn exchange(
    tx: &mut Tx,
    send_at: At,
    out: &[u8],
    rx: &mut Rx,
    recv_at: At,
    mut sink: Sink<'_>,
    timeout: Duration,
) -> Result<(), CommError> {
    if let (Tx::Shm(tx, tx_probe), Rx::Shm(rx, rx_probe)) = (&mut *tx, &mut *rx) {
        return shm_progress(
            Some((tx, &*tx_probe, send_at, out)),
            Some((rx, &*rx_probe, recv_at, &mut sink)),
            timeout,
        );
    }
    if out.len() <= INLINE_SEND_BYTES {
        tx.send(send_at, out, timeout)?;
        return rx.recv(recv_at, sink, timeout);
    }
    std::thread::scope(|s| {
        let sent = s.spawn(|| tx.send(send_at, out, timeout));
        let received = rx.recv(recv_at, sink, timeout);
        let sent = sent
            .join()
            .unwrap_or_else(|_| Err(CommError::BadArgument("the sending thread panicked".into())));
        received.and(sent)
    })
}
