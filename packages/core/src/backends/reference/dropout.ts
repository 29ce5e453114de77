import type { Buf } from '../../backend.js';
import { dropoutHash, dropoutMultiplier, dropoutThreshold } from '../../dropout.js';
import { f32 } from './buf.js';

// out (N) += scale * dropout_p(inp), the mask drawn from (seed, i)
export function scaledDropout(out: Buf, inp: Buf, scale: number, p: number, seed: number, N: number): void {
  const o = f32(out), x = f32(inp), keepFrom = dropoutThreshold(p), k = dropoutMultiplier(scale, p);
  for (let i = 0; i < N; i++) if (dropoutHash(seed, i) >= keepFrom) o[i] = o[i] + Math.fround(x[i] * k);
}
