#!/usr/bin/env bash
# Every GPT-2 size on this machine's cpu backend, from real model files (random weights of the real
# shapes: scripts/random-model.mjs): the disk's read speed (dd, page cache dropped), cold loads,
# time to first token, fp32 and int8 decoding, a training step (full fine-tune up to gpt2-large,
# LoRA on gpt2-xl) with a checkpoint save, eval, peak RSS against the memory plan; wasm running
# gpt2-large with int8 weights; a pytorch_model.bin written by PyTorch checked against the same
# weights as safetensors. Prints one JSON object a line. Needs root (to drop the page cache),
# pnpm build, and /usr/bin/python3 with torch for the .bin part. About an hour on 2 cores.
#   bash scripts/sizes-bench.sh [MODELS_DIR=/tmp/m]     (env: SIZES="gpt2 gpt2-medium gpt2-large gpt2-xl", PARTS=all|load)
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-/tmp/m}
SIZES=${SIZES:-gpt2 gpt2-medium gpt2-large gpt2-xl}
PARTS=${PARTS:-all}
G="node packages/cli/dist/bin.js"
PRECISION=${PRECISION:-$(grep -qE "avx512_bf16|amx_bf16" /proc/cpuinfo && echo bf16 || echo fp32)} # bf16 (oneDNN) where the CPU has it
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
head -c 4000 examples/shakespeare.txt > /tmp/sizes-eval.txt
for s in $SIZES; do
  [ -d "$M/$s" ] || node scripts/random-model.mjs "$s" "$M/$s" >&2
done
for s in $SIZES; do
  f=$(ls "$M/$s"/*.safetensors | head -1)
  drop
  echo "{\"size\":\"$s\",\"disk\":\"$(dd if="$f" of=/dev/null bs=16M 2>&1 | tail -1)\"}"
  # the simplest peer: the whole file read into fresh memory (numpy.fromfile), page cache dropped
  if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    drop
    /usr/bin/python3 -c "import numpy as np,time,json;t=time.time();a=np.fromfile('$f',dtype=np.uint8);print(json.dumps({'size':'$s','numpyFromfileColdMBps':round(a.nbytes/2**20/(time.time()-t))}))"
  fi
  # what any loader pays to fill the model's memory: the first write to fresh pages (slow on VMs)
  node -e "const n=require('fs').statSync('$f').size,t=performance.now();new Float32Array(Math.floor(n/4)).fill(1);console.log(JSON.stringify({size:'$s',firstTouchMBps:Math.round(n/2**20/((performance.now()-t)/1000))}))"
  drop
  $G bench --task generate --backend cpu --model "$M/$s" --batch 1 --prompt-tokens 32 --new-tokens 32 --json
  drop
  t0=$(date +%s%N)
  $G generate --backend cpu --model "$M/$s" --prompt "The meaning of life is" --max-new-tokens 1 --seed 1 > /dev/null
  echo "{\"size\":\"$s\",\"generateOneTokenColdMs\":$(( ($(date +%s%N) - t0) / 1000000 ))}"
  $G bench --task generate --backend cpu --quantize int8 --model "$M/$s" --batch 1 --prompt-tokens 32 --new-tokens 32 --json
  [ "$PARTS" = load ] && continue
  t0=$(date +%s%N)
  ev=$($G eval --backend cpu --model "$M/$s" --data /tmp/sizes-eval.txt --json)
  echo "{\"size\":\"$s\",\"evalMs\":$(( ($(date +%s%N) - t0) / 1000000 )),\"eval\":$ev}"
  if [ "$s" = gpt2-xl ]; then train=(--lora-r 8); else train=(); fi
  rm -rf "/tmp/sizes-save-$s"
  $G bench --task train --backend cpu --precision "$PRECISION" --model "$M/$s" --batch 1 --seq 1024 --steps 1 "${train[@]}" --save "/tmp/sizes-save-$s" --json
  rm -rf "/tmp/sizes-save-$s"
done
# a pytorch_model.bin written by PyTorch (gpt2-medium), loaded and checked against the same weights as safetensors
if /usr/bin/python3 -c 'import torch' 2>/dev/null && [ -d "$M/gpt2-medium" ]; then
  /usr/bin/python3 - "$M/gpt2-medium" "$M/gpt2-medium-bin" <<'PY'
import json, shutil, struct, sys
from collections import OrderedDict
from pathlib import Path
import numpy as np, torch
src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(exist_ok=True)
raw = np.memmap(src / "model.safetensors", dtype=np.uint8, mode="r")
n = struct.unpack("<Q", bytes(raw[:8]))[0]
sd = OrderedDict()
for name, e in json.loads(bytes(raw[8:8 + n])).items():
    if name != "__metadata__":
        b, end = e["data_offsets"]
        sd[name] = torch.from_numpy(np.array(raw[8 + n + b:8 + n + end]).view("<f4").reshape(e["shape"]))
sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied, as GPT2LMHeadModel.state_dict() has it
torch.save(sd, out / "pytorch_model.bin")
for f in ["config.json", "vocab.json", "merges.txt"]:
    shutil.copy(src / f, out / f)
PY
  node --input-type=module -e "
import { createHash } from 'node:crypto';
import { loadModelDir } from './packages/core/dist/node.js';
const h = async (d) => createHash('sha256').update(Buffer.from((await loadModelDir(d)).params.buffer)).digest('hex');
const [a, b] = [await h('$M/gpt2-medium'), await h('$M/gpt2-medium-bin')];
console.log(JSON.stringify({ binCheck: 'gpt2-medium', safetensorsSha256: a.slice(0, 16), binSha256: b.slice(0, 16), equal: a === b }));"
  drop
  $G bench --task generate --backend cpu --model "$M/gpt2-medium-bin" --batch 1 --prompt-tokens 32 --new-tokens 8 --json
fi
[ "$PARTS" = load ] && exit 0
$G bench --task generate --backend wasm --quantize int8 --model "$M/gpt2-large" --batch 1 --prompt-tokens 32 --new-tokens 16 --json
