#!/usr/bin/env python3
"""Perplexity of every KV cache format, with and without KV centering.

Runs `exodus perplexity` (llama.cpp's method) on the same text for each
`--kv-dtype`, once as is and, for the coarse formats (FP8, MX), once with
`--no-kv-centering`, and prints a markdown table of the perplexity and its
change against bf16. Also writes the numbers as JSON.

    cargo build --release -p exodus
    python3 bench/kv_perplexity.py --out bench/results/kv-perplexity.json
"""

import argparse
import json
import re
import subprocess
import sys

FORMATS = ["bf16", "f16", "fp8-e4m3", "fp8-e5m2", "mxfp8", "mxfp4"]
COARSE = {"fp8-e4m3", "fp8-e5m2", "mxfp8", "mxfp4"}


def perplexity(exodus, text, ctx, fmt, centering):
    cmd = [exodus, "perplexity", "-f", text, "-c", str(ctx), "--kv-dtype", fmt, "--offline"]
    if not centering:
        cmd.append("--no-kv-centering")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"^perplexity ([0-9.]+)", out.stdout + out.stderr, re.M)
    if not m:
        sys.exit(f"no perplexity in the output of {' '.join(cmd)}:\n{out.stdout}{out.stderr}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exodus", default="target/release/exodus")
    ap.add_argument("--text", default="crates/model/tests/golden/gpl-3.txt")
    ap.add_argument("-c", "--ctx", type=int, default=512)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    rows = []
    for fmt in FORMATS:
        for centering in ([True, False] if fmt in COARSE else [False]):
            ppl = perplexity(args.exodus, args.text, args.ctx, fmt, centering)
            rows.append({"format": fmt, "centering": centering, "perplexity": ppl})
            print(f"{fmt} centering={centering}: {ppl:.4f}", file=sys.stderr)
    base = next(r["perplexity"] for r in rows if r["format"] == "bf16")
    print("| `--kv-dtype` | centering | perplexity | vs bf16 |")
    print("|---|---|---|---|")
    for r in rows:
        delta = (r["perplexity"] / base - 1) * 100
        on = "on" if r["centering"] else ("off" if r["format"] in COARSE else "—")
        print(f"| {r['format']} | {on} | {r['perplexity']:.4f} | {delta:+.2f}% |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"text": args.text, "ctx": args.ctx, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
