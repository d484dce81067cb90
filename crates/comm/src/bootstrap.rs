//! Who am I, how many are we, and where do we meet: read from what the
//! usual launchers put in the environment, or given explicitly.
//!
//! | launcher | rank | size | meeting point |
//! |---|---|---|---|
//! | torchrun-style, `exodus launch` | `RANK` | `WORLD_SIZE` | `MASTER_ADDR`:`MASTER_PORT` |
//! | Open MPI `mpirun` | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `MASTER_ADDR`:`MASTER_PORT`, else `EXODUS_COMM_MASTER`, else 127.0.0.1:29500 |
//! | Slurm `srun` | `SLURM_PROCID` | `SLURM_NTASKS` | as for Open MPI |

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::CommError;

/// The port rank 0 listens on when no launcher says (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

/// A rank's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// This process's rank, `0..size`.
    pub rank: usize,
    /// Ranks in the job.
    pub size: usize,
    /// Where rank 0 listens for the rendezvous.
    pub master: SocketAddr,
    /// Which launcher's variables were read (for messages).
    pub source: &'static str,
}

impl Bootstrap {
    /// Explicit values.
    pub fn new(rank: usize, size: usize, master: SocketAddr) -> Result<Bootstrap, CommError> {
        if size == 0 || rank >= size {
            return Err(CommError::Bootstrap(format!(
                "rank {rank} of {size}: a rank must be below the job size"
            )));
        }
        Ok(Bootstrap {
            rank,
            size,
            master,
            source: "explicit",
        })
    }

    /// From the environment of the process.
    pub fn from_env() -> Result<Bootstrap, CommError> {
        Bootstrap::from_vars(|k| std::env::var(k).ok())
    }

    /// From variables looked up by `var` (the environment, or a map in
    /// tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Bootstrap, CommError> {
        let launchers: [(&str, &str, &str); 3] = [
            ("torchrun", "RANK", "WORLD_SIZE"),
            ("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
            ("srun", "SLURM_PROCID", "SLURM_NTASKS"),
        ];
        let (source, rank, size) = launchers
            .iter()
            .find_map(|&(name, r, s)| Some((name, var(r)?, var(s)?)))
            .ok_or_else(|| {
                CommError::Bootstrap(
                    "no launcher environment: set RANK and WORLD_SIZE (and MASTER_ADDR, MASTER_PORT), or run under mpirun, srun or `exodus launch`".into(),
                )
            })?;
        let number = |name: &str, v: &str| {
            v.trim().parse::<usize>().map_err(|_| {
                CommError::Bootstrap(format!("{source}: {name} = {v:?} is not a number"))
            })
        };
        let (rank, size) = (number("rank", &rank)?, number("size", &size)?);
        let master = match (var("MASTER_ADDR"), var("EXODUS_COMM_MASTER")) {
            (Some(addr), _) => {
                let port = var("MASTER_PORT").unwrap_or_else(|| DEFAULT_PORT.to_string());
                format!("{addr}:{port}")
            }
            (None, Some(m)) => m,
            (None, None) => format!("127.0.0.1:{DEFAULT_PORT}"),
        };
        let master = master
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                CommError::Bootstrap(format!("the meeting point {master:?} does not resolve"))
            })?;
        Ok(Bootstrap {
            source,
            ..Bootstrap::new(rank, size, master)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn boot(vars: &[(&str, &str)]) -> Result<Bootstrap, CommError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Bootstrap::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn every_launcher_is_read() {
        let b = boot(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!(
            (b.rank, b.size, b.master.port(), b.source),
            (2, 4, 1234, "torchrun")
        );
        let b = boot(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")]).unwrap();
        assert_eq!(
            (b.rank, b.size, b.master.port(), b.source),
            (1, 2, DEFAULT_PORT, "mpirun")
        );
        let b = boot(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "3"),
            ("EXODUS_COMM_MASTER", "127.0.0.1:999"),
        ])
        .unwrap();
        assert_eq!(
            (b.rank, b.size, b.master.port(), b.source),
            (0, 3, 999, "srun")
        );
    }

    #[test]
    fn bad_environments_are_typed_errors() {
        assert!(matches!(boot(&[]), Err(CommError::Bootstrap(_))));
        assert!(matches!(
            boot(&[("RANK", "4"), ("WORLD_SIZE", "4")]),
            Err(CommError::Bootstrap(_))
        ));
        assert!(matches!(
            boot(&[("RANK", "x"), ("WORLD_SIZE", "4")]),
            Err(CommError::Bootstrap(_))
        ));
    }
}
