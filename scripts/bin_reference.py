#!/usr/bin/env python3
"""pytorch_model.bin fixtures written by PyTorch itself, for the .bin reader (packages/core/src/io/torch-bin.ts).

From fixtures/gpt2-odd/model.safetensors (read here with a few lines of json + numpy, independent of
gpt2.ts), builds the state dict GPT2LMHeadModel.state_dict() has: `transformer.` prefix, Conv1D
weights [IN, OUT], `lm_head.weight` the same tensor as `transformer.wte.weight` (so torch.save stores
one storage for both), and the old causal-mask buffers `h.N.attn.bias` (bool) and `masked_bias`.
Writes into fixtures/torch-bin/:
  gpt2-odd-{f32,f16,bf16}.bin           torch.save(state_dict) in each dtype (the zip format, PyTorch >= 1.6)
  gpt2-odd-{f16,bf16}.safetensors       the same rounded tensors as safetensors (F16 / BF16 bytes from torch)
  evil.bin                              torch.save of an object whose __reduce__ calls os.system: loading it
                                        with pickle would run `touch /tmp/gpt2-ts-pickle-ran`
  legacy.bin                            gpt2-odd in f32 with _use_new_zipfile_serialization=False (pre-1.6)

Run: /usr/bin/python3 scripts/bin_reference.py   (Debian: apt install python3-torch)
"""
import json
import os
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "fixtures" / "gpt2-odd" / "model.safetensors"
OUT = ROOT / "fixtures" / "torch-bin"


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = OrderedDict()
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + n + b : 8 + n + end], dtype="<f4").reshape(e["shape"]).copy())
    return out


def write_safetensors(path, tensors):
    names = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/gpt2-ts-pickle-ran",))


def main():
    OUT.mkdir(exist_ok=True)
    weights = read_safetensors(SRC)
    n_layer = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("h."))
    T = 40
    sd = OrderedDict()
    for name, t in weights.items():
        if name.endswith("attn.bias") and t.dim() == 4:
            continue  # the fixture's own mask buffers: replaced below by the bool ones transformers 4.x saved
        sd["transformer." + name] = t
    for layer in range(n_layer):
        sd[f"transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
        sd[f"transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    for tag, dtype in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
        d = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items())
        d["lm_head.weight"] = d["transformer.wte.weight"]  # tied: one storage
        torch.save(d, OUT / f"gpt2-odd-{tag}.bin")
        if dtype != torch.float32:
            write_safetensors(OUT / f"gpt2-odd-{tag}.safetensors", OrderedDict((k, v) for k, v in d.items() if v.is_floating_point() and k != "lm_head.weight" and "masked_bias" not in k))
    torch.save({"transformer.wte.weight": Evil()}, OUT / "evil.bin")
    torch.save(sd, OUT / "legacy.bin", _use_new_zipfile_serialization=False)
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
