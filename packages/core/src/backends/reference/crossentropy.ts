import type { Buf } from '../../backend.js';
import { f32, i32 } from './buf.js';

// losses (N) = logsumexp(logits[n]) - logits[n, target]
export function crossEntropyForward(losses: Buf, logits: Buf, targets: Buf, N: number, V: number): void {
  const l = f32(losses), z = f32(logits), tg = i32(targets);
  for (let n = 0; n < N; n++) {
    const t = tg[n];
    if (t < 0) {
      l[n] = 0;
      continue;
    }
    const off = n * V;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (z[off + i] > max) max = z[off + i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(z[off + i] - max);
    l[n] = Math.log(sum) + max - z[off + t];
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
