import type { Buf } from '../../backend.js';
import { f32 } from './buf.js';

export function sumSquares(out: Buf, x: Buf, N: number): void {
  const v = f32(x);
  let s = 0;
  for (let i = 0; i < N; i++) s += v[i] * v[i];
  f32(out)[0] = s;
}
