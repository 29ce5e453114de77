import type { Buf } from '../../backend.js';
import { f32 } from './buf.js';
import { roundBf16 } from './round-bf16.js';

// torch.optim.AdamW: decoupled weight decay, bias-corrected moments; step counts from 1. With copy,
// the updated params rounded to bf16 too.
export function adamw(
  params: Buf, grads: Buf, m: Buf, v: Buf, N: number, lr: number, beta1: number, beta2: number, eps: number,
  weightDecay: number, step: number, gradScale: number, copy?: Buf | null,
): void {
  const p = f32(params), g = f32(grads), mm = f32(m), vv = f32(v);
  const c1 = 1 - Math.pow(beta1, step), c2 = 1 - Math.pow(beta2, step);
  for (let i = 0; i < N; i++) {
    const gi = g[i] * gradScale;
    const mi = beta1 * mm[i] + (1 - beta1) * gi;
    const vi = beta2 * vv[i] + (1 - beta2) * gi * gi;
    mm[i] = mi;
    vv[i] = vi;
    p[i] -= lr * (mi / c1 / (Math.sqrt(vi / c2) + eps) + weightDecay * p[i]);
  }
  if (copy) roundBf16(copy, params, N);
}
