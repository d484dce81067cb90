"""Drives an exodus server with the official `openai` Python client.

python3 openai_client.py http://127.0.0.1:PORT/v1

Checks chat and completions, streaming and not: the streamed text equals
the whole answer, usage and finish_reason are right, stop strings cut the
text, the same seed gives the same text, logprobs come back, and four
concurrent greedy streams give, token for token, what each gives alone.
Run by crates/cli/tests/serve.rs (pip install openai).
"""

import sys
import threading

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=300)
MODEL = client.models.list().data[0].id


def chat(content, stream=False, **kw):
    messages = [{"role": "user", "content": content}]
    if not stream:
        r = client.chat.completions.create(model=MODEL, messages=messages, **kw)
        return r.choices[0].message.content, r.choices[0].finish_reason, r
    parts, finish, usage = [], None, None
    for chunk in client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}, **kw
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    return "".join(parts), finish, usage


def complete(prompt, stream=False, **kw):
    if not stream:
        r = client.completions.create(model=MODEL, prompt=prompt, **kw)
        return r.choices[0].text, r.choices[0].finish_reason, r
    parts, finish = [], None
    for chunk in client.completions.create(model=MODEL, prompt=prompt, stream=True, **kw):
        for c in chunk.choices:
            parts.append(c.text)
            finish = c.finish_reason or finish
    return "".join(parts), finish, None


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print("ok:", what)


greedy = {"temperature": 0, "max_tokens": 32}

text, finish, r = chat("What is the capital of France?", **greedy)
n = r.usage.completion_tokens
check((finish == "length" and n == 32) or (finish == "stop" and 0 < n < 32),
      f"chat: finish_reason {finish} agrees with {n} of 32 tokens")
check(r.usage.total_tokens == r.usage.prompt_tokens + n, "chat: usage adds up")
streamed, sfinish, usage = chat("What is the capital of France?", stream=True, **greedy)
check(streamed == text and sfinish == finish, "chat: the streamed text equals the whole answer")
check(usage is not None and usage.completion_tokens == n, "chat: usage chunk at the end of the stream")

text, finish, r = complete("The capital of France is", **greedy)
streamed, sfinish, _ = complete("The capital of France is", stream=True, **greedy)
check(streamed == text and finish == sfinish, "completions: streamed equals whole")
check(r.object == "text_completion" and r.model == MODEL, "completions: object and model")

# A stop string: the text ends before it, finish_reason stop.
cut = text[: max(1, len(text) // 2)]
stop = text[len(cut):][:3]
if stop.strip():
    stopped, finish, _ = complete("The capital of France is", stop=[stop], **greedy)
    check(finish == "stop" and stop not in stopped and text.startswith(stopped), "completions: stop string cuts")
    stopped_s, finish_s, _ = complete("The capital of France is", stream=True, stop=[stop], **greedy)
    check(stopped_s == stopped and finish_s == "stop", "completions: stop string cuts a stream the same way")

# Sampling with a seed is reproducible.
sampled = {"temperature": 0.9, "max_tokens": 24, "seed": 1234}
a, _, _ = chat("Tell me a story.", **sampled)
b, _, _ = chat("Tell me a story.", **sampled)
check(a == b, "chat: the same seed gives the same text")

# Log-probabilities.
_, _, r = chat("Hi", temperature=0, max_tokens=4, logprobs=True, top_logprobs=3)
lp = r.choices[0].logprobs.content
check(len(lp) == 4 and all(len(t.top_logprobs) == 3 for t in lp), "chat: logprobs with 3 alternatives")
check(all(t.logprob <= 0 and t.logprob == t.top_logprobs[0].logprob for t in lp), "chat: greedy picks the top logprob")
_, _, r = complete("Hello", temperature=0, max_tokens=3, logprobs=2)
check(len(r.choices[0].logprobs.tokens) == 3, "completions: logprobs")

# Errors surface as the client's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model refused")
except openai.NotFoundError:
    check(True, "chat: unknown model is a 404 NotFoundError")
try:
    client.completions.create(model=MODEL, prompt="x", temperature=5)
    check(False, "bad temperature refused")
except openai.BadRequestError:
    check(True, "completions: temperature 5 is a 400 BadRequestError")

# Concurrent greedy streams equal the sequential ones, token for token.
prompts = ["Write a haiku about the sea.", "List three prime numbers.",
           "What is 2 + 2?", "Name a famous painter."]
alone = [chat(p, stream=True, temperature=0, max_tokens=40)[0] for p in prompts]
together = [None] * len(prompts)


def worker(i):
    together[i] = chat(prompts[i], stream=True, temperature=0, max_tokens=40)[0]


threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for p, a, t in zip(prompts, alone, together):
    check(a == t, f"concurrent equals sequential: {p!r}")

print("all checks passed")
