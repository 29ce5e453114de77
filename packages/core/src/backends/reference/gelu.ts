import type { Buf } from '../../backend.js';
import { f32 } from './buf.js';

const S = Math.sqrt(2 / Math.PI);

// gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
export function geluForward(out: Buf, inp: Buf, N: number): void {
  const o = f32(out), x = f32(inp);
  for (let i = 0; i < N; i++) {
    const v = x[i];
    o[i] = 0.5 * v * (1 + Math.tanh(S * (v + 0.044715 * v * v * v)));
  }
}

export function geluBackward(dinp: Buf, inp: Buf, dout: Buf, N: number): void {
  const di = f32(dinp), x = f32(inp), d = f32(dout);
  for (let i = 0; i < N; i++) {
    const v = x[i];
    const u = S * (v + 0.044715 * v * v * v);
    const th = Math.tanh(u);
    const sech2 = 1 - th * th;
    const grad = 0.5 * (1 + th) + 0.5 * v * sech2 * S * (1 + 3 * 0.044715 * v * v);
    di[i] += grad * d[i];
  }
}
