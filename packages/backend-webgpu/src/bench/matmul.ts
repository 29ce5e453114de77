// pnpm --filter @gpt2/backend-webgpu bench:matmul — GFLOP/s of the forward product
// out = inp @ W^T and of the backward pair (dinp += dout @ W, dW += dout^T @ inp) at GPT-2
// shapes on the WebGPU adapter found (Dawn). GPT2_PRECISION=f16 times the half-weight mode;
// GPT2_PEAK_TFLOPS (the card's fp32 peak) adds the fraction reached. On SwiftShader (a CPU
// renderer) the figures are not GPU speed.
import { parsePrecision } from '@gpt2/core';
import { createWebGPUBackend } from '../index.js';

const SHAPES: [number, number][] = [[768, 2304], [768, 3072], [3072, 768], [768, 50257]]; // IN x OUT
const NS = (process.env.GPT2_BENCH_NS ?? '1,64,256,1024').split(',').map(Number);
const peak = Number(process.env.GPT2_PEAK_TFLOPS ?? 0);
const precision = parsePrecision(process.env.GPT2_PRECISION ?? 'fp32');

const be = await createWebGPUBackend({ precision });

/** GFLOP/s of `run` (flops each), after one warm-up call, over at least half a second. */
async function time(flops: number, run: () => void) {
  run();
  await be.sync(); // warm-up: pipeline creation, f16 packing
  let reps = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 500 || reps < 3) {
    for (let i = 0; i < 10; i++) run();
    await be.sync();
    reps += 10;
  }
  const gflops = flops / ((performance.now() - t0) / reps) / 1e6;
  return { gflops: +gflops.toFixed(2), ...(peak ? { ofPeak: +(gflops / 1000 / peak).toFixed(3) } : {}) };
}

const rows: Record<string, object> = {};
for (const [IN, OUT] of SHAPES) {
  const w = be.alloc(IN * OUT), dw = be.alloc(IN * OUT);
  for (const N of NS) {
    const x = be.alloc(N * IN), out = be.alloc(N * OUT), dx = be.alloc(N * IN);
    rows[`${N}x${IN}x${OUT}`] = {
      forward: await time(2 * N * IN * OUT, () => be.kernels.matmulForward(out, x, w, null, N, IN, OUT)),
      backward: await time(4 * N * IN * OUT, () => be.kernels.matmulBackward(dx, dw, null, out, x, w, N, IN, OUT)),
    };
    for (const b of [x, out, dx]) be.free(b);
  }
  be.free(w);
  be.free(dw);
}
console.log(JSON.stringify({ task: 'matmul', backend: 'webgpu', precision, device: be.describe(), peakTflops: peak || undefined, results: rows }, null, 2));
be.dispose();
