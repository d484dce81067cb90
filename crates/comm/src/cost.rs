//! The cost model that picks an AllReduce algorithm: Hockney's
//! alpha-beta model with a reduction term (as in Thakur, Rabenseifner and
//! Gropp, "Optimization of Collective Communication Operations in
//! MPICH"), whose constants are measured when a communicator starts
//! ([`Communicator::calibrate`](crate::Communicator::calibrate)) or read
//! from a calibration file (`EXODUS_COMM_CALIBRATION=FILE`, written by
//! `exodus comm calibrate`).
//!
//! For `n` ranks, `p` the largest power of two <= `n`, and `m` bytes per
//! rank, the predicted times are:
//!
//! | algorithm | time |
//! |---|---|
//! | Mesh | `(n-1) a + (n-1) m b + (n-1) m c` |
//! | Doubling | `log2(p) (a + m b + m c)` + extra |
//! | Ring | `2 (n-1) a + 2 (n-1)/n m b + (n-1)/n m c` |
//! | Halving | `2 log2(p) a + 2 (p-1)/p m b + (p-1)/p m c` + extra |
//!
//! where `a` is the time of one message, `b` the time per byte moved, `c`
//! the time per byte reduced, and "extra" (when `n` is not a power of two)
//! is the fold of the extra ranks before and the hand-back after:
//! `2 (a + m b) + m c`.

use crate::communicator::AllReduceAlgo;

/// The constants of the model (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Seconds per message (latency).
    pub alpha: f64,
    /// Seconds per byte moved between two ranks.
    pub beta: f64,
    /// Seconds per byte reduced on one rank.
    pub gamma: f64,
}

impl CostModel {
    /// Typical constants of this machine's shared-memory links, for when
    /// nothing was measured (0.4 us, 8 GB/s, 10 GB/s).
    pub const SHARED_MEMORY: CostModel = CostModel {
        alpha: 0.4e-6,
        beta: 1.0 / 8e9,
        gamma: 1.0 / 10e9,
    };

    /// The predicted time of `algo` for `bytes` per rank on `n` ranks.
    pub fn all_reduce_seconds(&self, algo: AllReduceAlgo, bytes: usize, n: usize) -> f64 {
        if n < 2 {
            return 0.0;
        }
        let (a, b, c) = (self.alpha, self.beta, self.gamma);
        let m = bytes as f64;
        let nf = n as f64;
        let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let pf = p as f64;
        let log_p = p.trailing_zeros() as f64;
        let extra = if p == n {
            0.0
        } else {
            2.0 * (a + m * b) + m * c
        };
        match algo {
            AllReduceAlgo::Mesh => (nf - 1.0) * (a + m * b + m * c),
            AllReduceAlgo::Doubling => log_p * (a + m * b + m * c) + extra,
            AllReduceAlgo::Ring => {
                2.0 * (nf - 1.0) * a + 2.0 * (nf - 1.0) / nf * m * b + (nf - 1.0) / nf * m * c
            }
            AllReduceAlgo::Halving => {
                2.0 * log_p * a + 2.0 * (pf - 1.0) / pf * m * b + (pf - 1.0) / pf * m * c + extra
            }
            // The model knows no topology: priced as the Ring it runs
            // among the hosts' leaders would be over every rank.
            AllReduceAlgo::Hierarchical => self.all_reduce_seconds(AllReduceAlgo::Ring, bytes, n),
        }
    }

    /// The flat algorithm predicted fastest (the first of
    /// [`AllReduceAlgo::FLAT`] on a tie).
    pub fn best_all_reduce(&self, bytes: usize, n: usize) -> AllReduceAlgo {
        let mut best = AllReduceAlgo::FLAT[0];
        for algo in AllReduceAlgo::FLAT {
            if self.all_reduce_seconds(algo, bytes, n) < self.all_reduce_seconds(best, bytes, n) {
                best = algo;
            }
        }
        best
    }

    /// The calibration file's text: `alpha_us`, `beta_gbps` and
    /// `gamma_gbps`, one `key = value` per line.
    pub fn to_text(&self) -> String {
        format!(
            "# exodus-comm cost model (exodus comm calibrate)\nalpha_us = {:.4}\nbeta_gbps = {:.4}\ngamma_gbps = {:.4}\n",
            self.alpha * 1e6,
            1e-9 / self.beta,
            1e-9 / self.gamma
        )
    }

    /// Reads [`to_text`](Self::to_text)'s format (`#` starts a comment;
    /// every key required once, every value positive and finite).
    pub fn parse(text: &str) -> Result<CostModel, String> {
        let (mut alpha, mut beta, mut gamma) = (None, None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected `key = value`", i + 1))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("line {}: {:?} is not a number", i + 1, value.trim()))?;
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("line {}: {value} is not a positive number", i + 1));
            }
            let slot = match key.trim() {
                "alpha_us" => &mut alpha,
                "beta_gbps" => &mut beta,
                "gamma_gbps" => &mut gamma,
                other => return Err(format!("line {}: unknown key {other:?}", i + 1)),
            };
            if slot.replace(value).is_some() {
                return Err(format!("line {}: {} given twice", i + 1, key.trim()));
            }
        }
        let missing = |k: &str| format!("{k} is missing");
        Ok(CostModel {
            alpha: alpha.ok_or_else(|| missing("alpha_us"))? * 1e-6,
            beta: 1e-9 / beta.ok_or_else(|| missing("beta_gbps"))?,
            gamma: 1e-9 / gamma.ok_or_else(|| missing("gamma_gbps"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_take_few_steps_and_large_ones_little_volume() {
        let m = CostModel::SHARED_MEMORY;
        // Two ranks: one whole-buffer step for 8 bytes, the ring's half
        // volume for a megabyte.
        assert_eq!(m.best_all_reduce(8, 2), AllReduceAlgo::Mesh);
        assert_eq!(m.best_all_reduce(1 << 20, 2), AllReduceAlgo::Ring);
        // Eight ranks: 3 doubling steps beat 7 mesh sends; halving's
        // 2 log2(8) = 6 steps beat the ring's 14 at the same volume.
        assert_eq!(m.best_all_reduce(8, 8), AllReduceAlgo::Doubling);
        assert_eq!(m.best_all_reduce(32 << 20, 8), AllReduceAlgo::Halving);
        // Six ranks: halving pays for folding in two extra ranks, the ring
        // does not.
        assert_eq!(m.best_all_reduce(32 << 20, 6), AllReduceAlgo::Ring);
    }

    #[test]
    fn the_model_follows_its_formulas() {
        let m = CostModel {
            alpha: 1.0,
            beta: 0.5,
            gamma: 0.25,
        };
        // n = 4, m = 8: ring 2*3*1 + 2*3/4*8*0.5 + 3/4*8*0.25 = 6 + 6 + 1.5.
        assert_eq!(m.all_reduce_seconds(AllReduceAlgo::Ring, 8, 4), 13.5);
        // n = 3 (p = 2): doubling 1*(1 + 4 + 2) + extra 2*(1 + 4) + 2 = 19.
        assert_eq!(m.all_reduce_seconds(AllReduceAlgo::Doubling, 8, 3), 19.0);
        assert_eq!(m.all_reduce_seconds(AllReduceAlgo::Mesh, 8, 1), 0.0);
    }

    #[test]
    fn the_calibration_file_round_trips_and_bad_ones_are_refused() {
        let m = CostModel {
            alpha: 0.5e-6,
            beta: 1.0 / 4e9,
            gamma: 1.0 / 20e9,
        };
        let back = CostModel::parse(&m.to_text()).unwrap();
        assert!((back.alpha - m.alpha).abs() < 1e-12);
        assert!((back.beta / m.beta - 1.0).abs() < 1e-6);
        assert!((back.gamma / m.gamma - 1.0).abs() < 1e-6);
        for bad in [
            "alpha_us = 1\nbeta_gbps = 1",
            "alpha_us = 1\nbeta_gbps = 1\ngamma_gbps = -3",
            "alpha_us = 1\nalpha_us = 2\nbeta_gbps = 1\ngamma_gbps = 1",
            "alpha_us: 1",
            "delta = 1",
            "alpha_us = fast",
        ] {
            assert!(CostModel::parse(bad).is_err(), "{bad:?}");
        }
    }
}
