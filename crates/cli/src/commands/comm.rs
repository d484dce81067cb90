//! `exodus launch -n N -- CMD` (N local ranks with torchrun-style
//! variables) and `exodus comm check` (every collective of exodus-comm
//! against a serial reference, in a real multi-process job, with optional
//! injected faults).

use std::ops::Range;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use exodus_comm::element::{bf16, f16};
use exodus_comm::{AllReduceAlgo, Bootstrap, BroadcastAlgo, CommError, Communicator, ReduceOp};
use exodus_numerics::minifloat::FP8_E4M3;
use exodus_numerics::EncodeOptions;

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
    /// Binds rank i to the i-th CPU this command may run on (`core`, the
    /// default; as mpirun does for few ranks), so that ranks waiting on
    /// shared memory never share a CPU; `none` leaves placement to the
    /// kernel. With more ranks than CPUs nothing is bound.
    #[arg(long, default_value = "core", value_parser = ["core", "none"])]
    bind_to: String,
    /// Gives every rank a host name of its own (`EXODUS_COMM_HOST=rank-N`),
    /// so that the ranks talk over TCP as if on separate machines.
    #[arg(long, conflicts_with = "hosts")]
    separate_hosts: bool,
    /// Splits the ranks into this many "hosts" of consecutive ranks
    /// (`EXODUS_COMM_HOST=node-K`): shared memory within each, TCP
    /// between them, as in a job over several machines.
    #[arg(long)]
    hosts: Option<usize>,
    /// The command each rank runs.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// Starts the ranks, waits for all; fails (and stops the rest) when one
/// fails.
pub fn launch(a: &LaunchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.nproc > 0, "-n must be at least 1");
    anyhow::ensure!(
        a.hosts.is_none_or(|h| (1..=a.nproc).contains(&h)),
        "--hosts must be between 1 and -n"
    );
    let port = match a.port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        p => p,
    };
    let (program, args) = a.command.split_first().context("no command")?;
    let cpus = if a.bind_to == "core" {
        allowed_cpus()?
    } else {
        Vec::new()
    };
    let cpus = if cpus.len() >= a.nproc {
        cpus
    } else {
        Vec::new()
    };
    let mut children: Vec<(usize, Child)> = Vec::new();
    for rank in 0..a.nproc {
        let mut command = Command::new(program);
        if a.separate_hosts {
            command.env("EXODUS_COMM_HOST", format!("rank-{rank}"));
        }
        if let Some(hosts) = a.hosts {
            command.env(
                "EXODUS_COMM_HOST",
                format!("node-{}", rank * hosts / a.nproc),
            );
        }
        let child = command
            .args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", a.nproc.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", a.nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank}: {program}"))?;
        if let Some(&cpu) = cpus.get(rank) {
            bind(&child, cpu).with_context(|| format!("binding rank {rank} to CPU {cpu}"))?;
        }
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

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

/// Binds a started child (all its threads to come) to one CPU.
fn bind(child: &Child, cpu: usize) -> anyhow::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(cpu)?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    sched_setaffinity(pid, &set)?;
    Ok(())
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
    /// nccl-tests-style sweep: time, algbw and busbw of each collective
    /// from 8 B up, every result checked (run under `exodus launch`).
    Bench(BenchArgs),
    /// Measures the cost model that picks algorithms and writes it as a
    /// calibration file (for `EXODUS_COMM_CALIBRATION`).
    Calibrate(CalibrateArgs),
}

/// Arguments of `exodus comm calibrate`.
#[derive(clap::Args, Debug)]
struct CalibrateArgs {
    /// Where rank 0 writes the calibration file.
    #[arg(long, default_value = "exodus-comm.calibration")]
    out: std::path::PathBuf,
    /// Seconds every operation may take.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

/// Arguments of `exodus comm bench`.
#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Smallest message, bytes.
    #[arg(long, default_value_t = 8)]
    min_bytes: usize,
    /// Largest message, bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_bytes: usize,
    /// Size step factor.
    #[arg(long, default_value_t = 4)]
    factor: usize,
    /// Timed iterations per size (after 2 warm-up ones).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Seconds every operation may take.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The collectives to run, comma-separated (all_reduce,
    /// all_reduce_shared, all_gather, reduce_scatter, all_to_all,
    /// broadcast, reduce), and `all_reduce_floor`: no transfer at all, only
    /// the memory passes an in-place AllReduce of private buffers needs on
    /// each rank (see `all_reduce_floor`), the floor for any library.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all_reduce,all_reduce_floor,all_reduce_shared,all_gather,reduce_scatter,all_to_all,broadcast,reduce"
    )]
    ops: Vec<String>,
    /// Where rank 0 writes the JSON results.
    #[arg(long, default_value = "bench/results/comm.json")]
    out: std::path::PathBuf,
}

/// Arguments of `exodus comm check`.
#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// Seconds every operation may take.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Fault injection: this rank kills itself with SIGKILL before its
    /// `--fault-at`th AllReduce (a dead peer).
    #[arg(long)]
    die_rank: Option<usize>,
    /// Fault injection: this rank stops answering before its
    /// `--fault-at`th AllReduce (a stuck peer).
    #[arg(long)]
    stall_rank: Option<usize>,
    /// Which AllReduce (counted from 0) the fault comes before; by
    /// default the Ring sum of 2 values, so that the peers are
    /// mid-AllReduce.
    #[arg(long)]
    fault_at: Option<usize>,
}

/// Writes one line to stderr in a single write, so that the lines of
/// ranks sharing a terminal or pipe never interleave.
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
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
        CommCommand::Bench(b) => bench(b),
        CommCommand::Calibrate(c) => calibrate(c),
    }
}

fn calibrate(a: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let boot = Bootstrap::from_env()?;
    // Ignore a calibration file in the environment: this measures anew.
    std::env::remove_var("EXODUS_COMM_CALIBRATION");
    let comm = Communicator::connect(&boot, Duration::from_secs_f64(a.timeout))?;
    let model = comm.cost_model();
    if comm.rank() == 0 {
        std::fs::write(&a.out, model.to_text())
            .with_context(|| format!("writing {}", a.out.display()))?;
        println!(
            "{} ranks ({}): alpha {:.2} us, beta {:.2} GB/s, gamma {:.2} GB/s; wrote {}",
            comm.size(),
            transport_of(&comm),
            model.alpha * 1e6,
            1e-9 / model.beta,
            1e-9 / model.gamma,
            a.out.display()
        );
        for bytes in [8usize, 2 << 10, 64 << 10, 1 << 20, 32 << 20] {
            println!(
                "  AllReduce of {bytes} bytes: {}",
                comm.select_all_reduce(bytes).name()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
            let ops = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Avg];
            let algos = AllReduceAlgo::ALL;
            for (op, algo) in ops.into_iter().flat_map(|op| algos.map(|algo| (op, algo))) {
                let fault_here = match a.fault_at {
                    Some(at) => *reduces == at,
                    None => len == 2 && op == ReduceOp::Sum && algo == AllReduceAlgo::Ring,
                };
                if fault_here {
                    if a.die_rank == Some(rank) {
                        // kill -9 of itself: no destructor, no socket
                        // shutdown, no flush; the kernel closes what is open.
                        say(&format!(
                            "rank {rank}: killed with SIGKILL (fault injection)"
                        ));
                        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                        std::process::exit(17);
                    }
                    if a.stall_rank == Some(rank) {
                        say(&format!("rank {rank}: stalling (fault injection)"));
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                *reduces += 1;
                let mut buf = input(rank, len);
                comm.all_reduce_with(&mut buf, op, algo)?;
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
                        "all_reduce {op:?} ({algo:?}) of {len} values: wrong result"
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
            let wrong = |what: &str| {
                CommError::BadArgument(format!("{what} of {len} values: wrong result"))
            };
            // ReduceScatter: block `rank` of the sum of every rank's n * len
            // values.
            let mut block = vec![f32::NAN; len];
            comm.reduce_scatter(&input(rank, n * len), &mut block, ReduceOp::Sum)?;
            let all: Vec<Vec<f32>> = (0..n).map(|r| input(r, n * len)).collect();
            let want: Vec<f32> = (rank * len..(rank + 1) * len)
                .map(|i| all.iter().map(|v| v[i]).sum())
                .collect();
            if block != want {
                return Err(wrong("reduce_scatter"));
            }
            // AllToAll on i32: block i of the output is rank i's block `rank`.
            let ints = |r: usize| -> Vec<i32> {
                input(r, n * len)
                    .iter()
                    .map(|&v| v as i32 * 1000 + r as i32)
                    .collect()
            };
            let mut got = vec![0i32; n * len];
            comm.all_to_all(&ints(rank), &mut got)?;
            let want: Vec<i32> = (0..n)
                .flat_map(|i| ints(i)[rank * len..(rank + 1) * len].to_vec())
                .collect();
            if got != want {
                return Err(wrong("all_to_all"));
            }
            // AllReduce on i32.
            let mut sum = ints(rank);
            comm.all_reduce(&mut sum, ReduceOp::Sum)?;
            let every: Vec<Vec<i32>> = (0..n).map(ints).collect();
            let want: Vec<i32> = (0..n * len)
                .map(|i| every.iter().map(|v| v[i]).sum())
                .collect();
            if sum != want {
                return Err(wrong("all_reduce i32"));
            }
            let inputs: Vec<Vec<f32>> = (0..n).map(|r| input(r, len)).collect();
            // f16 and bf16 (small integers: exact in any order), and the
            // out-of-place and in-place forms.
            let halves: Vec<f16> = input(rank, len).iter().map(|&v| f16::from_f32(v)).collect();
            let mut sum = vec![f16::ZERO; len];
            comm.all_reduce_into(&halves, &mut sum, ReduceOp::Sum)?;
            let want: Vec<f16> = (0..len)
                .map(|i| f16::from_f32(inputs.iter().map(|v| v[i]).sum()))
                .collect();
            if sum != want {
                return Err(wrong("all_reduce f16"));
            }
            let mut brains: Vec<bf16> = input(rank, len)
                .iter()
                .map(|&v| bf16::from_f32(v))
                .collect();
            comm.all_reduce(&mut brains, ReduceOp::Max)?;
            let want: Vec<bf16> = (0..len)
                .map(|i| bf16::from_f32(inputs.iter().map(|v| v[i]).fold(f32::MIN, f32::max)))
                .collect();
            if brains != want {
                return Err(wrong("all_reduce bf16"));
            }
            // In place on shared buffers (one pass over every rank's memory
            // when all share this host; over the links otherwise).
            let mut shared = comm.shared_buffer::<f32>(len)?;
            for op in [ReduceOp::Sum, ReduceOp::Avg] {
                shared.as_mut_slice().copy_from_slice(&input(rank, len));
                comm.all_reduce_shared(&mut shared, op)?;
                let want: Vec<f32> = (0..len)
                    .map(|i| {
                        let sum: f32 = inputs.iter().map(|v| v[i]).sum();
                        if op == ReduceOp::Avg {
                            sum / n as f32
                        } else {
                            sum
                        }
                    })
                    .collect();
                if shared.as_slice() != want {
                    return Err(wrong("all_reduce on a shared buffer"));
                }
            }
            // Deterministic mode: values whose sums round, and every
            // algorithm (and the shared buffer) must give the rank-order
            // fold, bit for bit.
            let rough = |r: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| {
                        let k = (r * 7919 + i * 104_729) % 1000;
                        (k as f32 * 0.377 - 188.1) * 10f32.powi((k % 7) as i32 - 3)
                    })
                    .collect()
            };
            let roughs: Vec<Vec<f32>> = (0..n).map(rough).collect();
            let fold: Vec<u32> = (0..len)
                .map(|i| {
                    (1..n)
                        .fold(roughs[0][i], |acc, r| roughs[r][i] + acc)
                        .to_bits()
                })
                .collect();
            comm.set_deterministic(true);
            for algo in AllReduceAlgo::ALL {
                let mut buf = rough(rank);
                comm.all_reduce_with(&mut buf, ReduceOp::Sum, algo)?;
                if buf.iter().map(|v| v.to_bits()).collect::<Vec<u32>>() != fold {
                    return Err(wrong(&format!(
                        "deterministic all_reduce ({})",
                        algo.name()
                    )));
                }
            }
            shared.as_mut_slice().copy_from_slice(&rough(rank));
            comm.all_reduce_shared(&mut shared, ReduceOp::Sum)?;
            if shared
                .as_slice()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<u32>>()
                != fold
            {
                return Err(wrong("deterministic all_reduce on a shared buffer"));
            }
            comm.set_deterministic(false);
            // fp8 payloads (E4M3 codes) through the data-moving
            // collectives: bytes in, the same bytes out.
            let fp8 = |r: usize| -> Vec<u8> {
                input(r, len)
                    .iter()
                    .map(|&v| FP8_E4M3.encode(v * 0.37, EncodeOptions::SATURATE))
                    .collect()
            };
            let mut codes = vec![0u8; n * len];
            comm.all_gather(&fp8(rank), &mut codes)?;
            if codes != (0..n).flat_map(fp8).collect::<Vec<u8>>() {
                return Err(wrong("all_gather of fp8 codes"));
            }
            let mut codes = if rank == 0 { fp8(0) } else { vec![0u8; len] };
            comm.broadcast(&mut codes, 0)?;
            if codes != fp8(0) {
                return Err(wrong("broadcast of fp8 codes"));
            }
            let mut gathered = vec![f32::NAN; n * len];
            gathered[rank * len..(rank + 1) * len].copy_from_slice(&input(rank, len));
            comm.all_gather_in_place(&mut gathered)?;
            if gathered != (0..n).flat_map(|r| input(r, len)).collect::<Vec<f32>>() {
                return Err(wrong("all_gather in place"));
            }
            for root in 0..n {
                for algo in [BroadcastAlgo::Direct, BroadcastAlgo::Tree] {
                    let mut buf = if rank == root {
                        input(root, len)
                    } else {
                        vec![0.0; len]
                    };
                    comm.broadcast_with(&mut buf, root, algo)?;
                    if buf != input(root, len) {
                        return Err(CommError::BadArgument(format!(
                            "broadcast ({algo:?}) of {len} values from {root}: wrong result"
                        )));
                    }
                }
                // Reduce: the root gets the sum, the others keep their
                // buffers; in deterministic mode, the rank-order fold.
                let mut buf = input(rank, len);
                comm.reduce(&mut buf, ReduceOp::Sum, root)?;
                let want = if rank == root {
                    (0..len)
                        .map(|i| inputs.iter().map(|v| v[i]).sum())
                        .collect()
                } else {
                    input(rank, len)
                };
                if buf != want {
                    return Err(wrong(&format!("reduce to {root}")));
                }
                comm.set_deterministic(true);
                let mut buf = rough(rank);
                comm.reduce(&mut buf, ReduceOp::Sum, root)?;
                comm.set_deterministic(false);
                if rank == root && buf.iter().map(|v| v.to_bits()).collect::<Vec<u32>>() != fold {
                    return Err(wrong(&format!("deterministic reduce to {root}")));
                }
            }
            comm.barrier()?;
        }
        Ok(())
    };
    match run(&mut comm, &mut reduces) {
        Ok(()) => {
            let links = transport_of(&comm);
            println!("rank {rank} of {n} ({links}): every collective matched the serial reference");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            say(&format!("rank {rank} of {n}: {e}"));
            Ok(ExitCode::from(2))
        }
    }
}

/// How this rank talks to its peers: `shm`, `tcp` or `shm+tcp`.
fn transport_of(comm: &Communicator) -> &'static str {
    let links: Vec<&str> = (0..comm.size()).filter_map(|p| comm.transport(p)).collect();
    if links.iter().all(|&t| t == "shm") {
        "shm"
    } else if links.iter().all(|&t| t == "tcp") {
        "tcp"
    } else {
        "shm+tcp"
    }
}

/// The memory passes that an in-place AllReduce (sum) of private buffers
/// needs on one rank at the least, with the transfers left out: every peer's
/// values for this rank's `share` (`peers`, local copies standing for the
/// peers' buffers) are added into `buf`, then the other shares' results
/// (`result`) are copied in. For 2 ranks that is the reduction of half the
/// buffer (read two halves, write one) and a copy of the other half, which
/// any implementation must do, whoever's core does it (a CMA copy runs on
/// the calling core too). The local copies may sit in this core's cache
/// where a real peer's buffer would not, so the floor errs low.
fn all_reduce_floor(buf: &mut [f32], peers: &[&[f32]], result: &[f32], share: Range<usize>) {
    for peer in peers {
        for (b, v) in buf[share.clone()].iter_mut().zip(&peer[share.clone()]) {
            *b += v;
        }
    }
    buf[..share.start].copy_from_slice(&result[..share.start]);
    buf[share.end..].copy_from_slice(&result[share.end..]);
}

/// nccl-tests' bus bandwidth factor of a collective on `n` ranks.
fn bus_factor(op: &str, n: usize) -> f64 {
    let n = n as f64;
    match op {
        "all_reduce" | "all_reduce_floor" | "all_reduce_shared" => 2.0 * (n - 1.0) / n,
        "all_gather" | "reduce_scatter" | "all_to_all" => (n - 1.0) / n,
        _ => 1.0,
    }
}

/// Where a benchmark's result lies in its buffer.
type ResultOf<S> = dyn Fn(&S) -> &[f32];

/// One operation of a benchmark on its buffer.
type OneOperation<'a, S> = dyn Fn(&mut Communicator, &mut S) -> Result<(), CommError> + 'a;

/// One timed variant of a collective.
struct Timing {
    /// The slowest rank's mean time, seconds.
    secs: f64,
    /// Every rank's result matched.
    ok: bool,
}

/// Times `run` (one operation on `buf`) over `iters` iterations after 2
/// warm-ups, each preceded by `prepare(buf)` and a barrier and followed by
/// a comparison of `result(buf)` with `want`, both outside the timing; the
/// slowest rank's mean and whether every rank's every result was right.
fn time_collective<S: ?Sized>(
    comm: &mut Communicator,
    iters: usize,
    buf: &mut S,
    prepare: &dyn Fn(&mut S),
    run: &OneOperation<'_, S>,
    (result, want): (&ResultOf<S>, &[f32]),
) -> Result<Timing, CommError> {
    let mut total = 0.0;
    let mut ok = true;
    for it in 0..iters + 2 {
        prepare(buf);
        comm.barrier()?;
        let t = Instant::now();
        run(comm, buf)?;
        let elapsed = t.elapsed().as_secs_f64();
        ok &= result(buf) == want;
        if it >= 2 {
            total += elapsed;
        }
    }
    let mut t = [(total / iters as f64) as f32];
    comm.all_reduce(&mut t, ReduceOp::Max)?;
    let mut wrong = [if ok { 0.0f32 } else { 1.0 }];
    comm.all_reduce(&mut wrong, ReduceOp::Max)?;
    Ok(Timing {
        secs: t[0] as f64,
        ok: wrong[0] == 0.0,
    })
}

fn bench(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let boot = Bootstrap::from_env()?;
    let mut comm = Communicator::connect(&boot, Duration::from_secs_f64(a.timeout))?;
    let (rank, n) = (comm.rank(), comm.size());
    anyhow::ensure!(
        a.factor >= 2 && a.iters > 0 && a.min_bytes >= 4,
        "--factor >= 2, --iters >= 1, --min-bytes >= 4"
    );
    let transport = transport_of(&comm);
    const OPS: [&str; 8] = [
        "all_reduce",
        "all_reduce_floor",
        "all_reduce_shared",
        "all_gather",
        "reduce_scatter",
        "all_to_all",
        "broadcast",
        "reduce",
    ];
    if let Some(op) = a.ops.iter().find(|op| !OPS.contains(&op.as_str())) {
        anyhow::bail!(
            "--ops: unknown collective {op:?} (known: {})",
            OPS.join(", ")
        );
    }
    let mut rows = Vec::new();
    if rank == 0 {
        let model = comm.cost_model();
        println!(
            "exodus comm bench: {n} ranks, transport {transport}; the slowest rank's mean of {} iterations per size",
            a.iters
        );
        println!(
            "cost model: alpha {:.2} us, beta {:.2} GB/s, gamma {:.2} GB/s (algorithms by size in the JSON)",
            model.alpha * 1e6,
            1e-9 / model.beta,
            1e-9 / model.gamma
        );
        println!(
            "{:>12} {:>10} {:>14} | {:>22} {:>10} {:>10} | {:>22} {:>10} {:>10} | {:>5}",
            "bytes",
            "count",
            "op",
            "out-of-place time (us)",
            "algbw GB/s",
            "busbw GB/s",
            "in-place time (us)",
            "algbw GB/s",
            "busbw GB/s",
            "check"
        );
    }
    let mut bytes = a.min_bytes;
    while bytes <= a.max_bytes {
        for op in a.ops.iter().map(String::as_str) {
            // all_gather, reduce_scatter and all_to_all: `bytes` is the
            // whole buffer of n blocks, as in nccl-tests.
            let blocks = matches!(op, "all_gather" | "reduce_scatter" | "all_to_all");
            let count = if blocks {
                (bytes / 4 / n).max(1)
            } else {
                (bytes / 4).max(1)
            };
            let per_rank = if matches!(op, "reduce_scatter" | "all_to_all") {
                n * count
            } else {
                count
            };
            let mine = input(rank, per_rank);
            let all: Vec<Vec<f32>> = (0..n).map(|r| input(r, per_rank)).collect();
            let sum = |range: std::ops::Range<usize>| -> Vec<f32> {
                range.map(|i| all.iter().map(|v| v[i]).sum()).collect()
            };
            let want: Vec<f32> = match op {
                "all_reduce" | "all_reduce_floor" | "all_reduce_shared" => sum(0..count),
                "all_gather" => all.concat(),
                "reduce_scatter" => sum(rank * count..(rank + 1) * count),
                "all_to_all" => (0..n)
                    .flat_map(|i| all[i][rank * count..(rank + 1) * count].to_vec())
                    .collect(),
                "reduce" if rank == 0 => sum(0..count),
                "reduce" => mine.clone(),
                _ => input(0, count),
            };
            let moved = if blocks { n * count * 4 } else { count * 4 };
            // Buffers are allocated and touched once, outside the timing.
            let mut out = vec![0f32; want.len()];
            let mut buf = vec![0f32; want.len()];
            let none = |_: &mut Vec<f32>| {};
            let (out_of_place, in_place) = match op {
                "all_reduce" => (
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut out,
                        &none,
                        &|c, out| c.all_reduce_into(&mine, out, ReduceOp::Sum),
                        (&|b| b.as_slice(), &want),
                    )?),
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut buf,
                        &|buf| buf.copy_from_slice(&mine),
                        &|c, buf| c.all_reduce(buf, ReduceOp::Sum),
                        (&|b| b.as_slice(), &want),
                    )?),
                ),
                "all_reduce_floor" => {
                    let share = rank * count / n..(rank + 1) * count / n;
                    let peers: Vec<&[f32]> = (0..n)
                        .filter(|&r| r != rank)
                        .map(|r| all[r].as_slice())
                        .collect();
                    let timing = time_collective(
                        &mut comm,
                        a.iters,
                        &mut buf,
                        &|buf| buf.copy_from_slice(&mine),
                        &|_, buf| {
                            all_reduce_floor(buf, &peers, &want, share.clone());
                            Ok(())
                        },
                        (&|b| b.as_slice(), &want),
                    )?;
                    (None, Some(timing))
                }
                "all_reduce_shared" => {
                    // The input stands for values computed straight into
                    // the shared buffer: it is written outside the timing.
                    let mut shared = comm.shared_buffer::<f32>(count)?;
                    let timing = time_collective(
                        &mut comm,
                        a.iters,
                        &mut shared,
                        &|shared| shared.as_mut_slice().copy_from_slice(&mine),
                        &|c, shared| c.all_reduce_shared(shared, ReduceOp::Sum),
                        (&|s| s.as_slice(), &want),
                    )?;
                    (None, Some(timing))
                }
                "all_gather" => (
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut out,
                        &none,
                        &|c, out| c.all_gather(&mine, out),
                        (&|b| b.as_slice(), &want),
                    )?),
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut buf,
                        &|buf| {
                            buf.fill(0.0);
                            buf[rank * count..(rank + 1) * count].copy_from_slice(&mine);
                        },
                        &|c, buf| c.all_gather_in_place(buf),
                        (&|b| b.as_slice(), &want),
                    )?),
                ),
                "reduce_scatter" => (
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut out,
                        &none,
                        &|c, out| c.reduce_scatter(&mine, out, ReduceOp::Sum),
                        (&|b| b.as_slice(), &want),
                    )?),
                    None,
                ),
                "all_to_all" => (
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut out,
                        &none,
                        &|c, out| c.all_to_all(&mine, out),
                        (&|b| b.as_slice(), &want),
                    )?),
                    None,
                ),
                "reduce" => (
                    None,
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut buf,
                        &|buf| buf.copy_from_slice(&mine),
                        &|c, buf| c.reduce(buf, ReduceOp::Sum, 0),
                        (&|b| b.as_slice(), &want),
                    )?),
                ),
                _ => (
                    None,
                    Some(time_collective(
                        &mut comm,
                        a.iters,
                        &mut buf,
                        &|buf| {
                            if rank == 0 {
                                buf.copy_from_slice(&mine);
                            } else {
                                buf.fill(0.0);
                            }
                        },
                        &|c, buf| c.broadcast(buf, 0),
                        (&|b| b.as_slice(), &want),
                    )?),
                ),
            };
            let bw = |t: &Timing| {
                let algbw = moved as f64 / t.secs / 1e9;
                (t.secs * 1e6, algbw, algbw * bus_factor(op, n))
            };
            let ok = [&in_place, &out_of_place]
                .iter()
                .all(|t| t.as_ref().is_none_or(|t| t.ok));
            let check = if ok { "ok" } else { "WRONG" };
            let ip = in_place.as_ref().map(bw);
            let oop = out_of_place.as_ref().map(bw);
            if rank == 0 {
                let text = |m: Option<(f64, f64, f64)>| match m {
                    Some((t, algbw, busbw)) => format!("{t:>22.1} {algbw:>10.3} {busbw:>10.3}"),
                    None => format!("{:>22} {:>10} {:>10}", "-", "-", "-"),
                };
                println!(
                    "{moved:>12} {count:>10} {op:>14} | {} | {} | {check:>5}",
                    text(oop),
                    text(ip)
                );
            }
            let algo = match op {
                "all_reduce" => comm.select_all_reduce(moved).name(),
                "all_reduce_shared" if moved <= 8 << 10 => comm.select_all_reduce(moved).name(),
                "all_reduce_shared" => "shared",
                "all_reduce_floor" => "none (local passes)",
                "all_to_all" => "pairwise",
                "reduce" => "tree",
                "broadcast" => match BroadcastAlgo::select(n) {
                    BroadcastAlgo::Direct => "direct",
                    BroadcastAlgo::Tree => "tree",
                },
                _ => "ring",
            };
            let mut row = serde_json::json!({"op": op, "bytes": moved, "count": count, "algo": algo, "check": check});
            if let Some((t, algbw, busbw)) = ip {
                row["time_us"] = t.into();
                row["algbw_gbps"] = algbw.into();
                row["busbw_gbps"] = busbw.into();
            }
            if let Some((t, algbw, busbw)) = oop {
                row["out_of_place"] =
                    serde_json::json!({"time_us": t, "algbw_gbps": algbw, "busbw_gbps": busbw});
            }
            rows.push(row);
        }
        bytes *= a.factor;
    }
    if rank == 0 {
        if let Some(dir) = a.out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let report = serde_json::json!({"bench": "comm", "ranks": n, "transport": transport, "iters": a.iters, "rows": rows});
        std::fs::write(&a.out, serde_json::to_string_pretty(&report)? + "\n")?;
        println!("wrote {}", a.out.display());
    }
    let wrong = rows.iter().any(|r| r["check"] != "ok");
    Ok(if wrong {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
