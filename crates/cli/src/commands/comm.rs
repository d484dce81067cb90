//! `exodus launch -n N -- CMD` (N local ranks with torchrun-style
//! variables) and `exodus comm check` (every collective of exodus-comm
//! against a serial reference, in a real multi-process job, with optional
//! injected faults).

use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use exodus_comm::{Bootstrap, CommError, Communicator, ReduceOp};

/// Arguments of `exodus launch`.
#[derive(clap::Args, Debug)]
pub struct LaunchArgs {
    /// Ranks to start on this machine.
    #[arg(short = 'n', long = "nproc")]
    nproc: usize,
    /// Port of the rendezvous (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seconds to let the other ranks end on their own after one fails,
    /// before they are killed.
    #[arg(long, default_value_t = 30.0)]
    grace: f64,
    /// The command each rank runs.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// Starts the ranks, waits for all; fails (and stops the rest) when one
/// fails.
pub fn launch(a: &LaunchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.nproc > 0, "-n must be at least 1");
    let port = match a.port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        p => p,
    };
    let (program, args) = a.command.split_first().context("no command")?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..a.nproc {
        let child = Command::new(program)
            .args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", a.nproc.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", a.nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank}: {program}"))?;
        children.push((rank, child));
    }
    let mut failed: Vec<String> = Vec::new();
    let mut first_failure: Option<Instant> = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait()? {
                Some(status) => {
                    let (rank, _) = children.remove(i);
                    if !status.success() {
                        failed.push(format!("rank {rank}: {status}"));
                        first_failure.get_or_insert_with(Instant::now);
                    }
                }
                None => i += 1,
            }
        }
        if let Some(t) = first_failure {
            if t.elapsed() > Duration::from_secs_f64(a.grace) {
                for (rank, child) in &mut children {
                    let _ = child.kill();
                    let _ = child.wait();
                    failed.push(format!("rank {rank}: killed after the grace period"));
                }
                children.clear();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "exodus launch: {} of {} ranks failed: {}",
            failed.len(),
            a.nproc,
            failed.join("; ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Arguments of `exodus comm`.
#[derive(clap::Args, Debug)]
pub struct CommArgs {
    #[command(subcommand)]
    command: CommCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CommCommand {
    /// Runs every collective on many sizes and checks each result against
    /// a serial reference (run under `exodus launch`, mpirun or srun).
    Check(CheckArgs),
}

/// Arguments of `exodus comm check`.
#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Seconds every operation may take.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Fault injection: this rank exits abruptly before its `--fault-at`th
    /// AllReduce (a dead peer).
    #[arg(long)]
    die_rank: Option<usize>,
    /// Fault injection: this rank stops answering before its
    /// `--fault-at`th AllReduce (a stuck peer).
    #[arg(long)]
    stall_rank: Option<usize>,
    /// Which AllReduce the fault comes before (the default is one of 2
    /// values, so the peers are mid-AllReduce).
    #[arg(long, default_value_t = 9)]
    fault_at: usize,
}

/// Rank `r`'s input: small integers, so that sums are exact in any order.
fn input(r: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((r * 31 + i * 7) % 17) as f32 - 8.0)
        .collect()
}

/// `exodus comm`.
pub fn comm(a: &CommArgs) -> anyhow::Result<ExitCode> {
    match &a.command {
        CommCommand::Check(c) => check(c),
    }
}

fn check(a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let boot = Bootstrap::from_env()?;
    let timeout = Duration::from_secs_f64(a.timeout);
    let mut comm = Communicator::connect(&boot, timeout)?;
    let (rank, n) = (comm.rank(), comm.size());
    let sizes = [0usize, 1, 2, 3, 7, n, n + 1, 1000, 4097, 65_537];
    let mut reduces = 0;
    let run = |comm: &mut Communicator, reduces: &mut usize| -> Result<(), CommError> {
        for &len in &sizes {
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Avg] {
                if *reduces == a.fault_at {
                    if a.die_rank == Some(rank) {
                        eprintln!("rank {rank}: exiting abruptly (fault injection)");
                        std::process::exit(17);
                    }
                    if a.stall_rank == Some(rank) {
                        eprintln!("rank {rank}: stalling (fault injection)");
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                *reduces += 1;
                let mut buf = input(rank, len);
                comm.all_reduce(&mut buf, op)?;
                let all: Vec<Vec<f32>> = (0..n).map(|r| input(r, len)).collect();
                let want: Vec<f32> = (0..len)
                    .map(|i| {
                        let vals = all.iter().map(|v| v[i]);
                        match op {
                            ReduceOp::Sum => vals.sum(),
                            ReduceOp::Max => vals.fold(f32::NEG_INFINITY, f32::max),
                            ReduceOp::Min => vals.fold(f32::INFINITY, f32::min),
                            ReduceOp::Avg => vals.sum::<f32>() / n as f32,
                        }
                    })
                    .collect();
                if buf != want {
                    return Err(CommError::BadArgument(format!(
                        "all_reduce {op:?} of {len} values: wrong result"
                    )));
                }
            }
            let mut out = vec![f32::NAN; n * len];
            comm.all_gather(&input(rank, len), &mut out)?;
            let want: Vec<f32> = (0..n).flat_map(|r| input(r, len)).collect();
            if out != want {
                return Err(CommError::BadArgument(format!(
                    "all_gather of {len} values: wrong result"
                )));
            }
            for root in 0..n {
                let mut buf = if rank == root {
                    input(root, len)
                } else {
                    vec![0.0; len]
                };
                comm.broadcast(&mut buf, root)?;
                if buf != input(root, len) {
                    return Err(CommError::BadArgument(format!(
                        "broadcast of {len} values from {root}: wrong result"
                    )));
                }
            }
            comm.barrier()?;
        }
        Ok(())
    };
    match run(&mut comm, &mut reduces) {
        Ok(()) => {
            println!("rank {rank} of {n}: every collective matched the serial reference");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rank {rank} of {n}: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
