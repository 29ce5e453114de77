import type { Buf } from '../../backend.js';
import { f32 } from './buf.js';

export function add(out: Buf, a: Buf, b: Buf, N: number): void {
  const o = f32(out), x = f32(a), y = f32(b);
  for (let i = 0; i < N; i++) o[i] = x[i] + y[i];
}
