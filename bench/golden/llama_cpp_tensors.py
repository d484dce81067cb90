"""Dumps llama.cpp's intermediate f32 tensors for one prompt's prefill to an
.npz (names as llama.cpp's graph gives them: `attn_norm-0`, `Qcur-0`,
`kq-0`, `ffn_out-0`, `result_output`, ...; a name seen again gets `#1`,
`#2`), through the eval callback that llama.cpp calls after each graph node.
`int8_sensitivity.py --check-ops` replays layer 0's ops from these inputs.

pip install llama-cpp-python numpy
python3 bench/golden/llama_cpp_tensors.py --model PATH.gguf --prompt "The capital of France is" --out /tmp/llama.npz
"""

import argparse
import ctypes

import llama_cpp
import llama_cpp._ggml as ggml
import numpy as np
from llama_cpp import llama_cpp as capi

lib = ggml.libggml
lib.ggml_get_name.restype = ctypes.c_char_p
lib.ggml_get_name.argtypes = [ctypes.c_void_p]
lib.ggml_get_data.restype = ctypes.c_void_p
lib.ggml_get_data.argtypes = [ctypes.c_void_p]

GGML_TYPE_F32 = 0
# struct ggml_tensor: enum type (4 bytes, padded to 8), buffer pointer, then
# int64 ne[4] and size_t nb[4].
NE_OFFSET, NB_OFFSET = 16, 48


def read_tensor(t):
    """The tensor as a numpy array [ne3, ne2, ne1, ne0], following its strides."""
    ne = [ctypes.c_int64.from_address(t + NE_OFFSET + 8 * i).value for i in range(4)]
    nb = [ctypes.c_uint64.from_address(t + NB_OFFSET + 8 * i).value for i in range(4)]
    data = lib.ggml_get_data(t)
    out = np.empty((ne[3], ne[2], ne[1], ne[0]), np.float32)
    for i3 in range(ne[3]):
        for i2 in range(ne[2]):
            for i1 in range(ne[1]):
                row = data + i3 * nb[3] + i2 * nb[2] + i1 * nb[1]
                if nb[0] == 4:
                    out[i3, i2, i1] = np.frombuffer((ctypes.c_char * (4 * ne[0])).from_address(row), np.float32)
                else:
                    for i0 in range(ne[0]):
                        out[i3, i2, i1, i0] = ctypes.c_float.from_address(row + i0 * nb[0]).value
    return out.squeeze()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    saved = {}

    @capi.ggml_backend_sched_eval_callback
    def on_node(t, ask, _user):
        if ask:
            return True  # ask for every node's result
        if ctypes.c_int32.from_address(t).value != GGML_TYPE_F32 or not lib.ggml_get_data(t):
            return True
        name = lib.ggml_get_name(t).decode()
        key, n = name, 0
        while key in saved:
            n += 1
            key = f"{name}#{n}"
        saved[key] = read_tensor(t)
        return True

    default_params = capi.llama_context_default_params

    def with_callback():
        p = default_params()
        p.cb_eval = on_node
        p.cb_eval_user_data = None
        return p

    llama_cpp.llama.llama_cpp.llama_context_default_params = with_callback
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=512, n_batch=512, verbose=False, n_threads=2)
    ids = llm.tokenize(args.prompt.encode(), add_bos=False, special=False)
    llm.eval(ids)
    saved["ids"] = np.array(ids)
    np.savez(args.out, **saved)
    print(f"{len(saved) - 1} tensors of prompt {ids} -> {args.out}")


if __name__ == "__main__":
    main()
