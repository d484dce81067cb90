"""A float64 reference of a Llama-family GGUF model in numpy (weights
dequantized with the `gguf` package), to locate differences between exodus
and llama.cpp: both quantize activations to int8 inside their matmuls, this
does not, so it shows how far each is from the exact model.

pip install numpy gguf
python3 bench/golden/model_numpy_reference.py --model PATH.gguf --ids 504 3575 282 4649 314 [--layers N] \
    [--out crates/model/tests/golden/smollm2_float_reference.json]

Prints the last token's top logits (and, with --layers, the residual
stream's norm after each of the first N layers).
"""

import argparse

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def tensors(reader):
    out = {}
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float64)
        shape = tuple(int(d) for d in reversed(t.shape))  # rows first
        out[t.name] = data.reshape(shape)
    return out


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(v).decode()
    return v.tolist()[0]


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope_interleaved(x, pos, head_dim, theta):
    # x: [t, heads, head_dim]; pairs (2i, 2i+1) rotated by pos * theta^(-2i/d)
    half = head_dim // 2
    inv = theta ** (-np.arange(half) * 2.0 / head_dim)
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", type=int, nargs="+", required=True)
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--out", help="write the last token's top-20 logits as JSON here")
    args = ap.parse_args()
    r = GGUFReader(args.model)
    arch = field(r, "general.architecture")
    n_layers = int(field(r, f"{arch}.block_count"))
    heads = int(field(r, f"{arch}.attention.head_count"))
    kv_heads = int(field(r, f"{arch}.attention.head_count_kv"))
    eps = float(field(r, f"{arch}.attention.layer_norm_rms_epsilon"))
    theta = float(field(r, f"{arch}.rope.freq_base"))
    w = tensors(r)
    ids = np.array(args.ids)
    t = len(ids)
    x = w["token_embd.weight"][ids]
    hidden = x.shape[1]
    hd = hidden // heads
    pos = np.arange(t, dtype=np.float64)
    for l in range(n_layers):
        p = f"blk.{l}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q = (h @ w[p + "attn_q.weight"].T).reshape(t, heads, hd)
        k = (h @ w[p + "attn_k.weight"].T).reshape(t, kv_heads, hd)
        v = (h @ w[p + "attn_v.weight"].T).reshape(t, kv_heads, hd)
        q, k = rope_interleaved(q, pos, hd, theta), rope_interleaved(k, pos, hd, theta)
        group = heads // kv_heads
        out = np.zeros((t, heads, hd))
        for hh in range(heads):
            kh = hh // group
            s = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(hd)
            s = s + np.triu(np.full((t, t), -np.inf), 1)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            out[:, hh, :] = s @ v[:, kh, :]
        x = x + out.reshape(t, hidden) @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "ffn_down.weight"].T
        if l < args.layers:
            print(f"layer {l}: residual norm of the last token {np.linalg.norm(x[-1]):.6f}, max |x| {np.abs(x).max():.3f}")
    h = rms_norm(x[-1], w["output_norm.weight"], eps)
    out_w = w.get("output.weight", w["token_embd.weight"])
    logits = out_w @ h
    for i in np.argsort(-logits)[:5]:
        print(int(i), float(logits[i]))
    if args.out:
        import json
        top = [[int(i), float(logits[i])] for i in np.argsort(-logits)[:20]]
        with open(args.out, "w") as f:
            json.dump({"ids": args.ids, "top": top}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
