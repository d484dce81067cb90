"""exodus serve against llama.cpp's server (llama-cpp-python's), same model,
same machine, one after the other in one run, measured by the same load
generator (`exodus bench serve`):

- concurrency 1, 4 and 8 with ~500-token prompts and 64-token outputs;
- concurrency 4 with ~2,000-token prompts.

pip install 'llama-cpp-python[server]'
cargo build --release -p exodus
python3 bench/serve_vs_llama_cpp.py [--requests 12]

Writes bench/results/serve-{exodus,llama-cpp}-{500,2000}.json (+ .svg) and
bench/results/serve-vs-llama-cpp.json with the ratios.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXODUS = ROOT / "target/release/exodus"
MODEL = pathlib.Path.home() / ".cache/exodus/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
RESULTS = ROOT / "bench/results"


def wait_ready(url, proc, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                return json.load(r)["data"][0]["id"]
        except Exception:
            time.sleep(0.5)
    raise SystemExit("the server did not come up")


def bench(url, label, name, concurrency, prompt, requests):
    out = RESULTS / f"serve-{label}-{name}.json"
    subprocess.run([str(EXODUS), "bench", "serve", "--url", url, "--label", label,
                    "--concurrency", concurrency, "--prompt-tokens", str(prompt),
                    "--output-tokens", "64", "--ignore-eos", "--requests", str(requests),
                    "--out", str(out)], check=True)
    return json.loads(out.read_text())


def run_server(label, cmd, url, requests):
    print(f"== {label}: {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, proc)
        short = bench(url, label, "500", "1,4,8", 500, requests)
        long = bench(url, label, "2000", "4", 2000, requests)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return short["levels"] + long["levels"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--model", default=str(MODEL))
    a = ap.parse_args()
    exodus = run_server("exodus", [str(EXODUS), "serve", "--port", "8301", "--model", a.model,
                                   "--offline", "--max-running", "8"],
                        "http://127.0.0.1:8301", a.requests)
    llama = run_server("llama-cpp", [sys.executable, "-m", "llama_cpp.server", "--model", a.model,
                                     "--n_threads", "2", "--n_threads_batch", "2", "--n_ctx", "4096",
                                     "--port", "8302", "--interrupt_requests", "False"],
                       "http://127.0.0.1:8302", a.requests)
    names = ["c1 p500", "c4 p500", "c8 p500", "c4 p2000"]
    rows = []
    print(f"{'':10} {'exodus ttft p99':>16} {'llama ttft p99':>15} {'ratio':>7} "
          f"{'exodus out tok/s':>17} {'llama out tok/s':>16} {'ratio':>7}")
    for n, e, l in zip(names, exodus, llama):
        et, lt = e["ttft_s"]["p99"], l["ttft_s"]["p99"]
        eo, lo = e["output_token_throughput"], l["output_token_throughput"]
        rows.append({"level": n, "exodus": e, "llama_cpp": l,
                     "ttft_p99_ratio": et / lt, "output_throughput_ratio": eo / lo})
        print(f"{n:10} {et:>16.3f} {lt:>15.3f} {et / lt:>7.2f} {eo:>17.1f} {lo:>16.1f} {eo / lo:>7.2f}")
    (RESULTS / "serve-vs-llama-cpp.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("wrote", RESULTS / "serve-vs-llama-cpp.json")


if __name__ == "__main__":
    main()
