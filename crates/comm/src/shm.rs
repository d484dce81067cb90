//! Shared-memory links between two ranks of one host.
//!
//! # Layout
//!
//! Each pair of ranks on a host shares one segment: a file in `/dev/shm`
//! that the lower rank creates and the higher rank maps, after which it is
//! unlinked, so nothing is left behind even when a rank is killed. The
//! segment holds a header page (a magic number and a random cookie, which
//! the higher rank checks) and two rings, one per direction.
//!
//! A ring is a single-producer, single-consumer byte queue of
//! [`RING_BYTES`]: the producer owns `tail`, the consumer owns `head` (both
//! count bytes since the start, and sit on cache lines of their own).
//! Messages are framed as on the TCP links (sequence number and length,
//! both checked on arrival), and each frame starts on a 16-byte boundary,
//! so a payload is aligned for any element type.
//!
//! # Small frames: the slot
//!
//! A ring frame takes two cache-line transfers to be seen: the consumer
//! first sees the new `tail`, then fetches the line the frame is in. For
//! the smallest messages (AllReduce of a few values, barriers, flags) that
//! is most of the latency, so each direction also has a slot: one cache
//! line in the control page holding a stamp (the frame's sequence number
//! plus one; 0 is empty), the length and up to [`SLOT_PAYLOAD`] bytes. The
//! producer writes length and payload, then the stamp (release); the
//! consumer, which polls the slot first, sees the whole frame in one
//! transfer, takes it, and stores the stamp in the slot's `ack` word (on a
//! line of its own), which frees the slot for the producer's next small
//! frame. A small frame goes to the ring instead when the slot is still
//! taken. Frames are taken in sequence order whichever way they came: the
//! consumer only takes a slot frame whose stamp is the next sequence
//! number, and a ring frame must carry that number as before. Before it
//! takes a ring frame's first bytes it looks in the slot once more: the
//! producer filled the slot before it published any later ring frame, so
//! an earlier slot frame is visible by then. The slot is
//! never written with anything but slot frames, so stale bytes there can
//! only be an older stamp, never a forged one.
//!
//! # Progress
//!
//! Nothing here blocks or waits: [`ShmTx::push`] writes as much of an
//! outgoing frame as fits, [`ShmRx::pull`] hands over as much of an
//! incoming frame as has arrived, each at most [`PIECE`] bytes per call so
//! that a rank that sends and receives at once (a ring step) interleaves
//! the two and the peer can start on the first bytes early. The caller
//! (`link.rs`) loops, waits, and enforces the timeout.
//!
//! # Safety
//!
//! The unsafe code of the crate is all here: two words of the map viewed
//! as atomics, and bytes copied in and out of a ring's data area. The
//! protocol gives every byte of a data area one side at a time: the
//! producer writes only `[tail, head + RING_BYTES)`, the consumer reads
//! only `[head, tail)`, and each publishes its counter with release and
//! reads the other's with acquire. Counters read from the peer are clamped
//! and every offset is taken modulo the ring, so a misbehaving peer can
//! garble a message (which the frame check reports) but cannot make this
//! process touch memory outside the map.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::tcp::FRAME_HEADER;

/// Bytes of a ring's data area (per direction).
pub(crate) const RING_BYTES: usize = 1 << 20;
/// Most bytes one `push` or `pull` moves before returning.
pub(crate) const PIECE: usize = 64 << 10;
/// Frames start at multiples of this.
const FRAME_ALIGN: usize = 16;
/// A frame that starts this far into the ring, with the rest of the ring
/// free, is preceded by a skip to the ring's start: small messages then
/// keep reusing the first lines of the ring, which stay in the caches of
/// both cores, instead of walking cold lines through the whole ring.
const HOT_BYTES: usize = 16 << 10;
/// The sequence number of a skip frame (its length is the bytes skipped).
const SKIP: u64 = u64::MAX;
/// The header page, and each ring's control page.
const PAGE: usize = 4096;
/// "exodusSM".
const MAGIC: u64 = u64::from_le_bytes(*b"exodusSM");
/// Offsets in the header page.
const MAGIC_AT: usize = 0;
const COOKIE_AT: usize = 8;
/// Offsets in a ring's control page (128 bytes apart: separate cache
/// lines, and no adjacent-line prefetch pairing them): the ring's counters,
/// the slot (stamp, length, payload: one 64-byte line) and its ack.
const TAIL_AT: usize = 0;
const HEAD_AT: usize = 128;
const SLOT_AT: usize = 256;
const SLOT_LEN_AT: usize = SLOT_AT + 8;
const SLOT_DATA_AT: usize = SLOT_AT + 16;
const SLOT_ACK_AT: usize = 384;
/// Most payload bytes a slot frame carries.
pub(crate) const SLOT_PAYLOAD: usize = 48;
/// The payload of a link's segment: two rings, each a control page and
/// its data area.
pub(crate) const LINK_BYTES: usize = 2 * (PAGE + RING_BYTES);

/// Where ring `ring` (0: lower rank to higher, 1: back) starts.
fn ring_base(ring: usize) -> usize {
    PAGE + ring * (PAGE + RING_BYTES)
}

/// The directory for segments: `/dev/shm` where it exists (memory, not
/// disk), else the temporary directory.
fn segment_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A mapped segment shared by ranks of one host: a header page, then the
/// payload (a link's two rings, or a shared buffer).
#[derive(Debug)]
pub(crate) struct Segment {
    map: MmapRaw,
    /// Bytes mapped: the header page and the payload.
    bytes: usize,
}

impl Segment {
    /// Creates and maps a new segment of `payload` bytes (zeroed) named
    /// after this process and `cookie`; returns it and its path (for the
    /// peers, and to unlink once they have mapped it).
    pub(crate) fn create(cookie: u64, payload: usize) -> io::Result<(Segment, PathBuf)> {
        let bytes = PAGE + payload.next_multiple_of(PAGE);
        let path = segment_dir().join(format!("exodus-comm-{}-{cookie:016x}", std::process::id()));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        let mapped = file
            .set_len(bytes as u64)
            .and_then(|()| MmapOptions::new().len(bytes).map_raw(&file));
        let map = match mapped {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let segment = Segment { map, bytes };
        segment.word(COOKIE_AT).store(cookie, Ordering::Relaxed);
        segment.word(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok((segment, path))
    }

    /// Maps the segment of `payload` bytes at `path` that a peer created
    /// with `cookie` (checked, with the size and the magic number).
    pub(crate) fn open(path: &Path, cookie: u64, payload: usize) -> io::Result<Segment> {
        let bytes = PAGE + payload.next_multiple_of(PAGE);
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len != bytes as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds {len} bytes, not {bytes}", path.display()),
            ));
        }
        let segment = Segment {
            map: MmapOptions::new().len(bytes).map_raw(&file)?,
            bytes,
        };
        let (magic, got) = (
            segment.word(MAGIC_AT).load(Ordering::Acquire),
            segment.word(COOKIE_AT).load(Ordering::Relaxed),
        );
        if magic != MAGIC || got != cookie {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not the segment the peer created", path.display()),
            ));
        }
        Ok(segment)
    }

    /// The 8-byte word at `offset`, as an atomic.
    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.bytes);
        // SAFETY: the word lies inside the map (checked above), is 8-byte
        // aligned (the map starts on a page), and the map lives as long as
        // `&self`. Both processes only ever access it atomically.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset).cast::<u64>()) }
    }

    /// The first byte of ring `ring`'s data area (of a link's segment).
    fn data(&self, ring: usize) -> *mut u8 {
        // In bounds: ring_base(1) + PAGE + RING_BYTES == PAGE + LINK_BYTES.
        debug_assert!(self.bytes >= PAGE + LINK_BYTES);
        self.map.as_mut_ptr().wrapping_add(ring_base(ring) + PAGE)
    }

    /// The slot payload of ring `ring` (of a link's segment).
    fn slot_data(&self, ring: usize) -> *mut u8 {
        debug_assert!(self.bytes >= PAGE + LINK_BYTES);
        self.map
            .as_mut_ptr()
            .wrapping_add(ring_base(ring) + SLOT_DATA_AT)
    }

    /// The first byte of the payload (page-aligned), and its length.
    pub(crate) fn payload(&self) -> (*mut u8, usize) {
        (self.map.as_mut_ptr().wrapping_add(PAGE), self.bytes - PAGE)
    }
}

/// The two halves of a segment for one side: `lower` is whether this rank
/// is the lower of the pair (it sends on ring 0 and receives on ring 1).
pub(crate) fn halves(segment: Segment, lower: bool) -> (ShmTx, ShmRx) {
    let segment = Arc::new(segment);
    let (send_ring, recv_ring) = if lower { (0, 1) } else { (1, 0) };
    (
        ShmTx {
            segment: segment.clone(),
            ring: send_ring,
            tail: 0,
            head_seen: 0,
            seq: 0,
            slot_stamp: 0,
            slot_ack_seen: 0,
        },
        ShmRx {
            segment,
            ring: recv_ring,
            head: 0,
            tail_seen: 0,
            seq: 0,
        },
    )
}

/// The sending half: producer of one ring.
#[derive(Debug)]
pub(crate) struct ShmTx {
    segment: Arc<Segment>,
    ring: usize,
    /// Bytes written so far (this side's counter).
    tail: u64,
    /// The consumer's counter as last read.
    head_seen: u64,
    /// Sequence number of the next frame.
    seq: u64,
    /// Stamp of the last frame put in the slot (0: none yet).
    slot_stamp: u64,
    /// The consumer's slot ack as last read.
    slot_ack_seen: u64,
}

/// The receiving half: consumer of the other ring.
#[derive(Debug)]
pub(crate) struct ShmRx {
    segment: Arc<Segment>,
    ring: usize,
    /// Bytes consumed so far (this side's counter).
    head: u64,
    /// The producer's counter as last read.
    tail_seen: u64,
    /// Sequence number of the next frame.
    seq: u64,
}

/// An outgoing frame and how much of it is in the ring.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    header: [u8; FRAME_HEADER],
    data: &'a [u8],
    pos: usize,
}

impl<'a> Outgoing<'a> {
    /// The frame of `data` (its sequence number is set by the first push).
    pub(crate) fn new(data: &'a [u8]) -> Outgoing<'a> {
        let mut header = [0u8; FRAME_HEADER];
        header[8..].copy_from_slice(&(data.len() as u64).to_le_bytes());
        Outgoing {
            header,
            data,
            pos: 0,
        }
    }

    fn total(&self) -> usize {
        FRAME_HEADER + self.data.len().next_multiple_of(FRAME_ALIGN)
    }

    /// Whether the whole frame is in the ring.
    pub(crate) fn done(&self) -> bool {
        self.pos == self.total()
    }
}

/// An expected incoming frame and how much of it has been taken.
#[derive(Debug)]
pub(crate) struct Incoming {
    header: [u8; FRAME_HEADER],
    len: usize,
    elem: usize,
    pos: usize,
    /// Bytes of a skip frame still to pass before the header.
    skip: usize,
}

impl Incoming {
    /// A frame of `len` payload bytes, handed over in whole elements of
    /// `elem` bytes (a divisor of 16).
    pub(crate) fn new(len: usize, elem: usize) -> Incoming {
        debug_assert!(elem > 0 && FRAME_ALIGN.is_multiple_of(elem));
        Incoming {
            header: [0; FRAME_HEADER],
            len,
            elem,
            pos: 0,
            skip: 0,
        }
    }

    fn total(&self) -> usize {
        FRAME_HEADER + self.len.next_multiple_of(FRAME_ALIGN)
    }

    /// Whether the whole frame has been taken.
    pub(crate) fn done(&self) -> bool {
        self.pos == self.total()
    }
}

/// A frame header that is not the one expected.
#[derive(Debug)]
pub(crate) struct BadFrame {
    pub(crate) want_seq: u64,
    pub(crate) got_seq: u64,
    pub(crate) got_len: u64,
}

impl ShmTx {
    fn tail_word(&self) -> &AtomicU64 {
        self.segment.word(ring_base(self.ring) + TAIL_AT)
    }

    fn head_word(&self) -> &AtomicU64 {
        self.segment.word(ring_base(self.ring) + HEAD_AT)
    }

    /// Free bytes, re-reading the consumer's counter when fewer than
    /// `want` seem free.
    fn free(&mut self, want: usize) -> usize {
        let free =
            |head: u64, tail: u64| RING_BYTES.saturating_sub(tail.wrapping_sub(head) as usize);
        if free(self.head_seen, self.tail) < want {
            self.head_seen = self.head_word().load(Ordering::Acquire);
        }
        // A head ahead of the tail (only a broken peer writes one) wraps to
        // a huge "used": no free space, and the operation times out.
        free(self.head_seen, self.tail)
    }

    /// Copies what fits of `src` (at most [`PIECE`]) and publishes it;
    /// `None` advances over `len` bytes of padding instead. Returns the
    /// bytes moved.
    fn put(&mut self, src: Option<&[u8]>, len: usize) -> usize {
        let n = len.min(PIECE).min(self.free(len.min(PIECE)));
        if n == 0 {
            return 0;
        }
        if let Some(src) = src {
            let off = (self.tail % RING_BYTES as u64) as usize;
            let first = n.min(RING_BYTES - off);
            let data = self.segment.data(self.ring);
            // SAFETY: `off + first <= RING_BYTES` and `n - first <=
            // RING_BYTES`, so both copies stay in this ring's data area;
            // those bytes are free (`n <= free`), which the consumer does
            // not read until the tail below is published; `src` holds at
            // least `n` bytes and is not in the map.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(off), first);
                std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, n - first);
            }
        }
        self.tail += n as u64;
        self.tail_word().store(self.tail, Ordering::Release);
        n
    }

    /// Moves what fits of `out` into the ring (at most about [`PIECE`]
    /// bytes); whether anything moved.
    pub(crate) fn push(&mut self, out: &mut Outgoing<'_>) -> bool {
        if out.pos == 0 && self.put_in_slot(out.data) {
            out.pos = out.total();
            self.seq += 1;
            return true;
        }
        let mut moved = 0;
        if out.pos == 0 {
            out.header[..8].copy_from_slice(&self.seq.to_le_bytes());
            let off = (self.tail % RING_BYTES as u64) as usize;
            let gap = RING_BYTES - off;
            if off >= HOT_BYTES && self.free(RING_BYTES) == RING_BYTES {
                // The ring is empty: start this frame at the ring's start.
                let mut skip = [0u8; FRAME_HEADER];
                skip[..8].copy_from_slice(&SKIP.to_le_bytes());
                skip[8..].copy_from_slice(&((gap - FRAME_HEADER) as u64).to_le_bytes());
                let written = self.put(Some(&skip), FRAME_HEADER);
                debug_assert_eq!(written, FRAME_HEADER);
                let mut left = gap - written;
                while left > 0 {
                    let n = self.put(None, left);
                    debug_assert!(n > 0);
                    left -= n;
                }
                moved += gap;
            }
        }
        while !out.done() && moved < PIECE {
            let n = if out.pos < FRAME_HEADER {
                let header = out.header;
                self.put(Some(&header[out.pos..]), FRAME_HEADER - out.pos)
            } else if out.pos < FRAME_HEADER + out.data.len() {
                let rest = &out.data[out.pos - FRAME_HEADER..];
                self.put(Some(rest), rest.len())
            } else {
                self.put(None, out.total() - out.pos)
            };
            if n == 0 {
                break;
            }
            out.pos += n;
            moved += n;
        }
        if moved > 0 && out.done() {
            self.seq += 1;
        }
        moved > 0
    }
}

impl ShmTx {
    /// Puts `data` in the slot as the frame of the current sequence number,
    /// if it fits and the consumer has taken the slot's last frame.
    fn put_in_slot(&mut self, data: &[u8]) -> bool {
        if data.len() > SLOT_PAYLOAD {
            return false;
        }
        let ring = ring_base(self.ring);
        if self.slot_ack_seen != self.slot_stamp {
            self.slot_ack_seen = self
                .segment
                .word(ring + SLOT_ACK_AT)
                .load(Ordering::Acquire);
            if self.slot_ack_seen != self.slot_stamp {
                return false;
            }
        }
        let stamp = self.seq + 1;
        self.segment
            .word(ring + SLOT_LEN_AT)
            .store(data.len() as u64, Ordering::Relaxed);
        // SAFETY: `data.len() <= SLOT_PAYLOAD`, the slot's payload area
        // inside this ring's control page; the consumer has acknowledged
        // the slot's last frame (acquire above) and reads the slot again
        // only after the stamp below is published.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.segment.slot_data(self.ring),
                data.len(),
            )
        };
        self.segment
            .word(ring + SLOT_AT)
            .store(stamp, Ordering::Release);
        self.slot_stamp = stamp;
        true
    }
}

impl ShmRx {
    /// Takes the next frame from the slot if it is there: `Ok(true)` with
    /// the payload handed to `take`, `Ok(false)` when the slot holds no
    /// frame of this sequence number, `Err` when it holds one of another
    /// length than `inc` expects.
    fn take_from_slot(
        &mut self,
        inc: &mut Incoming,
        take: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<bool, BadFrame> {
        let ring = ring_base(self.ring);
        let stamp = self.seq + 1;
        if self.segment.word(ring + SLOT_AT).load(Ordering::Acquire) != stamp {
            return Ok(false);
        }
        let len = self
            .segment
            .word(ring + SLOT_LEN_AT)
            .load(Ordering::Relaxed);
        // A slot frame longer than the slot only comes from a broken peer.
        if len != inc.len as u64 || inc.len > SLOT_PAYLOAD {
            return Err(BadFrame {
                want_seq: self.seq,
                got_seq: self.seq,
                got_len: len,
            });
        }
        // SAFETY: `inc.len <= SLOT_PAYLOAD` (checked above): inside the
        // slot's payload area. The producer wrote it before the stamp
        // (acquire above) and does not write the slot again until the ack
        // below.
        let payload =
            unsafe { std::slice::from_raw_parts(self.segment.slot_data(self.ring), inc.len) };
        take(0, payload);
        self.segment
            .word(ring + SLOT_ACK_AT)
            .store(stamp, Ordering::Release);
        inc.pos = inc.total();
        self.seq += 1;
        Ok(true)
    }

    fn tail_word(&self) -> &AtomicU64 {
        self.segment.word(ring_base(self.ring) + TAIL_AT)
    }

    fn head_word(&self) -> &AtomicU64 {
        self.segment.word(ring_base(self.ring) + HEAD_AT)
    }

    /// The arrived bytes that are contiguous in the ring, at most `max`.
    fn peek(&mut self, max: usize) -> &[u8] {
        let avail = |head: u64, tail: u64| {
            // A tail behind the head or more than a ring ahead (only a
            // broken peer writes one) is clamped, never trusted.
            let a = tail.wrapping_sub(head);
            if a > RING_BYTES as u64 {
                0
            } else {
                a as usize
            }
        };
        if avail(self.head, self.tail_seen) < max.min(PIECE) {
            self.tail_seen = self.tail_word().load(Ordering::Acquire);
        }
        let off = (self.head % RING_BYTES as u64) as usize;
        let n = avail(self.head, self.tail_seen)
            .min(RING_BYTES - off)
            .min(max)
            .min(PIECE);
        // SAFETY: `off + n <= RING_BYTES`: inside this ring's data area.
        // The producer published these bytes (acquire above) and does not
        // write them again until the head passes them, which needs `&mut
        // self` and so ends this borrow first.
        unsafe { std::slice::from_raw_parts(self.segment.data(self.ring).add(off), n) }
    }

    fn consume(&mut self, n: usize) {
        self.head += n as u64;
        self.head_word().store(self.head, Ordering::Release);
    }

    /// Takes what has arrived of `inc` (at most about [`PIECE`] bytes):
    /// payload bytes go to `take` in whole elements, with their offset in
    /// the payload. Whether anything moved; `Err` when the frame header is
    /// not the one expected.
    pub(crate) fn pull(
        &mut self,
        inc: &mut Incoming,
        take: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<bool, BadFrame> {
        let mut moved = 0;
        while !inc.done() && moved < PIECE {
            if inc.skip > 0 {
                let n = self.peek(inc.skip).len();
                if n == 0 {
                    break;
                }
                self.consume(n);
                inc.skip -= n;
                moved += n;
                continue;
            }
            if inc.pos == 0 {
                // The header bytes visible now were published after every
                // slot frame that precedes their frame: look in the slot
                // after seeing them and before taking them, so a frame of
                // this sequence number in the slot comes first.
                let visible = self.peek(FRAME_HEADER).len();
                if self.take_from_slot(inc, take)? {
                    return Ok(true);
                }
                if visible == 0 {
                    break;
                }
            }
            let n = if inc.pos < FRAME_HEADER {
                let piece = self.peek(FRAME_HEADER - inc.pos);
                let n = piece.len();
                inc.header[inc.pos..inc.pos + n].copy_from_slice(piece);
                n
            } else if inc.pos < FRAME_HEADER + inc.len {
                let off = inc.pos - FRAME_HEADER;
                let elem = inc.elem;
                let piece = self.peek(inc.len - off);
                let n = piece.len() / elem * elem;
                take(off, &piece[..n]);
                n
            } else {
                let total = inc.total();
                self.peek(total - inc.pos).len()
            };
            if n == 0 {
                break;
            }
            self.consume(n);
            inc.pos += n;
            moved += n;
            if inc.pos == FRAME_HEADER {
                let got_seq = u64::from_le_bytes(inc.header[..8].try_into().unwrap_or_default());
                let got_len = u64::from_le_bytes(inc.header[8..].try_into().unwrap_or_default());
                if got_seq == SKIP && got_len < RING_BYTES as u64 {
                    // Padding to the ring's start; the frame follows it.
                    inc.skip = got_len as usize;
                    inc.pos = 0;
                    continue;
                }
                if got_seq != self.seq || got_len != inc.len as u64 {
                    return Err(BadFrame {
                        want_seq: self.seq,
                        got_seq,
                        got_len,
                    });
                }
            }
        }
        if moved > 0 && inc.done() {
            self.seq += 1;
        }
        Ok(moved > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ((ShmTx, ShmRx), (ShmTx, ShmRx)) {
        // A cookie (and so a file name) of its own for every test, which
        // run in parallel threads of one process.
        let cookie = crate::rendezvous::random_u64(line!() as usize, 0);
        let (a, path) = Segment::create(cookie, LINK_BYTES).unwrap();
        let b = Segment::open(&path, cookie, LINK_BYTES).unwrap();
        std::fs::remove_file(&path).unwrap();
        (halves(a, true), halves(b, false))
    }

    /// Sends `msgs` from one side while receiving on the other, in one
    /// thread, interleaving pushes and pulls as a ring step does.
    fn roundtrip(tx: &mut ShmTx, rx: &mut ShmRx, msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for m in msgs {
            let mut out = Outgoing::new(m);
            let mut inc = Incoming::new(m.len(), 1);
            let mut buf = vec![0u8; m.len()];
            while !(out.done() && inc.done()) {
                tx.push(&mut out);
                rx.pull(&mut inc, &mut |off, piece| {
                    buf[off..off + piece.len()].copy_from_slice(piece)
                })
                .unwrap();
            }
            got.push(buf);
        }
        got
    }

    #[test]
    fn frames_of_every_size_cross_the_ring_and_wrap_it() {
        let ((mut tx, _), (_, mut rx)) = pair();
        // Sizes around the alignment, the piece and the ring, so frames
        // wrap the ring at every phase.
        let msgs: Vec<Vec<u8>> = [
            0,
            1,
            15,
            16,
            17,
            PIECE - 3,
            PIECE + 5,
            RING_BYTES + 33,
            3 * RING_BYTES / 2,
        ]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
        .map(|(k, &len)| (0..len).map(|i| (i * 31 + k * 7) as u8).collect())
        .collect();
        assert_eq!(roundtrip(&mut tx, &mut rx, &msgs), msgs);
    }

    #[test]
    fn small_frames_after_a_large_one_restart_at_the_ring_start() {
        let ((mut tx, _), (_, mut rx)) = pair();
        let msgs = vec![vec![1u8; 20_000], vec![2u8; 100], vec![3u8; 100]];
        assert_eq!(roundtrip(&mut tx, &mut rx, &msgs), msgs);
        // The second frame was preceded by a skip to the ring's start, and
        // the third follows it: two frames of 16 + 112 bytes.
        assert_eq!(tx.tail % RING_BYTES as u64, 2 * (16 + 112));
        assert_eq!(rx.head, tx.tail);
    }

    #[test]
    fn both_directions_are_independent() {
        let ((mut tx_a, mut rx_a), (mut tx_b, mut rx_b)) = pair();
        let ab = vec![vec![1u8; 100], vec![2u8; 5000]];
        let ba = vec![vec![9u8; 7], vec![8u8; 70_000]];
        assert_eq!(roundtrip(&mut tx_a, &mut rx_b, &ab), ab);
        assert_eq!(roundtrip(&mut tx_b, &mut rx_a, &ba), ba);
    }

    #[test]
    fn a_full_ring_stops_the_producer_until_the_consumer_reads() {
        let ((mut tx, _), (_, mut rx)) = pair();
        let big = vec![7u8; 2 * RING_BYTES];
        let mut out = Outgoing::new(&big);
        while tx.push(&mut out) {}
        assert!(!out.done(), "a frame twice the ring cannot fit");
        let mut inc = Incoming::new(big.len(), 1);
        let mut taken = 0;
        while !inc.done() {
            rx.pull(&mut inc, &mut |_, piece| taken += piece.len())
                .unwrap();
            tx.push(&mut out);
        }
        assert!(out.done());
        assert_eq!(taken, big.len());
    }

    #[test]
    fn a_frame_of_another_length_or_sequence_is_refused() {
        let ((mut tx, _), (_, mut rx)) = pair();
        let mut out = Outgoing::new(&[1, 2, 3, 4]);
        assert!(tx.push(&mut out) && out.done());
        let mut inc = Incoming::new(8, 4);
        let err = rx.pull(&mut inc, &mut |_, _| {}).unwrap_err();
        assert_eq!((err.want_seq, err.got_seq, err.got_len), (0, 0, 4));
    }

    #[test]
    fn payloads_come_in_whole_elements_at_aligned_offsets() {
        let ((mut tx, _), (_, mut rx)) = pair();
        let values: Vec<f32> = (0..100_003).map(|i| i as f32).collect();
        let bytes: &[u8] = bytemuck::cast_slice(&values);
        // Put the ring's wrap point mid-frame.
        let pad = vec![0u8; RING_BYTES - 100];
        roundtrip(&mut tx, &mut rx, &[pad]);
        let mut out = Outgoing::new(bytes);
        let mut inc = Incoming::new(bytes.len(), 4);
        let mut got = vec![0f32; values.len()];
        while !(out.done() && inc.done()) {
            tx.push(&mut out);
            rx.pull(&mut inc, &mut |off, piece| {
                assert_eq!(off % 4, 0);
                assert_eq!(piece.as_ptr() as usize % 4, 0);
                let piece: &[f32] = bytemuck::cast_slice(piece);
                got[off / 4..off / 4 + piece.len()].copy_from_slice(piece);
            })
            .unwrap();
        }
        assert_eq!(got, values);
    }

    #[test]
    fn small_frames_take_the_slot_and_keep_their_order_with_ring_frames() {
        let ((mut tx, _), (_, mut rx)) = pair();
        // A small frame goes to the slot; while the consumer has not taken
        // it, the next small one goes to the ring; large ones always do.
        let small = |k: u8| vec![k; 8];
        let one = small(1);
        let mut first_out = Outgoing::new(&one);
        assert!(tx.push(&mut first_out) && first_out.done());
        assert_eq!(tx.tail, 0, "the first small frame is in the slot");
        let two = small(2);
        let mut second = Outgoing::new(&two);
        assert!(tx.push(&mut second) && second.done());
        assert_eq!(tx.tail, 32, "the slot was taken: the ring carries it");
        let big = vec![3u8; 1000];
        let mut third = Outgoing::new(&big);
        assert!(tx.push(&mut third) && third.done());
        let mut got = Vec::new();
        for len in [8, 8, 1000] {
            let mut inc = Incoming::new(len, 1);
            let mut buf = vec![0u8; len];
            while !inc.done() {
                rx.pull(&mut inc, &mut |off, piece| {
                    buf[off..off + piece.len()].copy_from_slice(piece)
                })
                .unwrap();
            }
            got.push(buf);
        }
        assert_eq!(got, vec![small(1), small(2), big]);
        // The slot was taken back: the next small frame uses it again.
        let four = small(4);
        let mut fourth = Outgoing::new(&four);
        let tail = tx.tail;
        assert!(tx.push(&mut fourth) && fourth.done());
        assert_eq!(tx.tail, tail);
        let mut inc = Incoming::new(8, 4);
        let mut buf = vec![0u8; 8];
        assert!(rx
            .pull(&mut inc, &mut |off, piece| {
                assert_eq!(piece.as_ptr() as usize % 16, 0, "slot payloads are aligned");
                buf[off..off + piece.len()].copy_from_slice(piece)
            })
            .unwrap());
        assert!(inc.done());
        assert_eq!(buf, small(4));
    }

    #[test]
    fn slot_and_ring_frames_keep_their_order_between_two_threads() {
        use std::sync::atomic::AtomicUsize;
        let ((mut tx, _), (_, mut rx)) = pair();
        // One thread sends frames in pairs, each pair once the other
        // thread, polling, has taken the frames before it: the first of a
        // pair lands in the slot and the second, while the slot is still
        // taken, in the ring, right as the consumer looks. Small frames
        // mostly, some larger ones; every frame must arrive whole and in
        // order.
        const SIZES: [usize; 8] = [8, 8, 0, 48, 49, 100, 3000, 4];
        fn message(k: usize) -> Vec<u8> {
            let len = SIZES[(k * 7 + k / 5) % SIZES.len()];
            (0..len).map(|i| (i * 13 + k) as u8).collect()
        }
        const COUNT: usize = 100_000;
        let taken = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&taken);
        let producer = std::thread::spawn(move || {
            for k in 0..COUNT {
                if k % 2 == 0 {
                    while seen.load(Ordering::Acquire) < k {
                        std::hint::spin_loop();
                    }
                }
                let m = message(k);
                let mut out = Outgoing::new(&m);
                while !out.done() {
                    if !tx.push(&mut out) {
                        std::hint::spin_loop();
                    }
                }
            }
        });
        for k in 0..COUNT {
            let want = message(k);
            let mut inc = Incoming::new(want.len(), 1);
            let mut got = vec![0u8; want.len()];
            while !inc.done() {
                let moved = rx
                    .pull(&mut inc, &mut |off, piece| {
                        got[off..off + piece.len()].copy_from_slice(piece)
                    })
                    .unwrap_or_else(|e| panic!("message {k}: {e:?}"));
                if !moved {
                    std::hint::spin_loop();
                }
            }
            assert_eq!(got, want, "message {k}");
            taken.store(k + 1, Ordering::Release);
        }
        producer.join().unwrap();
    }

    #[test]
    fn a_slot_frame_of_another_length_is_refused_and_a_stale_one_ignored() {
        let ((mut tx, _), (_, mut rx)) = pair();
        let mut out = Outgoing::new(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(tx.push(&mut out) && out.done());
        let mut inc = Incoming::new(4, 4);
        let err = rx.pull(&mut inc, &mut |_, _| {}).unwrap_err();
        assert_eq!((err.want_seq, err.got_seq, err.got_len), (0, 0, 8));
        // Taken with the right length, the frame is gone: the slot's stamp
        // is now an old one, which the next frame's pull does not take.
        let mut inc = Incoming::new(8, 1);
        assert!(rx.pull(&mut inc, &mut |_, _| {}).unwrap() && inc.done());
        let mut next = Incoming::new(8, 1);
        assert!(!rx.pull(&mut next, &mut |_, _| {}).unwrap());
        assert!(!next.done());
    }

    #[test]
    fn a_segment_with_another_cookie_is_not_opened() {
        let cookie = crate::rendezvous::random_u64(line!() as usize, 1);
        let (_a, path) = Segment::create(cookie, LINK_BYTES).unwrap();
        let err = Segment::open(&path, cookie ^ 1, LINK_BYTES).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
