"""DeepSeek-style block-scaled FP8 (E4M3 values, one scale per tile), the
way DeepSeek-V3's reference PyTorch code quantizes, in numpy + ml_dtypes:

  amax = max |x| over the tile              (float32)
  s    = amax / 448                          (scale "f32", float32 division)
  s    = 2^ceil(log2(amax / 448))            (scale "ue8m0", a power of two)
  q    = e4m3(clip(x / s, -448, 448))        (float32 division, RNE)

An all-zero tile gets s = 1; a tile holding NaN gets s = NaN (exodus' choices
for cases the reference code does not guard). Tiles at the right and bottom
edges may be partial.

write_goldens(dir) writes, for each case, <case>.f32 (the input, row-major)
and <case>-<scale>.bin: the E4M3 codes (rows*cols bytes) followed by the
scales (float32 LE for "f32", E8M0 code bytes for "ue8m0"), row-major over
the tile grid.
"""
import os

import ml_dtypes
import numpy as np

CASES = {
    # name: (rows, cols, tile_rows, tile_cols)
    "weight-140x260": (140, 260, 128, 128),
    "activation-3x384": (3, 384, 1, 128),
}


def scale_of(amax, kind):
    if amax == 0:
        return np.float32(1.0)
    if np.isnan(amax):
        return np.float32(np.nan)
    if kind == "f32":
        return np.float32(amax) / np.float32(448.0)
    k = int(np.floor(np.log2(np.float64(amax)))) - 8
    while 448.0 * 2.0**k < amax:
        k += 1
    while 448.0 * 2.0**(k - 1) >= amax:
        k -= 1
    return np.float32(2.0**max(-127, min(127, k)))


def quantize(x, tile_rows, tile_cols, kind):
    rows, cols = x.shape
    codes = np.zeros(x.shape, dtype=np.uint8)
    scales = []
    for r0 in range(0, rows, tile_rows):
        for c0 in range(0, cols, tile_cols):
            tile = x[r0:r0 + tile_rows, c0:c0 + tile_cols]
            amax = np.float32(np.nan) if np.isnan(tile).any() else np.abs(tile).max()
            s = scale_of(amax, kind)
            with np.errstate(invalid="ignore"):
                q = np.clip(tile / s, -448.0, 448.0).astype(np.float32)
                codes[r0:r0 + tile_rows, c0:c0 + tile_cols] = q.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
            scales.append(s)
    scales = np.array(scales, dtype=np.float32)
    if kind == "ue8m0":
        exps = np.frexp(scales)[1] - 1  # exact: scales are powers of two
        scale_bytes = np.where(np.isnan(scales), 255, exps + 127).astype(np.uint8).tobytes()
    else:
        scale_bytes = scales.astype("<f4").tobytes()
    return codes.tobytes() + scale_bytes


def write_goldens(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(31)
    for name, (rows, cols, tr, tc) in CASES.items():
        x = (rng.standard_t(3, (rows, cols)) * 2.0 ** rng.integers(-12, 12, (rows, 1))).astype(np.float32)
        x[0, :5] = 0.0
        if tr == 1:
            x[1, :] = 0.0  # an all-zero tile
            x[2, 200] = np.nan  # a NaN tile
        x.astype("<f4").tofile(os.path.join(out_dir, f"{name}.f32"))
        for kind in ("f32", "ue8m0"):
            with open(os.path.join(out_dir, f"{name}-{kind}.bin"), "wb") as f:
                f.write(quantize(x, tr, tc, kind))
