#!/usr/bin/env python3
"""Markdown table of the exodus-numerics codec benchmark, from the JSON files
that `cargo bench -p exodus-numerics` writes into bench/results/.

    python3 bench/numerics_table.py 4194304 65536 > /tmp/table.md

For each size: dequantize and quantize throughput (GB/s of f32, best of the
repeats) on the detected SIMD level and on the scalar path, each as a ratio
to memcpy of the same f32 bytes measured in the same run.
"""
import json
import os
import sys

HERE = os.path.join(os.path.dirname(__file__), "results")


def load(level, values):
    with open(os.path.join(HERE, f"numerics-{level}-{values}.json")) as f:
        return json.load(f)


def fmt(v):
    return "-" if v is None else f"{v:.2f}"


def table(values):
    simd = load("avx2", values)
    scalar = load("scalar", values)
    mib = values * 4 / 2**20
    out = [
        f"### {values} values ({mib:g} MiB of f32), single thread",
        "",
        f"memcpy: {simd['memcpy_gbps_best']:.1f} GB/s in the AVX2 run, "
        f"{scalar['memcpy_gbps_best']:.1f} GB/s in the scalar run; "
        f"{simd['repeats']} repeats, best shown (medians in the JSON).",
        "",
        "| format | dequant AVX2 GB/s | ×memcpy | dequant scalar GB/s | ×memcpy | quant AVX2 GB/s | ×memcpy | quant scalar GB/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_name = {f["format"]: f for f in scalar["formats"]}
    for f in simd["formats"]:
        s = by_name[f["format"]]
        out.append(
            f"| {f['format']} | {fmt(f['dequantize_gbps_best'])} | {fmt(f['dequantize_vs_memcpy'])} "
            f"| {fmt(s['dequantize_gbps_best'])} | {fmt(s['dequantize_vs_memcpy'])} "
            f"| {fmt(f['quantize_gbps_best'])} | {fmt(f['quantize_vs_memcpy'])} "
            f"| {fmt(s['quantize_gbps_best'])} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    sizes = sys.argv[1:] or ["4194304", "65536"]
    print("\n\n".join(table(int(v)) for v in sizes))
