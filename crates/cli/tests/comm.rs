//! exodus-comm with real processes, over shared memory, over loopback TCP
//! with every rank on a "host" of its own, and over two "hosts" (shared
//! memory within, TCP between): `exodus launch -n N --
//! exodus comm check` for 2 to 5 ranks (every collective against a serial reference,
//! sizes from 0 to 65,537 values, counts not divisible by N), and faults:
//! a rank that dies mid-AllReduce and one that stalls give every survivor
//! a typed error naming the operation and the peer, within the timeout
//! (for a stall, the stalled rank's neighbour names it; the others may see
//! the neighbour give up first).

use std::process::Command;
use std::time::{Duration, Instant};

/// How the ranks of a test job talk.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// Shared memory (the ranks share this host).
    Shm,
    /// TCP over loopback, each rank on a "host" of its own.
    Tcp,
    /// Two "hosts" of consecutive ranks: shared memory within each, TCP
    /// between them.
    TwoHosts,
}

fn launch_over(
    transport: Transport,
    n: usize,
    check_args: &[&str],
) -> (bool, String, String, Duration) {
    let exodus = env!("CARGO_BIN_EXE_exodus");
    let start = Instant::now();
    let topology: &[&str] = match transport {
        Transport::Shm => &[],
        Transport::Tcp => &["--separate-hosts"],
        Transport::TwoHosts => &["--hosts", "2"],
    };
    let out = Command::new(exodus)
        .args(["launch", "-n", &n.to_string(), "--grace", "5"])
        .args(topology)
        .args(["--", exodus, "comm", "check"])
        .args(check_args)
        .output()
        .expect("exodus launch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn every_collective_matches_the_serial_reference_on_2_to_5_ranks() {
    let jobs = (2..=5)
        .map(|n| (Transport::Shm, n))
        .chain((2..=5).map(|n| (Transport::Tcp, n)))
        .chain([(Transport::TwoHosts, 4), (Transport::TwoHosts, 5)]);
    for (transport, n) in jobs {
        {
            let (ok, stdout, stderr, _) = launch_over(transport, n, &["--timeout", "30"]);
            assert!(ok, "{transport:?}, {n} ranks:\n{stdout}\n{stderr}");
            let links = match transport {
                Transport::Shm => "shm",
                Transport::Tcp => "tcp",
                Transport::TwoHosts => "shm+tcp",
            };
            for r in 0..n {
                assert!(
                    stdout.contains(&format!(
                        "rank {r} of {n} ({links}): every collective matched"
                    )),
                    "{transport:?}, {n} ranks, rank {r}:\n{stdout}\n{stderr}"
                );
            }
        }
    }
}

#[test]
fn a_dead_rank_gives_every_survivor_a_typed_error() {
    for transport in [Transport::Shm, Transport::Tcp] {
        let (ok, _, stderr, took) =
            launch_over(transport, 3, &["--timeout", "20", "--die-rank", "1"]);
        assert!(!ok, "{transport:?}: the job succeeded with a dead rank");
        // Rank 1 died by kill -9: no destructor, no shutdown of its links.
        assert!(
            stderr.contains("rank 1: signal: 9"),
            "{transport:?}: {stderr}"
        );
        for r in [0, 2] {
            let line = stderr
                .lines()
                .find(|l| l.starts_with(&format!("rank {r} of 3:")))
                .unwrap_or_else(|| panic!("{transport:?}: no error from rank {r}:\n{stderr}"));
            assert!(
                line.contains("all_reduce (ring)") && line.contains("peer rank"),
                "{transport:?}: {line}"
            );
        }
        // A dead peer is noticed when its connection closes (over shared
        // memory too), not at the timeout.
        assert!(
            took < Duration::from_secs(15),
            "{transport:?} took {took:?}:\n{stderr}"
        );
    }
}

#[test]
fn a_stalled_rank_gives_every_survivor_a_timeout_naming_it() {
    for transport in [Transport::Shm, Transport::Tcp] {
        let (ok, _, stderr, took) =
            launch_over(transport, 3, &["--timeout", "2", "--stall-rank", "2"]);
        assert!(!ok, "{transport:?}");
        // The stalled rank's ring neighbour times out naming it; the other
        // survivor may first see that neighbour give up (its connection
        // closes): either way a typed error from the AllReduce, in time.
        let mut named_the_stalled_rank = false;
        for r in [0, 1] {
            let line = stderr
                .lines()
                .find(|l| l.starts_with(&format!("rank {r} of 3:")))
                .unwrap_or_else(|| panic!("{transport:?}: no error from rank {r}:\n{stderr}"));
            assert!(line.contains("all_reduce (ring)"), "{transport:?}: {line}");
            assert!(
                line.contains("no answer within 2s") || line.contains("closed the connection"),
                "{transport:?}: {line}"
            );
            named_the_stalled_rank |= line.contains("peer rank 2: no answer within 2s");
        }
        assert!(
            named_the_stalled_rank,
            "{transport:?}: no survivor named rank 2:\n{stderr}"
        );
        assert!(
            stderr.contains("rank 2: killed after the grace period"),
            "{transport:?}: {stderr}"
        );
        assert!(
            took < Duration::from_secs(30),
            "{transport:?} took {took:?}"
        );
    }
}

#[test]
fn a_calibration_file_is_written_read_back_and_checked() {
    let exodus = env!("CARGO_BIN_EXE_exodus");
    let dir = std::env::temp_dir().join(format!("exodus-calibration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("comm.calibration");
    let out = Command::new(exodus)
        .args([
            "launch",
            "-n",
            "2",
            "--",
            exodus,
            "comm",
            "calibrate",
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("AllReduce of 8 bytes:"), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    for key in ["alpha_us", "beta_gbps", "gamma_gbps"] {
        assert!(text.contains(key), "{text}");
    }
    // The file is used as is: the job runs with it.
    let out = Command::new(exodus)
        .args(["launch", "-n", "2", "--", exodus, "comm", "check"])
        .env("EXODUS_COMM_CALIBRATION", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken one is a clear error, not a guess.
    std::fs::write(&file, "alpha_us = soon\n").unwrap();
    let out = Command::new(exodus)
        .args([
            "launch", "-n", "2", "--grace", "2", "--", exodus, "comm", "check",
        ])
        .env("EXODUS_COMM_CALIBRATION", &file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("EXODUS_COMM_CALIBRATION") && stderr.contains("not a number"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct TwoNetworks {
    names: [String; 2],
}

impl TwoNetworks {
    /// Creates them (10.213.N.1 and .2, N from the process id), or says
    /// why it cannot (not root, no `ip`).
    fn create() -> Result<TwoNetworks, String> {
        let id = std::process::id() % 50_000;
        let subnet = id % 250 + 1;
        let names = [format!("exa{id}"), format!("exb{id}")];
        let nets = TwoNetworks {
            names: names.clone(),
        };
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let (a, b) = (&names[0], &names[1]);
        let (va, vb) = (format!("va{id}"), format!("vb{id}"));
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", a])?;
        ip(&["link", "set", &vb, "netns", b])?;
        for (ns, dev, host) in [(a, &va, 1), (b, &vb, 2)] {
            let addr = format!("10.213.{subnet}.{host}/24");
            ip(&["netns", "exec", ns, "ip", "addr", "add", &addr, "dev", dev])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", dev, "up"])?;
            ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(nets)
    }

    fn address(&self, host: usize) -> String {
        let id = std::process::id() % 50_000;
        format!("10.213.{}.{}", id % 250 + 1, host + 1)
    }
}

impl Drop for TwoNetworks {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn ranks_in_two_network_namespaces_talk_over_tcp_between_and_shared_memory_within() {
    let nets = match TwoNetworks::create() {
        Ok(nets) => nets,
        Err(why) => {
            // The issue asks for namespaces "where the machine allows";
            // the loopback tests above cover the rest.
            eprintln!("skipped: network namespaces are not available here ({why})");
            return;
        }
    };
    let exodus = env!("CARGO_BIN_EXE_exodus");
    let master = nets.address(0);
    // Ranks 0 and 1 in the first namespace ("host a"), 2 and 3 in the
    // second ("host b").
    let ranks: Vec<_> = (0..4)
        .map(|rank| {
            let host = rank / 2;
            Command::new("ip")
                .args(["netns", "exec", &nets.names[host], exodus, "comm", "check"])
                .args(["--timeout", "30"])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "4")
                .env("MASTER_ADDR", &master)
                .env("MASTER_PORT", "29517")
                .env("EXODUS_COMM_HOST", ["a", "b"][host])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("ip netns exec starts")
        })
        .collect();
    for (rank, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "rank {rank}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "rank {rank} of 4 (shm+tcp): every collective matched"
            )),
            "{stdout}"
        );
    }
}
