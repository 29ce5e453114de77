// pnpm --filter @gpt2/backend-cpu bench:matmul — GFLOP/s of out = inp @ W^T at GPT-2's shapes on
// the native cpu backend and the wasm backend, all threads, in one run; the forward product and
// the backward pair (dinp and dW). JSON.
import { availableParallelism } from 'node:os';
import type { Backend } from '@gpt2/core';
import { createWasmBackend } from '@gpt2/backend-wasm';
import { createCpuBackend } from '../index.js';

const SHAPES: [number, number][] = [[768, 2304], [768, 3072], [3072, 768], [768, 50257]]; // IN x OUT
const NS = (process.env.GPT2_BENCH_ROWS ?? '1,8,64,256,1024').split(',').map(Number);

function time(fn: () => void, minMs = 300): number {
  fn(); // warm-up
  let reps = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs || reps < 3) {
    fn();
    reps++;
  }
  return (performance.now() - t0) / reps;
}

const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);

function gflops(be: Backend, backward: boolean) {
  const rows: Record<string, number> = {};
  for (const [IN, OUT] of SHAPES) {
    const w = be.alloc(IN * OUT), dw = be.alloc(IN * OUT);
    be.upload(w, rand(IN * OUT));
    for (const N of NS) {
      if (backward && N < 64) continue;
      const x = be.alloc(N * IN), out = be.alloc(N * OUT), dx = be.alloc(N * IN);
      be.upload(x, rand(N * IN));
      be.upload(out, rand(N * OUT));
      const ms = backward
        ? time(() => be.kernels.matmulBackward(dx, dw, null, out, x, w, N, IN, OUT))
        : time(() => be.kernels.matmulForward(out, x, w, null, N, IN, OUT));
      rows[`${N}x${IN}x${OUT}`] = +(((backward ? 4 : 2) * N * IN * OUT) / ms / 1e6).toFixed(1);
      for (const b of [x, out, dx]) be.free(b);
    }
    be.free(w);
    be.free(dw);
  }
  return rows;
}

const threads = availableParallelism();
const result: Record<string, unknown> = { task: 'matmul', shape: 'N x IN x OUT, out = inp @ W^T; backward: dinp and dW', threads };
for (const [name, make] of [['cpu', () => createCpuBackend({ threads })], ['wasm', () => createWasmBackend({ threads })]] as const) {
  const be = await make();
  result[name] = { info: be.describe(), forward: gflops(be, false), backward: gflops(be, true) };
  be.dispose();
}
console.log(JSON.stringify(result, null, 2));
