import type { Buf } from '../../backend.js';
import { f32, i32 } from './buf.js';

// out (B,T,C) = wte[tokens[b,t]] + wpe[t]
export function encoderForward(out: Buf, tokens: Buf, wte: Buf, wpe: Buf, B: number, T: number, C: number): void {
  const o = f32(out), tok = i32(tokens), e = f32(wte), p = f32(wpe);
  for (let bt = 0; bt < B * T; bt++) {
    const t = bt % T, ix = tok[bt] * C, px = t * C, ox = bt * C;
    for (let c = 0; c < C; c++) o[ox + c] = e[ix + c] + p[px + c];
  }
}

export function encoderBackward(dwte: Buf, dwpe: Buf, dout: Buf, tokens: Buf, B: number, T: number, C: number): void {
  const dw = f32(dwte), dp = f32(dwpe), d = f32(dout), tok = i32(tokens);
  for (let bt = 0; bt < B * T; bt++) {
    const t = bt % T, ix = tok[bt] * C, px = t * C, dx = bt * C;
    for (let c = 0; c < C; c++) {
      dw[ix + c] += d[dx + c];
      dp[px + c] += d[dx + c];
    }
  }
}
