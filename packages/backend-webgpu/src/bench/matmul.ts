// pnpm --filter @gpt2/backend-webgpu bench:matmul — GFLOP/s of out = inp @ W^T at GPT-2 shapes on
// the WebGPU adapter found (Dawn). Set GPT2_PEAK_TFLOPS to the card's fp32 peak to also print
// the fraction reached. On SwiftShader (a CPU renderer) the figures are not GPU speed.
import { createWebGPUBackend } from '../index.js';

const SHAPES: [number, number][] = [[768, 2304], [768, 3072], [3072, 768], [768, 50257]]; // IN x OUT
const NS = (process.env.GPT2_BENCH_NS ?? "1,64,256,1024").split(",").map(Number);
const peak = Number(process.env.GPT2_PEAK_TFLOPS ?? 0);

const be = await createWebGPUBackend();
const rows: Record<string, { gflops: number; ofPeak?: number }> = {};
for (const [IN, OUT] of SHAPES) {
  const w = be.alloc(IN * OUT);
  for (const N of NS) {
    const x = be.alloc(N * IN), out = be.alloc(N * OUT);
    be.kernels.matmulForward(out, x, w, null, N, IN, OUT);
    await be.sync(); // warm-up: pipeline creation
    let reps = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 500 || reps < 3) {
      for (let i = 0; i < 10; i++) be.kernels.matmulForward(out, x, w, null, N, IN, OUT);
      await be.sync();
      reps += 10;
    }
    const ms = (performance.now() - t0) / reps;
    const gflops = (2 * N * IN * OUT) / ms / 1e6;
    rows[`${N}x${IN}x${OUT}`] = { gflops: +gflops.toFixed(2), ...(peak ? { ofPeak: +(gflops / 1000 / peak).toFixed(3) } : {}) };
    be.free(x);
    be.free(out);
  }
  be.free(w);
}
console.log(JSON.stringify({ task: 'matmul', backend: 'webgpu', device: be.describe(), peakTflops: peak || undefined, results: rows }, null, 2));
be.dispose();
