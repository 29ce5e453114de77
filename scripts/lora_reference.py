#!/usr/bin/env python3
"""Float64 PyTorch reference of GPT-2 with LoRA adapters (peft's formulation) on fixtures/gpt2-odd.

Writes fixtures/gpt2-odd/lora.safetensors, which the LoRA conformance cases (packages/core/src/
conformance/lora.ts) compare every backend against. Independent of gpt2.ts: plain torch autograd
over an explicit GPT-2 (HF semantics: gelu_new, layernorm eps 1e-5, tied LM head, Conv1D [IN, OUT]
weights) with peft's LoRA on every target module:

    h = x @ W + b + (alpha / r) * dropout(x) @ A^T @ B^T,   A (r, IN), B (OUT, r)

r=4, alpha=8 on attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj of every layer. A and B start random
(B nonzero, unlike peft's zeros, so that every gradient and the logits carry the adapters) and are
rounded to float32, then everything runs in float64. It holds:
  lora.<peft name>          the starting adapters (float32), peft's tensor names
  logits, loss              of the model with adapters, on the fixture's inputs/targets (no dropout)
  grads.<peft name>         d loss / d A and d B; the base weights have requires_grad False
  adamw.losses, adamw.grad_norms, adamw.<peft name>   10 AdamW steps on the adapters only (lr 1e-3,
                            betas 0.9/0.999, eps 1e-6, weight decay 0.1, global norm clipped to 1.0)
  merged.<hf name>          each adapted base weight with the final adapters folded in, HF's [IN, OUT]
  dropout.loss, dropout.grads.<peft name>   one training forward/backward with lora_dropout 0.1, the
                            masks drawn as gpt2.ts draws them (dropout.ts's hash and lora.ts's seeds,
                            reimplemented below) with seed 1234 at step 0, micro-batch 0

Run: /usr/bin/python3 scripts/lora_reference.py   (Debian: apt install python3-torch)
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "gpt2-odd"
R, ALPHA = 4, 8.0
TARGETS = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]  # lora.ts's order
DROPOUT, DROPOUT_SEED = 0.1, 1234
torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "I32": np.int32, "F16": np.float16}[e["dtype"]]
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b : 8 + n + end], dtype=dt).reshape(e["shape"])
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# dropout.ts and lora.ts's seeds, in uint32 arithmetic
M32 = 0xFFFFFFFF


def dropout_hash(seed, idx):
    x = (np.uint64(seed) * np.uint64(0x9E3779B9) + idx.astype(np.uint64)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x21F0AAAD)) & np.uint64(M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x735A2D97)) & np.uint64(M32)
    x ^= x >> np.uint64(15)
    return x


def lora_dropout_seed(seed, step, micro, slot):
    h = (seed ^ ((step + 1) * 0x85EBCA6B)) & M32
    h = (h ^ ((micro + 1) * 0xC2B2AE35)) & M32
    return (h ^ ((slot + 1) * 0x27D4EB2F)) & M32


def keep_mask(seed, n, p):
    keep_from = min(M32, math.floor(p * 4294967296))
    return torch.from_numpy((dropout_hash(seed, np.arange(n)) >= keep_from).astype(np.float64))


def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def layernorm(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def main():
    cfg = json.loads((FIX / "config.json").read_text())
    C, L, NH = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    F = cfg.get("n_inner") or 4 * C
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in read_safetensors(FIX / "model.safetensors").items()}
    ref = read_safetensors(FIX / "reference.safetensors")
    inputs, targets = torch.from_numpy(ref["inputs"].astype(np.int64)), torch.from_numpy(ref["targets"].astype(np.int64))
    B, T = inputs.shape
    dims = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, F), "mlp.c_proj": (F, C)}
    scale = ALPHA / R

    g = torch.Generator().manual_seed(16)
    lora = {}  # peft name -> float64 tensor holding float32 values
    for t in TARGETS:
        IN, OUT = dims[t]
        for l in range(L):
            name = f"base_model.model.transformer.h.{l}.{t}"
            a = (torch.rand(R, IN, generator=g) * 2 - 1) / math.sqrt(IN)
            b = (torch.rand(OUT, R, generator=g) * 2 - 1) * 0.3
            lora[f"{name}.lora_A.weight"] = a.float().double().requires_grad_(True)
            lora[f"{name}.lora_B.weight"] = b.float().double().requires_grad_(True)
    start = {k: v.detach().float().numpy().copy() for k, v in lora.items()}

    def linear(x, l, t, masks):
        IN, OUT = dims[t]
        y = x @ W[f"h.{l}.{t}.weight"] + W[f"h.{l}.{t}.bias"]
        name = f"base_model.model.transformer.h.{l}.{t}"
        xd = x
        if masks is not None:
            slot = TARGETS.index(t) * L + l
            xd = x * masks(slot, x.numel()).reshape(x.shape) / (1 - DROPOUT)
        return y + scale * (xd @ lora[f"{name}.lora_A.weight"].T) @ lora[f"{name}.lora_B.weight"].T

    def forward(masks=None):
        HS = C // NH
        x = W["wte.weight"][inputs] + W["wpe.weight"][:T]
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l in range(L):
            h = layernorm(x, W[f"h.{l}.ln_1.weight"], W[f"h.{l}.ln_1.bias"])
            qkv = linear(h, l, "attn.c_attn", masks)
            q, k, v = qkv.split(C, dim=-1)
            q, k, v = (z.reshape(B, T, NH, HS).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
            att = att.masked_fill(~causal, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + linear(y, l, "attn.c_proj", masks)
            h = layernorm(x, W[f"h.{l}.ln_2.weight"], W[f"h.{l}.ln_2.bias"])
            x = x + linear(gelu_new(linear(h, l, "mlp.c_fc", masks)), l, "mlp.c_proj", masks)
        x = layernorm(x, W["ln_f.weight"], W["ln_f.bias"])
        logits = x @ W["wte.weight"].T
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    out = {f"lora.{k}": v for k, v in start.items()}
    logits, loss = forward()
    grads = torch.autograd.grad(loss, list(lora.values()))
    out["logits"] = logits.detach().float().numpy()
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    for k, gr in zip(lora, grads):
        out[f"grads.{k}"] = gr.float().numpy()

    # one training step's loss and gradients with dropout, the masks drawn as gpt2.ts draws them
    masks = lambda slot, n: keep_mask(lora_dropout_seed(DROPOUT_SEED, 0, 0, slot), n, DROPOUT)
    _, dloss = forward(masks)
    dgrads = torch.autograd.grad(dloss, list(lora.values()))
    out["dropout.loss"] = np.array([dloss.item()], dtype=np.float32)
    for k, gr in zip(lora, dgrads):
        out[f"dropout.grads.{k}"] = gr.float().numpy()

    base = {k: v.clone() for k, v in W.items()}
    opt = torch.optim.AdamW(list(lora.values()), lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
    losses, norms = [], []
    for _ in range(10):
        opt.zero_grad()
        _, loss = forward()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(list(lora.values()), 1.0).item())
        losses.append(loss.item())
        opt.step()
    assert all(torch.equal(base[k], W[k]) for k in W), "the base weights moved"
    out["adamw.losses"] = np.array(losses, dtype=np.float32)
    out["adamw.grad_norms"] = np.array(norms, dtype=np.float32)
    for k, v in lora.items():
        out[f"adamw.{k}"] = v.detach().float().numpy()
    for t in TARGETS:
        for l in range(L):
            name = f"base_model.model.transformer.h.{l}.{t}"
            delta = scale * (lora[f"{name}.lora_B.weight"] @ lora[f"{name}.lora_A.weight"]).T  # [IN, OUT] as Conv1D
            out[f"merged.h.{l}.{t}.weight"] = (W[f"h.{l}.{t}.weight"] + delta).detach().float().numpy()

    meta = {"r": str(R), "lora_alpha": str(ALPHA), "targets": ",".join(TARGETS), "dropout": str(DROPOUT), "dropout_seed": str(DROPOUT_SEED),
            "adamw": "lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight_decay 0.1, clip 1.0, 10 steps on the fixture's batch",
            "torch": torch.__version__}
    write_safetensors(FIX / "lora.safetensors", out, meta)
    print(f"wrote {FIX / 'lora.safetensors'}: loss {out['loss'][0]:.6f}, adamw losses {losses[0]:.6f} -> {losses[-1]:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
