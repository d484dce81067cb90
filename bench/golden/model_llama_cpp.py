"""Reference values from llama.cpp (through llama-cpp-python) for the
default model, checked in as crates/model/tests/golden/smollm2_llama_cpp.json
so CI compares against them without building llama.cpp:

- greedy continuations of a few prompts, 64 tokens each, with the two top
  logits at every step (to judge a divergence);
- the last token's top-20 logits for one prompt;
- perplexity of crates/model/tests/golden/gpl-3.txt with llama.cpp's
  method (windows of 512, second half scored), on llama.cpp's tokens.

pip install llama-cpp-python numpy
python3 bench/golden/model_llama_cpp.py --model PATH/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import argparse
import json
import pathlib

import llama_cpp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates/model/tests/golden"

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "The three laws of thermodynamics are",
    "Q: What is 17 times 23?\nA:",
]


def top2(row):
    order = np.argsort(-row)[:2]
    return [[int(i), float(row[i])] for i in order]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=512, n_batch=512, logits_all=True,
                          verbose=False, n_threads=2)
    greedy = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=False)
        llm.reset()
        llm.eval(ids)
        out, steps = [], []
        for _ in range(64):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            tok = int(np.argmax(row))
            steps.append(top2(row))
            out.append(tok)
            llm.eval([tok])
        greedy.append({"prompt": prompt, "ids": ids, "greedy": out, "top2": steps})
    ids = llm.tokenize(PROMPTS[0].encode(), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids)
    row = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    order = np.argsort(-row)[:20]
    logits = {"ids": ids, "top": [[int(i), float(row[i])] for i in order]}

    text = (GOLDEN / "gpl-3.txt").read_bytes()
    toks = llm.tokenize(text, add_bos=False, special=False)
    ctx, first = 512, 256
    nll, count = 0.0, 0
    for c in range(len(toks) // ctx):
        window = toks[c * ctx:(c + 1) * ctx]
        llm.reset()
        llm.eval(window)
        scores = np.array(llm.scores[:ctx], dtype=np.float64)
        for j in range(first, ctx - 1):
            r = scores[j]
            m = r.max()
            nll += m + np.log(np.exp(r - m).sum()) - r[toks[c * ctx + j + 1]]
            count += 1
    ppl = {"file": "gpl-3.txt", "ctx": ctx, "tokens": toks, "scored": count,
           "ppl": float(np.exp(nll / count))}
    out = {"model": pathlib.Path(args.model).name,
           "llama_cpp_python": llama_cpp.__version__,
           "greedy": greedy, "last_logits": logits, "perplexity": ppl}
    (GOLDEN / "smollm2_llama_cpp.json").write_text(json.dumps(out) + "\n")
    print("wrote", GOLDEN / "smollm2_llama_cpp.json", "ppl", ppl["ppl"])


if __name__ == "__main__":
    main()
