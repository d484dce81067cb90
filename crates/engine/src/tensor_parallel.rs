//! Tensor-parallel serving: one engine, on rank 0, drives the model
//! shards of every rank of a job.
//!
//! Each rank holds its shard of the model (see `exodus_model::shard`),
//! whose collectives (its gathers, each an AllReduce of its part among
//! zeros) go through exodus-comm ([`CommCollective`]). Rank 0
//! runs the scheduler and the server; its [`TensorParallel`] model sends
//! every step (the tokens, positions and block tables of its work) to the
//! other ranks by Broadcast before running its own shard, and each of them
//! runs the same step in [`run_worker`]. The KV pool's block tables are
//! rank 0's decisions, so every rank's cache holds its heads of the same
//! blocks. Every rank computes the whole logits (the output projection is
//! not split); rank 0 samples from them.
//!
//! Dropping the [`TensorParallel`] tells the workers to stop; a worker whose
//! rank 0 dies gets the communicator's typed error and exits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use exodus_comm::{CommError, Communicator, ReduceOp};
use exodus_graph::Collective;
use exodus_model::Model;

use crate::engine::StepModel;
use crate::scheduler::Work;

/// A communicator shared by a rank's model (its AllReduces) and its
/// driver (the step broadcasts); calls never overlap, the lock only
/// satisfies the types.
pub type SharedComm = Arc<Mutex<Communicator>>;

/// The AllReduce a model shard calls, over exodus-comm.
pub struct CommCollective(pub SharedComm);

impl Collective for CommCollective {
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), String> {
        let mut comm = self
            .0
            .lock()
            .map_err(|_| "the communicator's lock was poisoned")?;
        comm.all_reduce(values, ReduceOp::Sum)
            .map_err(|e| e.to_string())
    }
}

/// What rank 0 sends before each step: the step, or the end.
#[derive(Debug, Clone, PartialEq)]
enum Message {
    Step(Vec<Work>),
    Stop,
}

fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

impl Message {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Stop => out.push(0),
            Message::Step(work) => {
                out.push(1);
                out.extend_from_slice(&(work.len() as u32).to_le_bytes());
                for w in work {
                    out.extend_from_slice(&w.id.to_le_bytes());
                    out.extend_from_slice(&(w.start as u64).to_le_bytes());
                    put_u32s(&mut out, &w.tokens);
                    put_u32s(&mut out, &w.table);
                }
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Message, String> {
        let mut r = Reader { bytes, at: 0 };
        match r.take(1)?[0] {
            0 => Ok(Message::Stop),
            1 => {
                let count = r.u32()? as usize;
                let mut work = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let id = r.u64()?;
                    let start = r.u64()? as usize;
                    let tokens = r.u32s()?;
                    let table = r.u32s()?;
                    work.push(Work {
                        id,
                        start,
                        tokens,
                        table,
                    });
                }
                Ok(Message::Step(work))
            }
            other => Err(format!("an unknown step message kind {other}")),
        }
    }
}

/// Reads a step message, every length checked against what is there.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("an absurd length")?;
        let piece = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| format!("a step message cut short at byte {}", self.at))?;
        self.at = end;
        Ok(piece)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32s(&mut self) -> Result<Vec<u32>, String> {
        let n = self.u32()? as usize;
        let raw = self.take(n.checked_mul(4).ok_or("an absurd length")?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect())
    }
}

/// Broadcasts `message` from rank 0 (its length, then its bytes).
fn broadcast(comm: &SharedComm, message: Option<&Message>) -> Result<Message, CommError> {
    let mut comm = comm
        .lock()
        .map_err(|_| CommError::BadArgument("the communicator's lock was poisoned".into()))?;
    let mut bytes = message.map(Message::encode).unwrap_or_default();
    let mut len = [bytes.len() as u64];
    comm.broadcast(&mut len, 0)?;
    bytes.resize(len[0] as usize, 0);
    comm.broadcast(&mut bytes, 0)?;
    Message::decode(&bytes).map_err(CommError::BadArgument)
}

/// Rank 0's model: each step goes to every rank, then runs here.
pub struct TensorParallel {
    model: Model,
    comm: SharedComm,
}

impl TensorParallel {
    /// Rank 0's shard `model` (its collective already set to `comm`'s).
    pub fn new(model: Model, comm: SharedComm) -> TensorParallel {
        TensorParallel { model, comm }
    }

    /// The shard.
    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl StepModel for TensorParallel {
    fn run_step(&self, work: &[Work]) -> Result<Vec<f32>, String> {
        broadcast(&self.comm, Some(&Message::Step(work.to_vec())))
            .map_err(|e| format!("sending the step to the other ranks: {e}"))?;
        self.model.run_step(work)
    }
}

impl Drop for TensorParallel {
    fn drop(&mut self) {
        let _ = broadcast(&self.comm, Some(&Message::Stop));
    }
}

/// A worker rank's loop: runs every step rank 0 sends, with its shard
/// `model`, until rank 0 says stop (`Ok`) or the job fails (`Err`, for
/// example rank 0 died). Between steps it waits up to `idle` for the next.
pub fn run_worker(model: &Model, comm: &SharedComm, idle: Duration) -> Result<(), String> {
    loop {
        let step_timeout = {
            let mut c = comm
                .lock()
                .map_err(|_| "the communicator's lock was poisoned")?;
            let t = c.timeout();
            c.set_timeout(idle);
            t
        };
        let message = broadcast(comm, None);
        comm.lock()
            .map_err(|_| "the communicator's lock was poisoned")?
            .set_timeout(step_timeout);
        match message.map_err(|e| format!("waiting for rank 0's next step: {e}"))? {
            Message::Stop => return Ok(()),
            Message::Step(work) => {
                // The same failure rank 0 sees (the engine then retries
                // request by request, and so does this loop).
                let _ = model.run_step(&work);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_messages_round_trip_and_bad_ones_are_errors() {
        let work = vec![
            Work {
                id: 7,
                start: 12,
                tokens: vec![1, 2, 3],
                table: vec![0, 5],
            },
            Work {
                id: 9,
                start: 0,
                tokens: vec![42],
                table: vec![1],
            },
        ];
        let m = Message::Step(work);
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert_eq!(
            Message::decode(&Message::Stop.encode()).unwrap(),
            Message::Stop
        );
        let bytes = m.encode();
        for cut in [0, 1, 5, bytes.len() - 1] {
            assert!(Message::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Message::decode(&[9]).is_err());
    }
}
