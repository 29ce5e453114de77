#!/usr/bin/env python3
"""Float64 PyTorch reference of HellaSwag scoring on fixtures/gpt2-tiny, as llm.c's hellaswag.py scores.

Writes fixtures/hellaswag/reference.json, which `gpt2 eval --task hellaswag` and core's scoreChoices
are checked against (packages/core/src/train/hellaswag.test.ts, packages/cli/src/eval.test.ts).
Independent of gpt2.ts: OpenAI's GPT-2 byte-level BPE (encoder.py's algorithm, over the fixture's
vocab.json and merges.txt) and an explicit float64 GPT-2 (HF semantics: gelu_new, layernorm eps 1e-5,
tied LM head, Conv1D [IN, OUT] weights).

For each item of fixtures/hellaswag/items.jsonl (HellaSwag's format: ctx, endings, label), as
hellaswag.py's render_example and evaluate: ctx_tokens = encode(ctx); for each ending,
end_tokens = encode(" " + ending); the row is ctx_tokens + end_tokens; the per-token cross-entropy
of each end token given what precedes it, summed (acc: argmin of the sums is the label) and averaged
(acc_norm: argmin of the means). The fixture model's context is 64 tokens: a row longer than that
keeps the last 64 (the context loses tokens from its start; hellaswag.py's GPT-2 1024 never needs to).

Run: /usr/bin/python3 scripts/hellaswag_reference.py   (Debian: apt install python3-torch python3-regex)
"""
import json
import math
from pathlib import Path

import numpy as np
import regex
import torch

from lora_reference import read_safetensors  # the fixtures' tensors as numpy arrays

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "gpt2-tiny"
DATA = ROOT / "fixtures" / "hellaswag"
torch.set_default_dtype(torch.float64)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Encoder:
    """OpenAI's gpt-2 src/encoder.py, encoding only."""

    def __init__(self, folder):
        self.encoder = json.loads((folder / "vocab.json").read_text("utf-8"))
        merges = (folder / "merges.txt").read_text("utf-8").split("\n")[1:]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(m for m in merges if m.strip())}
        self.byte_encoder = bytes_to_unicode()
        self.pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token):
        word = tuple(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        return word

    def encode(self, text):
        ids = []
        for tok in regex.findall(self.pat, text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(tok))
        return ids


def layernorm(x, w, b):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(v + 1e-5) * w + b


def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def logits_of(W, cfg, ids):
    T, C, NH = len(ids), cfg["n_embd"], cfg["n_head"]
    x = W["wte.weight"][ids] + W["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        h = layernorm(x, W[f"h.{l}.ln_1.weight"], W[f"h.{l}.ln_1.bias"])
        q, k, v = (h @ W[f"h.{l}.attn.c_attn.weight"] + W[f"h.{l}.attn.c_attn.bias"]).split(C, dim=-1)
        q, k, v = (t.view(T, NH, C // NH).transpose(0, 1) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(C // NH)
        att = torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(0, 1).reshape(T, C)
        x = x + y @ W[f"h.{l}.attn.c_proj.weight"] + W[f"h.{l}.attn.c_proj.bias"]
        h = layernorm(x, W[f"h.{l}.ln_2.weight"], W[f"h.{l}.ln_2.bias"])
        x = x + gelu_new(h @ W[f"h.{l}.mlp.c_fc.weight"] + W[f"h.{l}.mlp.c_fc.bias"]) @ W[f"h.{l}.mlp.c_proj.weight"] + W[f"h.{l}.mlp.c_proj.bias"]
    return layernorm(x, W["ln_f.weight"], W["ln_f.bias"]) @ W["wte.weight"].T


def main():
    cfg = json.loads((MODEL / "config.json").read_text())
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in read_safetensors(MODEL / "model.safetensors").items()}
    enc, maxT = Encoder(MODEL), cfg["n_positions"]
    items = [json.loads(line) for line in (DATA / "items.jsonl").read_text("utf-8").splitlines() if line.strip()]
    out = []
    for item in items:
        ctx = enc.encode(item["ctx"])
        rows, sums, means = [], [], []
        for ending in item["endings"]:
            end = enc.encode(" " + ending)
            keep = min(len(ctx), maxT - len(end))
            row, start = ctx[len(ctx) - keep :] + end, keep
            logits = logits_of(W, cfg, torch.tensor(row))
            losses = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(row[1:]), reduction="none")
            scored = losses[start - 1 :]  # position t predicts token t+1: the ending's tokens
            rows.append(row)
            sums.append(scored.sum().item())
            means.append(scored.mean().item())
        out.append({"tokens": rows, "sum_loss": sums, "mean_loss": means, "pred": int(np.argmin(sums)), "pred_norm": int(np.argmin(means)), "label": item["label"]})
    n = len(out)
    result = {
        "model": "fixtures/gpt2-tiny",
        "n": n,
        "acc": sum(o["pred"] == o["label"] for o in out) / n,
        "acc_norm": sum(o["pred_norm"] == o["label"] for o in out) / n,
        "items": out,
    }
    (DATA / "reference.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"n {n} acc {result['acc']:.4f} acc_norm {result['acc_norm']:.4f}")


if __name__ == "__main__":
    main()
