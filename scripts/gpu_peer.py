#!/usr/bin/env python3
"""The peer for gpu-check.sh: HF transformers' GPT-2 in PyTorch at the settings `gpt2 bench` uses.

  python3 gpu_peer.py run OUT [--steps 3]   # writes OUT/peer-*.json
  python3 gpu_peer.py table OUT             # prints OUT's results side by side (markdown)

Training: GPT2LMHeadModel(GPT2Config()) (124M, random init) with torch.optim.AdamW, B=8, T=1024,
eager fp32 (TF32 off, as our fp32) and under torch.autocast(bfloat16); one warm-up step, then the
mean of --steps timed steps (zero_grad, forward with labels, backward, clip 1.0, step), as gpt2 bench.
Generation: generate() greedy, 32-token prompt, exactly 128 new tokens, batch 1 and 16, KV cache.
"""
import json
import os
import sys
import time


def run(out, steps):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    torch.manual_seed(1)
    name = torch.cuda.get_device_name(0)
    V = 50257

    def ids(n, salt):  # the token ids gpt2 bench uses
        return torch.tensor([(i * 7919 + salt * 104729) % V for i in range(n)], device=dev)

    for mode in ("fp32", "bf16"):
        B, T = 8, 1024
        model = GPT2LMHeadModel(GPT2Config()).to(dev).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

        def step(k):
            x, y = ids(B * T, k).view(B, T), ids(B * T, k + 1).view(B, T)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = model(input_ids=x, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            torch.cuda.synchronize()
            return (time.perf_counter() - t0) * 1000

        step(0)  # warm-up
        ms = sum(step(k) for k in range(1, steps + 1)) / steps
        res = {"peer": "transformers+torch eager", "task": "train", "precision": mode, "device": name, "batch": B, "seq": T,
               "msPerStep": round(ms, 1), "tokensPerSecond": round(B * T / ms * 1000, 1), "torch": torch.__version__}
        json.dump(res, open(os.path.join(out, f"peer-train-{mode}.json"), "w"))
        print(json.dumps(res))
        del model, opt
        torch.cuda.empty_cache()

    model = GPT2LMHeadModel(GPT2Config()).to(dev).eval()
    for B in (1, 16):
        prompt = ids(B * 32, 0).view(B, 32)
        mask = torch.ones_like(prompt)
        with torch.no_grad():
            def gen():
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                model.generate(prompt, attention_mask=mask, max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)
                torch.cuda.synchronize()
                return (time.perf_counter() - t0) * 1000
            gen()  # warm-up
            ms = gen()
        res = {"peer": "transformers generate()", "task": "generate", "precision": "fp32", "device": name, "batch": B,
               "promptTokens": 32, "newTokens": 128, "msTotal": round(ms, 1), "tokensPerSecond": round(B * 128 / ms * 1000, 1)}
        json.dump(res, open(os.path.join(out, f"peer-generate-{B}.json"), "w"))
        print(json.dumps(res))


def table(out):
    def load(name):
        try:
            return json.load(open(os.path.join(out, name)))
        except (OSError, ValueError):
            return None

    def fig(d, key):
        return "—" if not d or key not in d else str(d[key])

    print("| what | gpt2.ts cuda | gpt2.ts webgpu | PyTorch + transformers |")
    print("|---|---|---|---|")
    for p in ("fp32", "bf16"):
        ours, peer = load(f"bench-cuda-train-{p}.json"), load(f"peer-train-{p}.json")
        print(f"| train 124M B=8 T=1024 {p}, tokens/s | {fig(ours, 'tokensPerSecond')} | — | {fig(peer, 'tokensPerSecond')} |")
    for b in (1, 16):
        c, w, peer = load(f"bench-cuda-generate-{b}.json"), load(f"bench-webgpu-generate-{b}.json"), load(f"peer-generate-{b}.json")
        print(f"| generate batch {b}, tokens/s | {fig(c, 'tokensPerSecond')} | {fig(w, 'tokensPerSecond')} | {fig(peer, 'tokensPerSecond')} |")
    for be in ("cuda", "webgpu"):
        m = load(f"bench-{be}-matmul.json")
        if m:
            best = max(list(m.get("forward", {}).values()) + list(m.get("backward", {}).values()) or [0])
            print(f"| {be} matmul, best GFLOP/s at GPT-2 shapes | {best if be == 'cuda' else '—'} | {best if be == 'webgpu' else '—'} | — |")
    print()
    print("| selftest | result |")
    print("|---|---|")
    for be, precisions in (("cuda", ("fp32", "tf32", "bf16")), ("webgpu", ("fp32", "f16"))):
        for p in precisions:
            d = load(f"selftest-{be}-{p}.json")
            if not d:
                print(f"| {be} {p} | did not run (log.txt) |")
                continue
            for b in d.get("backends", []):
                if b.get("skipped"):
                    print(f"| {be} {p} | skipped: {b['skipped']} |")
                else:
                    r = b.get("results", [])
                    bad = [c["name"] for c in r if not c["passed"]]
                    print(f"| {be} {p} | {len(r) - len(bad)} passed, {len(bad)} failed{': ' + '; '.join(bad[:4]) if bad else ''} |")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("run", "table"):
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 3
        run(sys.argv[2], steps)
    else:
        table(sys.argv[2])
