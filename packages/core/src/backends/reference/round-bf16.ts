import type { Buf } from '../../backend.js';
import { roundOperand } from '../../precision.js';
import { f32 } from './buf.js';

// dst (N) = src (N) rounded to bfloat16, nearest even: a 'bf16' buffer here holds its values as floats
export function roundBf16(dst: Buf, src: Buf, N: number): void {
  const d = f32(dst), s = f32(src);
  for (let i = 0; i < N; i++) d[i] = roundOperand('bf16', s[i]);
}
