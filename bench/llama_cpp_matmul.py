#!/usr/bin/env python3
"""Prefill matmul (512 rows) against Q4 weights: llama.cpp's ggml vs exodus,
side by side on the same machine, shapes, thread count and run.

ggml is the CPU backend that llama-cpp-python builds from source (pip
compiles it with -march=native, so it uses every SIMD extension this CPU
has, as exodus does). The script calls ggml's C API through ctypes: one
context, `ggml_mul_mat(W, x)` with W a [n, k] tensor in Q4_1 / Q4_K (random
codes, sane scales) and x an f32 [512, k] tensor, computed with
`ggml_graph_compute_with_ctx(..., threads)`. That is the operation a
llama.cpp prompt evaluation spends its time in (ggml quantizes x to 8-bit
blocks and uses integer dots; exodus dequantizes W into packed f32 panels
and runs its f32 GEMM). Each timing includes ggml's thread start-up, which
is small next to these shapes (measured: `overhead_s` below, an empty
1x32x32 graph).

exodus runs the same cases through `exodus bench kernels --full --json`
(its 512-row prefill cases for the same shapes).

Usage:
  pip install llama-cpp-python numpy       # builds llama.cpp (~40 min on 2 cores)
  cargo build --release -p exodus
  python3 bench/llama_cpp_matmul.py [--threads 2] [--repeats 5]

Prints a table and writes bench/results/llama-cpp-q4.json.
"""

import argparse
import ctypes
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

ROWS = 512
GGML_TYPE = {"f32": 0, "q4_1": 3, "q4_k": 12}
# Shapes (n, k) by case name, as `exodus bench kernels` names them.
SHAPES = {
    "smollm2.matmul.{f}.q_o.m512": (576, 576),
    "smollm2.matmul.{f}.k_v.m512": (192, 576),
    "smollm2.matmul.{f}.gate_up.m512": (1536, 576),
    "smollm2.matmul.{f}.down.m512": (576, 1536),
    "7b.matmul.{f}.q_o.m512": (4096, 4096),
    "7b.matmul.{f}.gate_up11008.m512": (11008, 4096),
    "7b.matmul.{f}.down11008.m512": (4096, 11008),
}
ROOT = pathlib.Path(__file__).resolve().parent.parent


class InitParams(ctypes.Structure):
    _fields_ = [
        ("mem_size", ctypes.c_size_t),
        ("mem_buffer", ctypes.c_void_p),
        ("no_alloc", ctypes.c_bool),
    ]


def load_ggml():
    import llama_cpp

    lib_dir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    mode = getattr(os, "RTLD_GLOBAL", 0)
    base = ctypes.CDLL(str(lib_dir / "libggml-base.so"), mode=mode)
    cpu = ctypes.CDLL(str(lib_dir / "libggml-cpu.so"), mode=mode)
    p = ctypes.c_void_p
    base.ggml_init.argtypes, base.ggml_init.restype = [InitParams], p
    base.ggml_free.argtypes, base.ggml_free.restype = [p], None
    base.ggml_new_tensor_2d.argtypes = [p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    base.ggml_new_tensor_2d.restype = p
    base.ggml_mul_mat.argtypes, base.ggml_mul_mat.restype = [p, p, p], p
    base.ggml_new_graph.argtypes, base.ggml_new_graph.restype = [p], p
    base.ggml_build_forward_expand.argtypes = [p, p]
    base.ggml_build_forward_expand.restype = None
    base.ggml_get_data.argtypes, base.ggml_get_data.restype = [p], p
    base.ggml_nbytes.argtypes, base.ggml_nbytes.restype = [p], ctypes.c_size_t
    cpu.ggml_graph_compute_with_ctx.argtypes = [p, p, ctypes.c_int]
    cpu.ggml_graph_compute_with_ctx.restype = ctypes.c_int
    if hasattr(cpu, "ggml_cpu_init"):
        cpu.ggml_cpu_init.argtypes, cpu.ggml_cpu_init.restype = [], None
        cpu.ggml_cpu_init()
    features = {
        name: bool(getattr(cpu, f"ggml_cpu_has_{name}")())
        for name in ["avx2", "fma", "avx512", "avx512_vnni", "avx512_vbmi"]
        if hasattr(cpu, f"ggml_cpu_has_{name}")
    }
    return base, cpu, features


def random_blocks(fmt, n, k, rng):
    """Random codes with sane f16 scales, as raw bytes."""
    if fmt == "q4_1":
        blocks = rng.integers(0, 256, size=(n * k // 32, 20), dtype=np.uint8)
        scales = np.array([0.01, -0.1], dtype=np.float16).view(np.uint8)
        blocks[:, 0:4] = scales
    elif fmt == "q4_k":
        blocks = rng.integers(0, 256, size=(n * k // 256, 144), dtype=np.uint8)
        scales = np.array([0.001, 0.001], dtype=np.float16).view(np.uint8)
        blocks[:, 0:4] = scales
    else:
        raise ValueError(fmt)
    return blocks.tobytes()


def time_ggml(base, cpu, fmt, n, k, rows, threads, repeats, rng):
    w_bytes = len(random_blocks(fmt, 1, 256, rng)) * n * k // 256
    mem = w_bytes + 4 * rows * (k + n) + rows * k * 2 + (64 << 20)
    ctx = base.ggml_init(InitParams(mem, None, False))
    if not ctx:
        raise RuntimeError("ggml_init failed")
    try:
        w = base.ggml_new_tensor_2d(ctx, GGML_TYPE[fmt], k, n)
        x = base.ggml_new_tensor_2d(ctx, GGML_TYPE["f32"], k, rows)
        data = random_blocks(fmt, n, k, rng)
        assert base.ggml_nbytes(w) == len(data), (base.ggml_nbytes(w), len(data))
        ctypes.memmove(base.ggml_get_data(w), data, len(data))
        xs = rng.standard_normal(rows * k).astype(np.float32).tobytes()
        ctypes.memmove(base.ggml_get_data(x), xs, len(xs))
        out = base.ggml_mul_mat(ctx, w, x)
        graph = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(graph, out)
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            status = cpu.ggml_graph_compute_with_ctx(ctx, graph, threads)
            elapsed = time.perf_counter() - start
            if status != 0:
                raise RuntimeError(f"ggml_graph_compute failed: {status}")
            if i > 0:  # the first run warms up
                times.append(elapsed)
        return min(times), statistics.median(times)
    finally:
        base.ggml_free(ctx)


def ggml_overhead(base, cpu, threads, repeats, rng):
    """Time of a tiny f32 mul_mat: thread start-up and graph walk."""
    ctx = base.ggml_init(InitParams(16 << 20, None, False))
    try:
        w = base.ggml_new_tensor_2d(ctx, GGML_TYPE["f32"], 32, 32)
        x = base.ggml_new_tensor_2d(ctx, GGML_TYPE["f32"], 32, 1)
        graph = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(graph, base.ggml_mul_mat(ctx, w, x))
        times = []
        for _ in range(repeats * 20):
            start = time.perf_counter()
            cpu.ggml_graph_compute_with_ctx(ctx, graph, threads)
            times.append(time.perf_counter() - start)
        return min(times)
    finally:
        base.ggml_free(ctx)


def exodus_cases(threads, repeats, formats):
    exe = ROOT / "target" / "release" / "exodus"
    if not exe.exists():
        sys.exit(f"{exe} not found: run `cargo build --release -p exodus` first")
    cases = {}
    for fmt in formats:
        cmd = [str(exe), "bench", "kernels", "--full", "--json",
               "--filter", f"matmul.{fmt}.", "--threads", str(threads),
               "--repeats", str(repeats), "--out", os.devnull]
        report = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                           text=True).stdout)
        for case in report["cases"]:
            cases[case["name"]] = case
        level = report["simd_level"]
    return cases, level


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--formats", default="q4_1,q4_k")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "llama-cpp-q4.json"))
    args = ap.parse_args()
    formats = args.formats.split(",")
    rng = np.random.default_rng(1)
    base, cpu, features = load_ggml()
    import llama_cpp

    overhead = ggml_overhead(base, cpu, args.threads, args.repeats, rng)
    ours, level = exodus_cases(args.threads, args.repeats, formats)
    rows = []
    print(f"prefill matmul, {ROWS} rows, {args.threads} threads; exodus simd {level}; "
          f"ggml (llama-cpp-python {llama_cpp.__version__}) cpu features {features}")
    print(f"ggml per-call overhead (1x32x32 graph): {overhead * 1e6:.0f} us")
    print(f"{'case':36} {'ggml ms':>9} {'exodus ms':>10} {'ggml GF/s':>10} "
          f"{'exodus GF/s':>12} {'exodus/ggml':>12}")
    for fmt in formats:
        for pattern, (n, k) in SHAPES.items():
            name = pattern.format(f=fmt)
            if name not in ours:
                continue
            g_min, g_med = time_ggml(base, cpu, fmt, n, k, ROWS, args.threads,
                                     args.repeats, rng)
            e_min, e_med = ours[name]["min_s"], ours[name]["median_s"]
            flops = 2.0 * ROWS * n * k
            speed = g_min / e_min
            rows.append({
                "case": name, "format": fmt, "rows": ROWS, "n": n, "k": k,
                "ggml_min_s": g_min, "ggml_median_s": g_med,
                "exodus_min_s": e_min, "exodus_median_s": e_med,
                "ggml_gflops": flops / g_min / 1e9,
                "exodus_gflops": flops / e_min / 1e9,
                "exodus_speed_vs_ggml": speed,
            })
            print(f"{name:36} {g_min * 1e3:9.2f} {e_min * 1e3:10.2f} "
                  f"{flops / g_min / 1e9:10.1f} {flops / e_min / 1e9:12.1f} {speed:11.2f}x")
    report = {
        "bench": "llama-cpp-q4-prefill-matmul",
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": ROWS,
        "exodus_simd_level": level,
        "llama_cpp_python": llama_cpp.__version__,
        "ggml_cpu_features": features,
        "ggml_call_overhead_s": overhead,
        "cases": rows,
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
