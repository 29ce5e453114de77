#!/usr/bin/env bash
# gpu-check.sh: checks an NVIDIA machine with the release and compares it with PyTorch.
#
#   bash gpu-check.sh [OUT_DIR]          (run from anywhere; it is copied into the release folder)
#
# Needs, on a bare Linux x86-64 machine: an NVIDIA GPU and driver, this release folder, a Node 20+
# binary (`node` on PATH, $NODE, or `node` / `node.xz` next to the release folder or inside it), and
# for the peer figures python3 with PyTorch and transformers. It
#   1. finds cuBLAS (the CUDA toolkit, or PyTorch's nvidia-cublas wheel), the Vulkan loader and
#      NVIDIA's Vulkan ICD, and says which of node, cuBLAS, the loader or the driver is missing;
#   2. runs `gpt2 selftest` on cuda in fp32, tf32 and bf16, and on webgpu in fp32 and f16;
#   3. runs `gpt2 bench` on cuda (train GPT-2 124M at B=8, T=1024 in fp32 and bf16; generate at
#      batch 1 and 16) and on webgpu (the same generate, and the matmul GFLOP/s);
#   4. runs the peer, gpu_peer.py: HF transformers' GPT2LMHeadModel with torch.optim.AdamW (eager,
#      and under torch.autocast(bfloat16)) and HF generate() at batch 1 and 16;
#   5. writes every result as JSON into OUT_DIR (default ./gpu-check-out) and table.md side by side.
# Exit status: 0 when every selftest passed, 1 otherwise (benchmarks never fail the check).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$(mkdir -p "${1:-gpu-check-out}" && cd "${1:-gpu-check-out}" && pwd)"
STEPS="${GPT2_CHECK_STEPS:-3}"
failed=0
say() { echo "gpu-check: $*" | tee -a "$OUT/log.txt"; }

# ---- 1. what this machine has ----
NODE="${NODE:-}"
for cand in "$(command -v node || true)" "$HERE/node" "$HERE/../node"; do
  [ -z "$NODE" ] && [ -n "$cand" ] && [ -x "$cand" ] && NODE="$cand"
done
if [ -z "$NODE" ]; then
  for xz in "$HERE/node.xz" "$HERE/../node.xz"; do
    if [ -z "$NODE" ] && [ -f "$xz" ]; then xz -dc "$xz" > /tmp/gpt2-node && chmod +x /tmp/gpt2-node && NODE=/tmp/gpt2-node; fi
  done
fi
if [ -z "$NODE" ] || ! "$NODE" --version > /dev/null 2>&1; then
  say "node was not found: put a Node 20+ binary on PATH, in \$NODE, or as node or node.xz beside the release folder"
  exit 1
fi
GPT2=("$NODE" "$HERE/gpt2.mjs")
say "node $("$NODE" --version) at $NODE"

if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
elif ! ldconfig -p | grep -q 'libcuda.so.1'; then
  say "the NVIDIA driver was not found (no nvidia-smi, no libcuda.so.1): cuda and webgpu will not start"
fi

has_cublas() {
  ldconfig -p | grep -q 'libcublas.so' && return 0
  local d
  local IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do ls "$d"/libcublas.so* > /dev/null 2>&1 && return 0; done
  return 1
}
if ! has_cublas; then
  # PyTorch's nvidia-* wheels (any layout), then the CUDA toolkit
  wheels="$(python3 -c 'import nvidia, os; print(" ".join(nvidia.__path__))' 2> /dev/null || true)"
  for d in $(find $wheels -name 'libcublas.so*' -printf '%h\n' 2> /dev/null | sort -u) "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/targets/x86_64-linux/lib; do
    if ls "$d"/libcublas.so* > /dev/null 2>&1; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      say "cuBLAS found in $d"
      break
    fi
  done
fi
has_cublas || say "cuBLAS was not found (no libcublas.so on the loader path, in PyTorch's nvidia wheels or in a CUDA toolkit): cuda will not start"

if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  say "the Vulkan loader (libvulkan.so.1) was not found: webgpu will not start; install libvulkan1 (or carry its .deb and unpack it)"
fi
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; say "NVIDIA's Vulkan ICD: $icd"; break; fi
  done
  [ -z "${VK_DRIVER_FILES:-}" ] && say "NVIDIA's Vulkan ICD (nvidia_icd.json) was not found: webgpu may find no adapter"
fi
"${GPT2[@]}" info --json > "$OUT/info.json" 2>> "$OUT/log.txt"

# ---- 2. selftest ----
selftest() { # backend precision
  local f="$OUT/selftest-$1-$2.json"
  "${GPT2[@]}" selftest --backend "$1" --precision "$2" --json > "$f" 2>> "$OUT/log.txt"
  local rc=$?
  if [ $rc -eq 0 ]; then say "selftest $1 $2: passed"; else say "selftest $1 $2: FAILED (exit $rc; $f and log.txt)"; failed=1; fi
}
for p in fp32 tf32 bf16; do selftest cuda $p; done
for p in fp32 f16; do selftest webgpu $p; done

# ---- 3. benchmarks ----
bench() { # name args...
  local name="$1"; shift
  "${GPT2[@]}" bench "$@" --json > "$OUT/bench-$name.json" 2>> "$OUT/log.txt" && say "bench $name: $(cat "$OUT/bench-$name.json")" || say "bench $name: failed (log.txt)"
}
bench cuda-train-fp32 --backend cuda --task train --init gpt2 --batch 8 --seq 1024 --steps "$STEPS" --precision fp32
bench cuda-train-bf16 --backend cuda --task train --init gpt2 --batch 8 --seq 1024 --steps "$STEPS" --precision bf16
for b in 1 16; do
  bench cuda-generate-$b --backend cuda --task generate --init gpt2 --batch $b --prompt-tokens 32 --new-tokens 128
  bench webgpu-generate-$b --backend webgpu --task generate --init gpt2 --batch $b --prompt-tokens 32 --new-tokens 128
done
bench cuda-matmul --backend cuda --task matmul --batch 8 --seq 1024
bench webgpu-matmul --backend webgpu --task matmul --batch 8 --seq 1024

# ---- 4. the peer ----
if python3 -c 'import torch, transformers' 2> /dev/null; then
  python3 "$HERE/gpu_peer.py" run "$OUT" --steps "$STEPS" 2>> "$OUT/log.txt" || say "the PyTorch peer failed (log.txt)"
else
  say "python3 with torch and transformers was not found: no peer figures"
fi

# ---- 5. the table ----
python3 "$HERE/gpu_peer.py" table "$OUT" > "$OUT/table.md" 2>> "$OUT/log.txt" && cat "$OUT/table.md"
exit $failed
