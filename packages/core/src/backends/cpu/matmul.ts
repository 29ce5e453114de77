import type { Buf } from '../../backend.js';
import { f32 } from './buf.js';

// out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias (OUT)
// Four rows of inp share each pass over a weight row, so w is read N/4 times, not N.
export function matmulForward(out: Buf, inp: Buf, w: Buf, bias: Buf | null, N: number, IN: number, OUT: number): void {
  const o = f32(out), x = f32(inp), wt = f32(w), bs = bias ? f32(bias) : null;
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const x0 = n * IN, x1 = x0 + IN, x2 = x1 + IN, x3 = x2 + IN;
    for (let j = 0; j < OUT; j++) {
      const wo = j * IN;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < IN; i++) {
        const wv = wt[wo + i];
        s0 += x[x0 + i] * wv;
        s1 += x[x1 + i] * wv;
        s2 += x[x2 + i] * wv;
        s3 += x[x3 + i] * wv;
      }
      const b = bs ? bs[j] : 0;
      o[n * OUT + j] = s0 + b;
      o[(n + 1) * OUT + j] = s1 + b;
      o[(n + 2) * OUT + j] = s2 + b;
      o[(n + 3) * OUT + j] = s3 + b;
    }
  }
  for (; n < N; n++) {
    const xo = n * IN;
    for (let j = 0; j < OUT; j++) {
      const wo = j * IN;
      let s = 0;
      for (let i = 0; i < IN; i++) s += x[xo + i] * wt[wo + i];
      o[n * OUT + j] = s + (bs ? bs[j] : 0);
    }
  }
}

// dinp (N,IN) += dout @ w;  dw (OUT,IN) += dout^T @ inp;  dbias (OUT) += column sums of dout.
// Both products walk rows of w / inp contiguously (axpy form).
export function matmulBackward(
  dinp: Buf, dw: Buf, dbias: Buf | null, dout: Buf, inp: Buf, w: Buf, N: number, IN: number, OUT: number,
): void {
  const di = f32(dinp), dwt = f32(dw), d = f32(dout), x = f32(inp), wt = f32(w);
  for (let n = 0; n < N; n++) {
    const dio = n * IN, dof = n * OUT;
    for (let j = 0; j < OUT; j++) {
      const g = d[dof + j];
      if (g === 0) continue;
      const wo = j * IN;
      for (let i = 0; i < IN; i++) di[dio + i] += g * wt[wo + i];
    }
  }
  for (let j = 0; j < OUT; j++) {
    const wo = j * IN;
    for (let n = 0; n < N; n++) {
      const g = d[n * OUT + j];
      if (g === 0) continue;
      const xo = n * IN;
      for (let i = 0; i < IN; i++) dwt[wo + i] += g * x[xo + i];
    }
  }
  if (dbias) {
    const db = f32(dbias);
    for (let n = 0; n < N; n++) for (let j = 0; j < OUT; j++) db[j] += d[n * OUT + j];
  }
}
