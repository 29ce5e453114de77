import type { Buf } from '../../backend.js';
import { f32, i32 } from './buf.js';

// losses (N) = logsumexp(logits[n]) - logits[n, target]; hits (N) = 1 where argmax(logits[n]) (its
// first maximum) is the target
export function crossEntropyForward(losses: Buf, hits: Buf | null, logits: Buf, targets: Buf, N: number, V: number): void {
  const l = f32(losses), h = hits && f32(hits), z = f32(logits), tg = i32(targets);
  for (let n = 0; n < N; n++) {
    const t = tg[n];
    if (h) h[n] = 0;
    if (t < 0) {
      l[n] = 0;
      continue;
    }
    const off = n * V;
    let max = -Infinity, argmax = 0;
    for (let i = 0; i < V; i++) {
      if (z[off + i] > max) {
        max = z[off + i];
        argmax = i;
      }
    }
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(z[off + i] - max);
    l[n] = Math.log(sum) + max - z[off + t];
    if (h && argmax === t) h[n] = 1;
  }
}

// dlogits (N,V) = scale * (softmax - onehot); overwrites, safe in place
export function crossEntropyBackward(
  dlogits: Buf, logits: Buf, targets: Buf, scale: number, N: number, V: number,
): void {
  const d = f32(dlogits), z = f32(logits), tg = i32(targets);
  for (let n = 0; n < N; n++) {
    const t = tg[n], off = n * V;
    if (t < 0) {
      d.fill(0, off, off + V);
      continue;
    }
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (z[off + i] > max) max = z[off + i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(z[off + i] - max);
    const inv = scale / sum;
    for (let i = 0; i < V; i++) d[off + i] = Math.exp(z[off + i] - max) * inv;
    d[off + t] -= scale;
  }
}
