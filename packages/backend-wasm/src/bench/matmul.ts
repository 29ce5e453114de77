// pnpm --filter @gpt2/backend-wasm bench:matmul — GFLOP/s of out = inp @ W^T at GPT-2 shapes,
// ours (1 thread and all threads) and @tensorflow/tfjs-backend-wasm (XNNPACK, with W in its fast
// [IN, OUT] layout; it runs one thread in Node), in one run. JSON.
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { availableParallelism } from 'node:os';
import { createWasmBackend } from '../index.js';

const SHAPES: [number, number][] = [[768, 2304], [768, 3072], [3072, 768], [768, 50257]]; // IN x OUT
const NS = [1, 64, 256];

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

async function ours(threads: number) {
  const be = await createWasmBackend({ threads });
  const rows: Record<string, number> = {};
  for (const [IN, OUT] of SHAPES) {
    const w = be.alloc(IN * OUT);
    be.upload(w, rand(IN * OUT));
    for (const N of NS) {
      const x = be.alloc(N * IN), out = be.alloc(N * OUT);
      be.upload(x, rand(N * IN));
      const ms = time(() => be.kernels.matmulForward(out, x, w, null, N, IN, OUT));
      rows[`${N}x${IN}x${OUT}`] = +((2 * N * IN * OUT) / ms / 1e6).toFixed(2);
      be.free(x);
      be.free(out);
    }
    be.free(w);
  }
  const info = be.describe();
  be.dispose();
  return { info, gflops: rows };
}

async function tfjs() {
  const req = createRequire(import.meta.url);
  setWasmPaths(dirname(req.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm')) + '/');
  await tf.setBackend('wasm');
  await tf.ready();
  const rows: Record<string, number> = {};
  for (const [IN, OUT] of SHAPES) {
    // tfjs gets its fast layout: W stored [IN, OUT] (with transposeB it takes a ~10x slower path)
    const w = tf.tensor2d(rand(IN * OUT), [IN, OUT]);
    for (const N of NS) {
      const x = tf.tensor2d(rand(N * IN), [N, IN]);
      const ms = time(() => {
        const y = tf.matMul(x, w);
        y.dataSync();
        y.dispose();
      });
      rows[`${N}x${IN}x${OUT}`] = +((2 * N * IN * OUT) / ms / 1e6).toFixed(2);
      x.dispose();
    }
    w.dispose();
  }
  return { threads: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? 'multi' : 1, simd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'), gflops: rows };
}

const result = { task: 'matmul', shape: 'N x IN x OUT, out = inp @ W^T', cores: availableParallelism(), ours1: await ours(1), oursAll: await ours(availableParallelism()), tfjsWasm: await tfjs() };
console.log(JSON.stringify(result, null, 2));
