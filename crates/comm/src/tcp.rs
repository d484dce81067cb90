//! TCP links: one direction of a connection between two ranks, framed
//! messages (sequence number and length before every payload, both
//! checked), with the operation's timeout on every blocking read and write.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::{At, CommError};

/// Bytes of a frame header: sequence number and payload length, u64 LE.
pub(crate) const FRAME_HEADER: usize = 16;

fn io_error(at: At, timeout: Duration, e: std::io::Error) -> CommError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => CommError::Timeout { at, timeout },
        _ => CommError::PeerGone {
            at,
            detail: e.to_string(),
        },
    }
}

/// The sending half of a link.
#[derive(Debug)]
pub(crate) struct TcpTx {
    stream: TcpStream,
    seq: u64,
}

/// The receiving half of a link.
#[derive(Debug)]
pub(crate) struct TcpRx {
    stream: TcpStream,
    seq: u64,
}

/// Both halves of a connected stream.
pub(crate) fn split(stream: TcpStream) -> std::io::Result<(TcpTx, TcpRx)> {
    stream.set_nodelay(true)?;
    let rx = stream.try_clone()?;
    Ok((TcpTx { stream, seq: 0 }, TcpRx { stream: rx, seq: 0 }))
}

/// Whether the peer at the other end of `stream` is still there, without
/// blocking: `Err` with the reason once it closed the connection (it
/// exited, was killed, or aborted). `stream` must be in non-blocking mode,
/// and carry no traffic of its own (a shared-memory pair's connection).
pub(crate) fn probe(stream: &TcpStream) -> Result<(), String> {
    match stream.peek(&mut [0u8; 1]) {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

impl TcpTx {
    /// The connection.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, at: At, data: &[u8], timeout: Duration) -> Result<(), CommError> {
        self.stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| io_error(at.clone(), timeout, e))?;
        let mut header = [0u8; FRAME_HEADER];
        header[..8].copy_from_slice(&self.seq.to_le_bytes());
        header[8..].copy_from_slice(&(data.len() as u64).to_le_bytes());
        self.stream
            .write_all(&header)
            .and_then(|()| self.stream.write_all(data))
            .map_err(|e| io_error(at, timeout, e))?;
        self.seq += 1;
        Ok(())
    }
}

impl TcpRx {
    /// Receives one message of exactly `buf.len()` bytes.
    pub(crate) fn recv(
        &mut self,
        at: At,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(), CommError> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| io_error(at.clone(), timeout, e))?;
        let mut header = [0u8; FRAME_HEADER];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| io_error(at.clone(), timeout, e))?;
        let seq = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(header[8..].try_into().unwrap_or_default());
        if seq != self.seq || len != buf.len() as u64 {
            return Err(CommError::Mismatch {
                at,
                want_seq: self.seq,
                want_len: buf.len() as u64,
                got_seq: seq,
                got_len: len,
            });
        }
        self.stream
            .read_exact(buf)
            .map_err(|e| io_error(at, timeout, e))?;
        self.seq += 1;
        Ok(())
    }
}
