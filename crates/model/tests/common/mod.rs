//! What the integration tests share: where the real model file is.

#![allow(dead_code)]

use std::path::PathBuf;

/// SmolLM2-135M-Instruct.Q4_1.gguf ([`exodus_model::fetch::test_model_path`]).
pub fn default_model_path() -> PathBuf {
    exodus_model::fetch::test_model_path()
}

/// An AllReduce among the threads of one test (each rank of a
/// tensor-parallel job a thread): each call waits for every rank's values
/// and sums them in rank order.
pub mod threads {
    use std::sync::{Arc, Condvar, Mutex};

    use exodus_graph::Collective;

    /// Where the calls meet.
    struct Calls {
        /// Each rank's values of the current call.
        parts: Vec<Option<Vec<f32>>>,
        /// Calls completed.
        done: u64,
        /// The last call's sum.
        sum: Vec<f32>,
    }

    struct Job {
        ranks: usize,
        state: Mutex<Calls>,
        turn: Condvar,
    }

    /// Rank `rank`'s handle on the job.
    pub struct Rank {
        job: Arc<Job>,
        rank: usize,
    }

    /// The handles of a job of `ranks` ranks.
    pub fn job(ranks: usize) -> Vec<Arc<Rank>> {
        let job = Arc::new(Job {
            ranks,
            state: Mutex::new(Calls {
                parts: vec![None; ranks],
                done: 0,
                sum: Vec::new(),
            }),
            turn: Condvar::new(),
        });
        (0..ranks)
            .map(|rank| {
                Arc::new(Rank {
                    job: job.clone(),
                    rank,
                })
            })
            .collect()
    }

    impl Collective for Rank {
        fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), String> {
            let job = &*self.job;
            let mut s = job.state.lock().map_err(|e| e.to_string())?;
            let call = s.done;
            s.parts[self.rank] = Some(values.to_vec());
            if s.parts.iter().all(Option::is_some) {
                let parts: Vec<Vec<f32>> = s.parts.iter_mut().filter_map(Option::take).collect();
                let mut sum = parts[0].clone();
                for p in &parts[1..job.ranks] {
                    sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
                }
                s.sum = sum;
                s.done += 1;
                job.turn.notify_all();
            } else {
                while s.done == call {
                    s = job.turn.wait(s).map_err(|e| e.to_string())?;
                }
            }
            values.copy_from_slice(&s.sum);
            Ok(())
        }
    }
}
