"""How much a one-ulp rounding difference moves the logits of a model whose
matmuls quantize their activations to int8 (what exodus and llama.cpp both
do on CPU), to judge issue 5's rule that greedy divergences from llama.cpp
must come with a top-two gap under 1e-3.

The script runs the default model (Q4_1 / Q8_0 weights) in numpy with
llama.cpp's CPU arithmetic for these formats, as measured against tensors
dumped from llama.cpp through its eval callback (each op below reproduces
llama.cpp's output from llama.cpp's input to 1e-6):

- activations quantized per block of 32 as GGUF's Q8_1 / Q8_0 blocks:
  codes round(x * 127 / amax) (ties to even), scale fp16(amax / 127), and
  for Q8_1 the scaled code sum fp16(scale * sum(codes));
- a block's dot is fp16 scales times the exact integer sum, plus Q4_1's min
  times the scaled code sum;
- an f16 KV cache; the query and the softmax weights rounded to f16 before
  their dot products (the non-flash attention path).

It runs the same model three times, changing one thing at a time: RMSNorm
as `x / sqrt(ms + eps)` or as `x * (1 / sqrt(ms + eps))`, and RoPE's
frequencies as powers of theta or stepped by one multiplication per pair.
Each pair is correct to an ulp or two. An int8 code flips where a value sits on a rounding boundary, and
in the blocks that hold the residual stream's outliers one flip moves an
output by several hundredths, so the two runs' logits differ by far more
than 1e-3. It also prints each run's distance from the same model without int8
activations (dequantized weights, f32) and, with `--golden`, from
llama.cpp's checked-in logits.

pip install numpy gguf
python3 bench/golden/int8_sensitivity.py --model PATH/SmolLM2-135M-Instruct.Q4_1.gguf \
    [--golden crates/model/tests/golden/smollm2_llama_cpp.json]
"""

import argparse
import json

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key):
    f = reader.fields[key]
    return f.parts[f.data[0]].tolist()[0]


def f16(a):
    return a.astype(np.float16).astype(np.float32)


class Weights:
    """Q4_1 / Q8_0 tensors as (scale, min, codes) per block of 32; others as f32."""

    def __init__(self, reader):
        self.tensors = {t.name: t for t in reader.tensors}
        self.cache = {}

    def dense(self, name):
        t = self.tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape))
        return dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)

    def blocks(self, name):
        if name in self.cache:
            return self.cache[name]
        t = self.tensors[name]
        kind = t.tensor_type.name
        raw = np.asarray(t.data).view(np.uint8)
        n, k = int(t.shape[1]), int(t.shape[0])
        if kind == "Q4_1":
            b = raw.reshape(n, k // 32, 20)
            d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
            m = b[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
            qs = b[..., 4:]
            q = np.concatenate([qs & 15, qs >> 4], -1).astype(np.int32)
        elif kind == "Q8_0":
            b = raw.reshape(n, k // 32, 34)
            d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
            m = None
            q = b[..., 2:].copy().view(np.int8).astype(np.int32)
        else:
            raise SystemExit(f"{name}: {kind} is not emulated (Q4_1 and Q8_0 are)")
        self.cache[name] = (d, m, q)
        return self.cache[name]


def quantize_q8(x, f32_scales=False):
    """One row to blocks of 32: fp16 scales, int codes, fp16 scaled code sums
    (or, with `f32_scales`, exodus's arithmetic: codes round(x / scale),
    f32 scales and sums)."""
    xb = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(xb).max(1)
    scale = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(amax != 0, np.float32(127) / np.where(amax == 0, 1, amax), 0).astype(np.float32)
    codes = np.round(xb * inv[:, None]).astype(np.int32)
    if f32_scales:
        inv = np.where(scale > 0, np.float32(1) / np.where(scale == 0, 1, scale), 0).astype(np.float32)
        codes = np.round(xb * inv[:, None]).astype(np.int32)
    scaled_sum = (scale * codes.sum(1).astype(np.float32)).astype(np.float32)
    if f32_scales:
        return scale, codes, scaled_sum
    return f16(scale), codes, f16(scaled_sum)


def matmul_int8(x, w, f32_scales=False):
    d, m, qw = w
    out = np.zeros((x.shape[0], d.shape[0]), np.float32)
    for r in range(x.shape[0]):
        dx, qx, sx = quantize_q8(x[r], f32_scales)
        per_block = (d * dx[None]).astype(np.float32) * np.einsum("nbk,bk->nb", qw, qx)
        if m is not None:
            per_block = per_block + m * sx[None]
        out[r] = per_block.sum(-1)
    return out


def rms_norm(x, w, eps, multiply):
    ms = (x.astype(np.float64) ** 2).mean(-1, keepdims=True)
    if multiply:
        return (x * (np.float32(1) / np.sqrt((ms + eps).astype(np.float32)))) * w
    return (x / np.sqrt((ms + eps).astype(np.float32))) * w


def rope(x, theta, stepped):
    """Interleaved RoPE; the angles' frequencies as powers of theta, or (as
    llama.cpp computes them) stepped by one f32 multiplication per pair."""
    t, half = x.shape[0], x.shape[2] // 2
    if stepped:
        step = np.float32(theta) ** np.float32(-2 / x.shape[2])
        freq = np.ones(half, np.float32)
        for i in range(1, half):
            freq[i] = np.float32(freq[i - 1] * step)
    else:
        freq = np.float32(theta) ** (-np.arange(half, dtype=np.float32) * 2 / x.shape[2])
    ang = (np.arange(t, dtype=np.float32)[:, None] * freq).astype(np.float32)
    c, s = np.cos(ang).astype(np.float32)[:, None], np.sin(ang).astype(np.float32)[:, None]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(cfg, w, ids, multiply_norm, stepped_rope=False, exact=False):
    n_layers, heads, kv_heads, eps, theta = cfg
    mm = (lambda x, name: x @ w.dense(name).T) if exact else (lambda x, name: matmul_int8(x, w.blocks(name)))
    round16 = (lambda a: a) if exact else f16
    x = w.dense("token_embd.weight")[ids]
    t, hidden = x.shape
    hd = hidden // heads
    for layer in range(n_layers):
        p = f"blk.{layer}."
        h = rms_norm(x, w.dense(p + "attn_norm.weight"), eps, multiply_norm)
        q = rope(mm(h, p + "attn_q.weight").reshape(t, heads, hd), theta, stepped_rope)
        k = rope(mm(h, p + "attn_k.weight").reshape(t, kv_heads, hd), theta, stepped_rope)
        v = mm(h, p + "attn_v.weight").reshape(t, kv_heads, hd)
        k = np.repeat(round16(k), heads // kv_heads, 1)
        v = np.repeat(round16(v), heads // kv_heads, 1)
        s = np.einsum("ihd,jhd->hij", round16(q), k) / np.float32(np.sqrt(hd))
        s = s + np.triu(np.full((t, t), -np.inf, np.float32), 1)
        prob = np.exp(s - s.max(-1, keepdims=True))
        prob = round16(prob / prob.sum(-1, keepdims=True))
        attn = np.einsum("hij,jhd->ihd", prob, v).reshape(t, hidden)
        x = x + mm(attn, p + "attn_output.weight")
        h = rms_norm(x, w.dense(p + "ffn_norm.weight"), eps, multiply_norm)
        g, u = mm(h, p + "ffn_gate.weight"), mm(h, p + "ffn_up.weight")
        x = x + mm(g / (1 + np.exp(-g)) * u, p + "ffn_down.weight")
    h = rms_norm(x[-1:], w.dense("output_norm.weight"), eps, multiply_norm)
    out = "output.weight" if "output.weight" in w.tensors else "token_embd.weight"
    return mm(h, out)[0].astype(np.float64)


def check_ops(cfg, w, path):
    """Replays layer 0's ops from llama.cpp's own inputs (a dump of
    llama_cpp_tensors.py) and prints how far each lands from its output."""
    d = np.load(path)
    _, heads, kv_heads, eps, theta = cfg
    t = len(d["ids"])
    hd = d["attn_norm-0"].shape[-1] // heads
    x = w.dense("token_embd.weight")[d["ids"]]
    rows = [
        ("embedding (Q8_0 rows)", x, d["embd"]),
        ("RMSNorm, by reciprocal, times weight", rms_norm(d["embd"], w.dense("blk.0.attn_norm.weight"), eps, True), d["attn_norm-0"]),
        ("RMSNorm, by division, times weight", rms_norm(d["embd"], w.dense("blk.0.attn_norm.weight"), eps, False), d["attn_norm-0"]),
    ]
    for out, name in [("Qcur-0", "attn_q"), ("Kcur-0", "attn_k"), ("Vcur-0", "attn_v")]:
        rows.append((f"{name} matmul, int8 activations", matmul_int8(d["attn_norm-0"], w.blocks(f"blk.0.{name}.weight")), d[out]))
    rows.append(("attn_q matmul, f32 activation scales", matmul_int8(d["attn_norm-0"], w.blocks("blk.0.attn_q.weight"), True), d["Qcur-0"]))
    rows.append(("RoPE, stepped frequencies", rope(d["Qcur-0#1"], theta, True), d["Qcur-0#2"]))
    rows.append(("RoPE, powered frequencies", rope(d["Qcur-0#1"], theta, False), d["Qcur-0#2"]))
    q, k = d["Qcur-0#2"], np.repeat(f16(d["Kcur-0#2"]), heads // kv_heads, 1)
    rows.append(("q.k, q rounded to f16", np.einsum("ihd,jhd->hij", f16(q), k), d["kq-0"][:, :, :t]))
    rows.append(("q.k, q in f32", np.einsum("ihd,jhd->hij", q, k), d["kq-0"][:, :, :t]))
    prob, v = d["kq_soft_max-0"][:, :, :t], np.repeat(f16(d["Vcur-0#1"]), heads // kv_heads, 1)
    rows.append(("p.v, p rounded to f16", np.einsum("hij,jhd->hid", f16(prob), v), d["kqv-0"]))
    rows.append(("p.v, p in f32", np.einsum("hij,jhd->hid", prob, v), d["kqv-0"]))
    for out, name, x_in in [("attn_out-0", "attn_output", "kqv_out-0"), ("ffn_gate-0", "ffn_gate", "ffn_norm-0"), ("ffn_out-0", "ffn_down", "ffn_swiglu-0")]:
        rows.append((f"{name} matmul, int8 activations", matmul_int8(d[x_in], w.blocks(f"blk.0.{name}.weight")), d[out]))
    print(f"layer 0 of prompt {[int(i) for i in d['ids']]} replayed from llama.cpp's inputs (largest |difference|, its largest |value|):")
    for label, got, want in rows:
        print(f"  {label:<40} {float(np.abs(got - want).max()):.2e}  {float(np.abs(want).max()):.3g}")
    return list(d["ids"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", type=int, nargs="+", default=[504, 3575, 282, 4649, 314])
    ap.add_argument("--golden", help="smollm2_llama_cpp.json: also compare with llama.cpp's logits")
    ap.add_argument("--check-ops", metavar="DUMP.npz", help="replay layer 0 from llama_cpp_tensors.py's dump")
    args = ap.parse_args()
    r = GGUFReader(args.model)
    arch = r.fields["general.architecture"].parts[r.fields["general.architecture"].data[0]]
    arch = bytes(arch).decode()
    cfg = (
        int(field(r, f"{arch}.block_count")),
        int(field(r, f"{arch}.attention.head_count")),
        int(field(r, f"{arch}.attention.head_count_kv")),
        float(field(r, f"{arch}.attention.layer_norm_rms_epsilon")),
        float(field(r, f"{arch}.rope.freq_base")),
    )
    w = Weights(r)
    if args.check_ops:
        check_ops(cfg, w, args.check_ops)
    ids = np.array(args.ids)
    exact = forward(cfg, w, ids, multiply_norm=False, exact=True)
    divide = forward(cfg, w, ids, multiply_norm=False)
    multiply = forward(cfg, w, ids, multiply_norm=True)
    stepped = forward(cfg, w, ids, multiply_norm=False, stepped_rope=True)
    top = np.argsort(-exact)[:20]

    def gap(a, b):
        return float(np.abs(a[top] - b[top]).max())

    print(f"prompt ids {args.ids}; largest difference over the exact model's top 20 logits:")
    print(f"  int8 run, RMSNorm by division        vs exact: {gap(divide, exact):.4f}")
    print(f"  int8 run, RMSNorm by reciprocal      vs exact: {gap(multiply, exact):.4f}")
    print(f"  int8 run, RoPE frequencies stepped   vs exact: {gap(stepped, exact):.4f}")
    print(f"  division against reciprocal RMSNorm:            {gap(divide, multiply):.4f}")
    print(f"  powered against stepped RoPE frequencies:       {gap(divide, stepped):.4f}")
    if args.golden:
        g = json.load(open(args.golden))["last_logits"]
        if g["ids"] != list(args.ids):
            raise SystemExit("--golden holds logits for other ids")
        llama = {i: v for i, v in g["top"]}
        for name, run in [("division", divide), ("reciprocal", multiply), ("stepped RoPE", stepped)]:
            off = max(abs(run[i] - llama[i]) for i in llama)
            print(f"  int8 run ({name:<12}) vs llama.cpp (its top 20): {off:.4f}")


if __name__ == "__main__":
    main()
