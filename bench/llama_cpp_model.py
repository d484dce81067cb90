"""exodus against llama.cpp on the same GGUF file, side by side in one run:
prompt processing (pp, tokens per second over one batch of N tokens) and
token generation (tg, one token per step), like llama-bench, min/median over
repeats, 2 threads each; then the ratios.

pip install llama-cpp-python numpy
cargo build --release -p exodus
python3 bench/llama_cpp_model.py [--model PATH] [--pp 512] [--tg 128] [--repeats 3]

Writes bench/results/model-vs-llama-cpp.json.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import time

import llama_cpp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def llama_cpp_speed(model, pp, tg, repeats):
    llm = llama_cpp.Llama(model_path=model, n_ctx=pp + tg + 8, n_batch=pp, n_threads=2,
                          n_threads_batch=2, verbose=False)
    vocab = llm.n_vocab()
    tokens = [(i * 7919 + 13) % vocab for i in range(pp)]
    llm.reset()
    llm.eval(tokens)  # warm up
    pps, tgs = [], []
    for _ in range(repeats):
        llm.reset()
        t = time.perf_counter()
        llm.eval(tokens)
        pps.append(pp / (time.perf_counter() - t))
        llm.reset()
        t = time.perf_counter()
        for i in range(tg):
            llm.eval([tokens[i % pp]])
        tgs.append(tg / (time.perf_counter() - t))
    return pps, tgs


def exodus_speed(model, pp, tg, repeats, mode):
    out = ROOT / "bench/results" / f"model-exodus-{mode}.json"
    subprocess.run([str(ROOT / "target/release/exodus"), "bench", "model", "--model", model,
                    "--mode", mode, "--pp", str(pp), "--tg", str(tg), "--repeats", str(repeats),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text())
    return r["pp_tokens_per_second"], r["tg_tokens_per_second"], r["tg_bound_tokens_per_second"]


def main():
    ap = argparse.ArgumentParser()
    default = pathlib.Path.home() / ".cache/exodus/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    ap.add_argument("--model", default=str(default))
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    pps, tgs = llama_cpp_speed(a.model, a.pp, a.tg, a.repeats)
    rows = {"llama.cpp": {"pp": {"min": min(pps), "median": statistics.median(pps), "max": max(pps)},
                          "tg": {"min": min(tgs), "median": statistics.median(tgs), "max": max(tgs)}}}
    bounds = []
    for mode in ["graph", "eager"]:
        pp, tg, bound = exodus_speed(a.model, a.pp, a.tg, a.repeats, mode)
        rows[f"exodus {mode}"] = {"pp": pp, "tg": tg}
        bounds.append(bound)
    # The tg bound (weights read per token at the measured read bandwidth),
    # from each exodus run; the higher one is the machine's ceiling.
    bound = max(bounds)
    base = rows["llama.cpp"]
    print(f"{'':16} {'pp' + str(a.pp) + ' tok/s (median)':>24} {'tg' + str(a.tg) + ' tok/s (median)':>24} {'pp ratio':>9} {'tg ratio':>9} {'tg/bound':>9}")
    for name, r in rows.items():
        print(f"{name:16} {r['pp']['median']:>24.1f} {r['tg']['median']:>24.1f} "
              f"{r['pp']['median'] / base['pp']['median']:>8.2f}x {r['tg']['median'] / base['tg']['median']:>8.2f}x "
              f"{100 * r['tg']['median'] / bound:>8.0f}%")
    print(f"tg bound (weights per token at the measured read bandwidth): {bound:.1f} tok/s")
    out = {"model": pathlib.Path(a.model).name, "pp": a.pp, "tg": a.tg, "repeats": a.repeats,
           "llama_cpp_python": llama_cpp.__version__, "rows": rows, "tg_bound": bound}
    path = ROOT / "bench/results/model-vs-llama-cpp.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
