"""OCP MX v1.0 block quantization, written from the specification (section
6.3, "conversion from scalar floats to MX"), with numpy and ml_dtypes.

Per block of 32 values V:
  shared_exp = floor(log2(max |V|)) - emax_elem          (rule "floor", the spec)
  shared_exp = smallest k with max_elem * 2^k >= max |V|  (rule "ceil", round-up)
  X = 2^shared_exp, clamped to E8M0's [-127, 127]
  P_i = element(V_i / X), round to nearest even, saturate to +-max_elem
Choices where the spec leaves room (mirrored in exodus' mx.rs docs): a
block containing NaN or Inf gets scale NaN (0xFF) and zero element codes;
an all-zero block gets scale code 0 (2^-127); MXINT8 elements are
round-half-even(V/X * 64) clamped to [-127, 127].

Byte layout per block: scale byte, then the 32 element codes packed as a
little-endian bit stream (FP4: element 2j in the low nibble of byte j; FP6:
6 bits each; FP8/INT8: one byte each).

write_goldens(dir) writes inputs.f32 (float32 values, a multiple of 32,
blocks back to back) and <format>-<rule>.bin (the expected encoded blocks).
"""
import os

import ml_dtypes
import numpy as np

# name -> (element dtype or None for int8, bits, emax_elem, max_elem)
ELEMENTS = {
    "mxfp8-e4m3": (ml_dtypes.float8_e4m3fn, 8, 8, 448.0),
    "mxfp8-e5m2": (ml_dtypes.float8_e5m2, 8, 15, 57344.0),
    "mxfp6-e2m3": (ml_dtypes.float6_e2m3fn, 6, 2, 7.5),
    "mxfp6-e3m2": (ml_dtypes.float6_e3m2fn, 6, 4, 28.0),
    "mxfp4": (ml_dtypes.float4_e2m1fn, 4, 2, 6.0),
    "mxint8": (None, 8, 0, 127.0 / 64.0),
}


def floor_log2(a):
    """Exact floor(log2(a)) for a finite positive float."""
    _, e = np.frexp(a)  # a = m * 2^e, m in [0.5, 1)
    return int(e) - 1


def shared_exponent(amax, emax, maxval, rule):
    if amax == 0.0:
        return -127
    if rule == "floor":
        k = floor_log2(amax) - emax
    else:
        k = floor_log2(amax) - floor_log2(maxval)
        while maxval * 2.0**k < amax:
            k += 1
        while maxval * 2.0**(k - 1) >= amax:
            k -= 1
    return max(-127, min(127, k))


def pack(codes, bits):
    stream = 0
    for i, c in enumerate(int(c) for c in codes):
        stream |= (c & ((1 << bits) - 1)) << (bits * i)
    return stream.to_bytes(len(codes) * bits // 8, "little")


def quantize_block(v, name, rule):
    dtype, bits, emax, maxval = ELEMENTS[name]
    v64 = v.astype(np.float64)
    if not np.all(np.isfinite(v64)):
        return bytes([0xFF]) + bytes(len(v) * bits // 8)
    k = shared_exponent(float(np.max(np.abs(v64))), emax, maxval, rule)
    # V / X is exact in float32 wherever it matters (ml_dtypes casts
    # float64 through float32, so divide in float64 and narrow once).
    scaled = (v64 / 2.0**k).astype(np.float32)
    if dtype is None:
        q = np.clip(np.round(scaled.astype(np.float64) * 64.0), -127, 127).astype(np.int8)
        codes = q.view(np.uint8)
    else:
        codes = np.clip(scaled, -maxval, maxval).astype(dtype).view(np.uint8)
    return bytes([k + 127]) + pack(codes, bits)


def test_blocks():
    """Random and adversarial blocks, float32, shape (n, 32)."""
    rng = np.random.default_rng(20261129)
    blocks = []
    for _ in range(24):
        blocks.append(rng.standard_normal(32) * 2.0 ** rng.integers(-20, 21))
    for _ in range(8):
        blocks.append(rng.standard_t(3, 32))
    for _ in range(8):  # random finite bit patterns: every binade
        bits = rng.integers(0, 2**32, 32, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32).copy()
        x[~np.isfinite(x)] = 1.0
        blocks.append(x)
    zeros = np.zeros(32)
    blocks.append(zeros)
    blocks.append(-zeros)
    one_huge = rng.standard_normal(32) * 1e-3
    one_huge[7] = 3.0e38
    blocks.append(one_huge)
    with_nan = rng.standard_normal(32)
    with_nan[3] = np.nan
    blocks.append(with_nan)
    with_inf = rng.standard_normal(32)
    with_inf[30] = -np.inf
    blocks.append(with_inf)
    blocks.append(rng.standard_normal(32) * 1e-40)  # f32 subnormals only
    blocks.append(np.full(32, np.finfo(np.float32).max) * np.where(rng.random(32) < 0.5, -1, 1))
    # Exact ties of the element grids at scale 2^0 (amax pins the scale).
    ties = np.array([448.0, 1.0625, -2.125, 3.25, 0.5 + 2**-5, 1.25, -2.5, 5.0, 0.75, 0.25,
                     6.0, 7.5, 28.0, 1.0 + 2**-7, 2**-9 * 1.5, 2**-10] * 2)
    blocks.append(ties)
    ties_fp4 = ties.copy()
    ties_fp4[0] = 6.0
    blocks.append(ties_fp4)
    for amax in (8.0, 7.99, 448.0, 449.0, 1.0, 0.999):  # scale rule boundaries
        b = rng.standard_normal(32) * 0.1
        b[11] = amax
        blocks.append(b)
    tiny = rng.standard_normal(32) * 1e-38
    tiny[0] = 2.0**-126
    blocks.append(tiny)
    return np.array(blocks, dtype=np.float32)


def write_goldens(out_dir):
    x = test_blocks()
    x.tofile(os.path.join(out_dir, "inputs.f32"))
    for name in ELEMENTS:
        for rule in ("floor", "ceil"):
            data = b"".join(quantize_block(block, name, rule) for block in x)
            with open(os.path.join(out_dir, f"{name}-{rule}.bin"), "wb") as f:
                f.write(data)
