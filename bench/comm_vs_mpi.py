"""exodus-comm against Open MPI on this machine: the same collectives, the
same sizes, the same timing (slowest rank's mean of 10 calls after 2
warm-ups, each after a barrier), one after the other in each round, for
several rounds; reports min and median over rounds of each side and of the
per-round ratio.

apt-get install openmpi-bin libopenmpi-dev
cargo build --release -p exodus
python3 bench/comm_vs_mpi.py [--ranks 2] [--rounds 5] [--max-bytes 33554432]

Compared (AllReduce is f32 sum; busbw with nccl-tests' factors):

- AllReduce out of place: `all_reduce_into` vs `MPI_Allreduce(in, out)`;
- AllReduce in place: `all_reduce` vs `MPI_Allreduce(MPI_IN_PLACE)`;
- AllReduce on exodus shared buffers (`all_reduce_shared`, the values
  computed straight into memory every local rank maps) vs Open MPI in
  place, its faster form;
- AllGather out of place;
- the floor of any AllReduce of private buffers (`all_reduce_floor`: no
  transfer at all, each rank only does the memory passes an in-place
  AllReduce needs, on local copies) against Open MPI in place: its
  "speed-up" is the most that any library could gain over Open MPI without
  shared buffers on these cores.

Writes bench/results/comm-vs-openmpi.json and prints a markdown table.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXODUS = ROOT / "target/release/exodus"
HARNESS_SRC = ROOT / "bench/mpi/collectives.c"
RESULTS = ROOT / "bench/results"


def run_exodus(ranks, min_bytes, max_bytes):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [EXODUS, "launch", "-n", str(ranks), "--", EXODUS, "comm", "bench",
             "--min-bytes", str(min_bytes), "--max-bytes", str(max_bytes),
             "--ops", "all_reduce,all_reduce_floor,all_reduce_shared,all_gather", "--out", out.name],
            check=True, stdout=subprocess.DEVNULL)
        rows = json.load(open(out.name))["rows"]
    times = {}
    for r in rows:
        assert r["check"] == "ok", r
        b = r["bytes"]
        if r["op"] == "all_reduce":
            times[("all_reduce out-of-place", b)] = r["out_of_place"]["time_us"]
            times[("all_reduce in-place", b)] = r["time_us"]
        elif r["op"] == "all_reduce_floor":
            times[("all_reduce floor, private buffers", b)] = r["time_us"]
        elif r["op"] == "all_reduce_shared":
            times[("all_reduce shared buffer", b)] = r["time_us"]
        elif r["op"] == "all_gather":
            times[("all_gather out-of-place", b)] = r["out_of_place"]["time_us"]
    return times


def run_mpi(harness, ranks, min_bytes, max_bytes):
    out = subprocess.run(
        ["mpirun", "-n", str(ranks), "--allow-run-as-root", harness,
         str(min_bytes), str(max_bytes), "4"],
        check=True, capture_output=True, text=True).stdout
    times = {}
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        b, _, op, oop, ip = line.split()
        b = int(b)
        if op == "all_reduce":
            times[("all_reduce out-of-place", b)] = float(oop)
            times[("all_reduce in-place", b)] = float(ip)
            # exodus' shared buffers are compared with MPI's faster form.
            times[("all_reduce shared buffer", b)] = min(float(oop), float(ip))
            times[("all_reduce floor, private buffers", b)] = float(ip)
        else:
            times[("all_gather out-of-place", b)] = float(oop)
    return times


def busbw(op, bytes_, us, ranks):
    factor = 2 * (ranks - 1) / ranks if op.startswith("all_reduce") else (ranks - 1) / ranks
    return bytes_ / (us * 1e-6) / 1e9 * factor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-bytes", type=int, default=8)
    ap.add_argument("--max-bytes", type=int, default=32 << 20)
    a = ap.parse_args()
    harness = pathlib.Path(tempfile.gettempdir()) / "exodus_mpi_collectives"
    subprocess.run(["mpicc", "-O2", "-o", harness, HARNESS_SRC], check=True)
    rounds = []
    for i in range(a.rounds):
        ex = run_exodus(a.ranks, a.min_bytes, a.max_bytes)
        mp = run_mpi(harness, a.ranks, a.min_bytes, a.max_bytes)
        rounds.append((ex, mp))
        print(f"round {i + 1} of {a.rounds} done", flush=True)
    keys = sorted(rounds[0][0], key=lambda k: (k[0], k[1]))
    table = []
    print(f"\n{a.ranks} ranks, {a.rounds} rounds: min / median over rounds")
    print("| collective | bytes | exodus time (us) | Open MPI time (us) | exodus busbw (GB/s) | Open MPI busbw (GB/s) | speed-up (exodus / MPI) |")
    print("|---|---|---|---|---|---|---|")
    for k in keys:
        if not all(k in mp for _, mp in rounds):
            continue
        op, b = k
        ex_t = [ex[k] for ex, _ in rounds]
        mp_t = [mp[k] for _, mp in rounds]
        ratios = [m / e for e, m in zip(ex_t, mp_t)]
        row = {
            "collective": op, "bytes": b,
            "exodus_us": {"min": min(ex_t), "median": statistics.median(ex_t)},
            "mpi_us": {"min": min(mp_t), "median": statistics.median(mp_t)},
            "speedup": {"min": min(ratios), "median": statistics.median(ratios)},
        }
        table.append(row)
        print(f"| {op} | {b} | {min(ex_t):.1f} / {statistics.median(ex_t):.1f} | "
              f"{min(mp_t):.1f} / {statistics.median(mp_t):.1f} | "
              f"{busbw(op, b, min(ex_t), a.ranks):.2f} | {busbw(op, b, min(mp_t), a.ranks):.2f} | "
              f"{min(ratios):.2f}x / {statistics.median(ratios):.2f}x |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"comm-vs-openmpi-{a.ranks}ranks.json"
    path.write_text(json.dumps({"ranks": a.ranks, "rounds": a.rounds, "rows": table}, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
