//! The rendezvous: how the ranks of a job find each other and connect.
//!
//! Rank 0 listens at the meeting point. Every other rank connects to it
//! (retrying until the timeout, since rank 0 may start last), says its
//! rank, the address it listens on and its host name; rank 0 answers each
//! with the whole table. That connection stays as the rank's link with
//! rank 0; every other pair connects directly (the higher rank dials the
//! lower), so the job ends with one TCP connection per pair.
//!
//! Host names give the topology. Each pair on one host then moves to
//! shared memory: the lower rank creates a segment and offers its path and
//! a random cookie over the pair's connection; the higher rank maps it,
//! checks the cookie and answers; the lower rank unlinks the file. A pair
//! whose segment cannot be shared (another `/dev/shm` behind the same host
//! name, as between containers) stays on TCP. `EXODUS_COMM_TRANSPORT=tcp`
//! keeps every pair on TCP.

use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::bootstrap::Bootstrap;
use crate::error::{At, CommError};
use crate::link::{Rx, Tx};
use crate::shm::{self, Segment};
use crate::tcp::{self, TcpRx, TcpTx};

/// Every pair connected over TCP.
struct TcpMesh {
    hosts: Vec<String>,
    tx: Vec<Option<TcpTx>>,
    rx: Vec<Option<TcpRx>>,
    sockets: Vec<TcpStream>,
}

/// The links of a rank to every other, and what abort needs.
#[derive(Debug)]
pub(crate) struct Links {
    /// Each rank's host name.
    pub(crate) hosts: Vec<String>,
    /// Sending halves, by peer (none for this rank).
    pub(crate) tx: Vec<Option<Tx>>,
    /// Receiving halves, by peer.
    pub(crate) rx: Vec<Option<Rx>>,
    /// A handle on every connection, to shut them down on abort.
    pub(crate) sockets: Vec<TcpStream>,
}

/// Joins the job `boot` describes: TCP between every pair, then shared
/// memory between the pairs of one host.
pub(crate) fn connect(boot: &Bootstrap, timeout: Duration) -> Result<Links, CommError> {
    let mesh = connect_tcp(boot, timeout)?;
    let shared = std::env::var("EXODUS_COMM_TRANSPORT").map_or(true, |t| t != "tcp");
    attach(boot.rank, boot.size, mesh, shared, timeout)
}

/// This machine's name (topology: ranks with the same name may share
/// memory); `EXODUS_COMM_HOST` overrides it, so that a test can put local
/// ranks on "separate hosts".
fn host_name() -> String {
    if let Some(name) = std::env::var("EXODUS_COMM_HOST")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return name;
    }
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

/// Meets the other ranks of the job `boot` describes and connects every
/// pair over TCP, giving up after `timeout`.
fn connect_tcp(boot: &Bootstrap, timeout: Duration) -> Result<TcpMesh, CommError> {
    let (rank, size) = (boot.rank, boot.size);
    let fail = |reason: String| CommError::Rendezvous { rank, size, reason };
    let deadline = Instant::now() + timeout;
    let mut tx: Vec<Option<TcpTx>> = (0..size).map(|_| None).collect();
    let mut rx: Vec<Option<TcpRx>> = (0..size).map(|_| None).collect();
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
                  tx: &mut Vec<Option<TcpTx>>,
                  rx: &mut Vec<Option<TcpRx>>,
                  sockets: &mut Vec<TcpStream>| {
        let clone = stream
            .try_clone()
            .map_err(|e| fail(format!("peer {peer}: {e}")))?;
        sockets.push(clone);
        let (t, r) = tcp::split(stream).map_err(|e| fail(format!("peer {peer}: {e}")))?;
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
                    let (t, mut r) = tcp::split(s.try_clone().map_err(|e| fail(e.to_string()))?)
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
        let (mut t, mut r) = tcp::split(stream.try_clone().map_err(|e| fail(e.to_string()))?)
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
    Ok(TcpMesh {
        hosts: table.into_iter().map(|(_, h)| h).collect(),
        tx,
        rx,
        sockets,
    })
}

/// A random 64-bit value (the std hasher's per-process random keys, mixed
/// with the time and the arguments).
pub(crate) fn random_u64(a: usize, b: usize) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(a);
    h.write_usize(b);
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Turns the TCP mesh into the rank's links, moving the pairs of one host
/// onto shared memory (see the [module docs](self)) when `shared`.
fn attach(
    rank: usize,
    size: usize,
    mesh: TcpMesh,
    shared: bool,
    timeout: Duration,
) -> Result<Links, CommError> {
    let TcpMesh {
        hosts,
        mut tx,
        mut rx,
        sockets,
    } = mesh;
    let fail = |reason: String| CommError::Rendezvous { rank, size, reason };
    let at = |peer: usize| At {
        op: "rendezvous",
        algo: "shm",
        step: 0,
        peer,
    };
    let local: Vec<usize> = (0..size)
        .filter(|&p| shared && p != rank && hosts[p] == hosts[rank])
        .collect();
    // 1. Offer a segment to every higher local rank (an empty path when
    //    none could be made: that pair stays on TCP).
    let mut offered = Vec::new();
    for &p in local.iter().filter(|&&p| p > rank) {
        let cookie = random_u64(rank, p);
        let (segment, path) = match Segment::create(cookie, shm::LINK_BYTES) {
            Ok((s, path)) => (Some(s), path.to_string_lossy().into_owned()),
            Err(_) => (None, String::new()),
        };
        let mut offer = cookie.to_le_bytes().to_vec();
        offer.extend_from_slice(path.as_bytes());
        let t = tx[p]
            .as_mut()
            .ok_or_else(|| fail(format!("no connection to rank {p}")))?;
        t.send(at(p), &(offer.len() as u64).to_le_bytes(), timeout)?;
        t.send(at(p), &offer, timeout)?;
        offered.push((p, segment, path));
    }
    // 2. Map what every lower local rank offers, and answer.
    let mut accepted = Vec::new();
    for &p in local.iter().filter(|&&p| p < rank) {
        let r = rx[p]
            .as_mut()
            .ok_or_else(|| fail(format!("no connection to rank {p}")))?;
        let mut len = [0u8; 8];
        r.recv(at(p), &mut len, timeout)?;
        let len = u64::from_le_bytes(len) as usize;
        if !(8..=8 + 4096).contains(&len) {
            return Err(fail(format!(
                "rank {p} offered a segment of {len} bytes of description"
            )));
        }
        let mut offer = vec![0u8; len];
        r.recv(at(p), &mut offer, timeout)?;
        let cookie = u64::from_le_bytes(offer[..8].try_into().unwrap_or_default());
        let path = String::from_utf8_lossy(&offer[8..]).into_owned();
        let segment = (!path.is_empty())
            .then(|| Segment::open(std::path::Path::new(&path), cookie, shm::LINK_BYTES).ok())
            .flatten();
        let t = tx[p]
            .as_mut()
            .ok_or_else(|| fail(format!("no connection to rank {p}")))?;
        t.send(at(p), &[u8::from(segment.is_some())], timeout)?;
        accepted.push((p, segment));
    }
    // 3. Hear the answers; the files go either way.
    let mut segments = Vec::new();
    for (p, segment, path) in offered {
        let r = rx[p]
            .as_mut()
            .ok_or_else(|| fail(format!("no connection to rank {p}")))?;
        let mut ok = [0u8];
        let answer = r.recv(at(p), &mut ok, timeout);
        if !path.is_empty() {
            let _ = std::fs::remove_file(&path);
        }
        answer?;
        if let (Some(segment), 1) = (segment, ok[0]) {
            segments.push((p, segment, true));
        }
    }
    segments.extend(
        accepted
            .into_iter()
            .filter_map(|(p, s)| s.map(|s| (p, s, false))),
    );
    // 4. Those pairs now talk through their segments; their connections
    //    stay open, idle, to tell whether the peer is alive.
    let mut links_tx: Vec<Option<Tx>> = tx.iter_mut().map(|t| t.take().map(Tx::Tcp)).collect();
    let mut links_rx: Vec<Option<Rx>> = rx.iter_mut().map(|r| r.take().map(Rx::Tcp)).collect();
    for (p, segment, lower) in segments {
        let Some(Tx::Tcp(t)) = links_tx[p].take() else {
            return Err(fail(format!("no connection to rank {p}")));
        };
        let probe = || -> std::io::Result<TcpStream> {
            let s = t.stream().try_clone()?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let (probe_tx, probe_rx) = probe()
            .and_then(|a| Ok((a, probe()?)))
            .map_err(|e| fail(format!("rank {p}: {e}")))?;
        let (stx, srx) = shm::halves(segment, lower);
        links_tx[p] = Some(Tx::Shm(stx, probe_tx));
        links_rx[p] = Some(Rx::Shm(srx, probe_rx));
    }
    Ok(Links {
        hosts,
        tx: links_tx,
        rx: links_rx,
        sockets,
    })
}
