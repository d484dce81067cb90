#!/usr/bin/env python3
"""Generate the golden tables that exodus-numerics is tested against.

References (PyPI): ml_dtypes (OCP FP8/FP6/FP4 and E8M0 casts), en_dtypes
(HiF8), numpy. The MX block reference is `mx_reference.py` beside this file,
written from the OCP MX v1.0 specification. GGUF goldens come from
`gguf_golden.py` (the `gguf` package).

    pip install numpy ml_dtypes en_dtypes
    python3 scripts/golden/generate.py      # rewrites crates/numerics/tests/data/

Files written (all little-endian):
- elements_decode.json: for each element format, the f32 bit pattern of
  every code (256 entries; FP6/FP4 codes above their width are omitted).
- bf16_encode/<format>-<mode>.bin: 65536 bytes, the code of every bf16 bit
  pattern (as f32: pattern << 16). mode "cast" is the package's own cast
  (ml_dtypes: RNE, overflow to Inf/NaN, FP6/FP4 saturate; E8M0 and HiF8
  round ties away), mode "saturate" clips to +-max before the cast.
- random_encode.json: sha256 per 65536-value chunk of the codes of random
  f32 inputs made by splitmix64 (see `random_f32`), same modes.
- mx/inputs.f32 and mx/<format>-<rule>.bin: see mx_reference.py.
- fp8_block/<case>.f32 and <case>-<scale>.bin: see block_fp8_reference.py.
"""
import hashlib
import json
import os
import sys

import ml_dtypes
import en_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import block_fp8_reference  # noqa: E402
import mx_reference  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "numerics", "tests", "data")

# name -> (numpy dtype, code width in bits, largest finite value,
#          exponent range [lo, hi] of the "range" random distribution)
FORMATS = {
    "fp8-e4m3": (ml_dtypes.float8_e4m3fn, 8, 448.0, (-12, 11)),
    "fp8-e5m2": (ml_dtypes.float8_e5m2, 8, 57344.0, (-19, 18)),
    "fp6-e2m3": (ml_dtypes.float6_e2m3fn, 6, 7.5, (-6, 5)),
    "fp6-e3m2": (ml_dtypes.float6_e3m2fn, 6, 28.0, (-7, 7)),
    "fp4-e2m1": (ml_dtypes.float4_e2m1fn, 4, 6.0, (-4, 5)),
    "e8m0": (ml_dtypes.float8_e8m0fnu, 8, 2.0**127, (-126, 127)),
    "hif8": (en_dtypes.hifloat8, 8, 32768.0, (-25, 18)),
}

GAMMA = np.uint64(0x9E3779B97F4A7C15)
CHUNK = 1 << 16
RANDOM_COUNT = 1 << 21


def splitmix64(seed, n):
    """The i-th output (i = 0..n-1) of splitmix64 started at `seed`."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (np.arange(1, n + 1, dtype=np.uint64) * GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def random_f32(dist, seed, n, lo=0, hi=0):
    """'bits': every f32 bit pattern equally likely (NaN, Inf, subnormals
    included); 'range': random sign and mantissa, exponent uniform in
    [lo, hi] (normal f32 only)."""
    z = splitmix64(seed, n)
    if dist == "bits":
        bits = (z >> np.uint64(32)).astype(np.uint32)
    else:
        sign = (z >> np.uint64(63)).astype(np.uint32)
        mant = ((z >> np.uint64(8)) & np.uint64(0x7FFFFF)).astype(np.uint32)
        span = np.uint64(hi - lo + 1)
        e = ((z >> np.uint64(32)) & np.uint64(0xFFFF)) % span
        e = (e.astype(np.int64) + lo + 127).astype(np.uint32)
        bits = (sign << np.uint32(31)) | (e << np.uint32(23)) | mant
    return bits.view(np.float32)


def encode(name, x, mode):
    dtype, width, maxval, _ = FORMATS[name]
    if mode == "saturate":
        x = np.clip(x, -maxval, maxval)  # NaN passes through
    with np.errstate(invalid="ignore", over="ignore"):
        codes = x.astype(dtype).view(np.uint8).copy()
    if name == "e8m0":
        # ml_dtypes rounds positive f32 subnormals as if 2^-127 were the
        # midpoint between 0 and 2^-126 (1.016 * 2^-127 becomes 2^-126).
        # The nearest E8M0 value is 2^-127 (code 0) below 1.5 * 2^-127 and
        # 2^-126 (code 1) from there on (ties away, as ml_dtypes does
        # elsewhere); record that.
        sub = (x > 0) & (x < np.float32(2.0**-126))
        codes[sub] = (x[sub].astype(np.float64) >= 1.5 * 2.0**-127).astype(np.uint8)
    if width < 8:
        # FP6/FP4 have no NaN. exodus encodes NaN as zero with the NaN's
        # sign; ml_dtypes gives zero with the opposite sign. The tables
        # record exodus' documented choice for these inputs only.
        nan = np.isnan(x)
        codes[nan] = (np.signbit(x[nan]).astype(np.uint8) << np.uint8(width - 1))
    return codes


def main():
    os.makedirs(os.path.join(OUT, "bf16_encode"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "mx"), exist_ok=True)

    decode = {}
    for name, (dtype, width, _, _) in FORMATS.items():
        codes = np.arange(1 << width, dtype=np.uint8)
        values = codes.view(dtype).astype(np.float32)
        decode[name] = [int(b) for b in values.view(np.uint32)]
    with open(os.path.join(OUT, "elements_decode.json"), "w") as f:
        json.dump({"source": versions(), "decode": decode}, f, indent=0)

    bf16_as_f32 = (np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)).view(np.float32)
    for name in FORMATS:
        for mode in ("cast", "saturate"):
            codes = encode(name, bf16_as_f32, mode)
            codes.tofile(os.path.join(OUT, "bf16_encode", f"{name}-{mode}.bin"))

    random = {"count": RANDOM_COUNT, "chunk": CHUNK, "source": versions(), "cases": {}}
    for index, (name, (_, _, _, (lo, hi))) in enumerate(FORMATS.items()):
        for dist in ("bits", "range"):
            seed = 1000 + 2 * index + (dist == "range")
            x = random_f32(dist, seed, RANDOM_COUNT, lo, hi)
            for mode in ("cast", "saturate"):
                codes = encode(name, x, mode)
                digests = [hashlib.sha256(codes[i:i + CHUNK].tobytes()).hexdigest()
                           for i in range(0, RANDOM_COUNT, CHUNK)]
                random["cases"][f"{name}-{mode}-{dist}"] = {
                    "seed": seed, "dist": dist, "lo": lo, "hi": hi, "sha256": digests}
    with open(os.path.join(OUT, "random_encode.json"), "w") as f:
        json.dump(random, f, indent=1)

    mx_reference.write_goldens(os.path.join(OUT, "mx"))
    block_fp8_reference.write_goldens(os.path.join(OUT, "fp8_block"))
    print("wrote", os.path.normpath(OUT))


def versions():
    return {"ml_dtypes": ml_dtypes.__version__, "en_dtypes": en_dtypes.__version__,
            "numpy": np.__version__}


if __name__ == "__main__":
    main()
