import type { Buf } from '../../backend.js';
import { f32 } from './buf.js';

const EPS = 1e-5;

// out (N,C) = (x - mean) * rstd * w + b; mean (N), rstd (N) saved for backward
export function layernormForward(
  out: Buf, mean: Buf, rstd: Buf, inp: Buf, w: Buf, b: Buf, N: number, C: number,
): void {
  const o = f32(out), mu = f32(mean), rs = f32(rstd), x = f32(inp), wt = f32(w), bs = f32(b);
  for (let n = 0; n < N; n++) {
    const off = n * C;
    let m = 0;
    for (let c = 0; c < C; c++) m += x[off + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) {
      const d = x[off + c] - m;
      v += d * d;
    }
    const s = 1 / Math.sqrt(v / C + EPS);
    for (let c = 0; c < C; c++) o[off + c] = (x[off + c] - m) * s * wt[c] + bs[c];
    mu[n] = m;
    rs[n] = s;
  }
}

// llm.c's layernorm_backward: dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
export function layernormBackward(
  dinp: Buf, dw: Buf, db: Buf, dout: Buf, inp: Buf, w: Buf, mean: Buf, rstd: Buf, N: number, C: number,
): void {
  const di = f32(dinp), dwt = f32(dw), dbs = f32(db), d = f32(dout), x = f32(inp), wt = f32(w);
  const mu = f32(mean), rs = f32(rstd);
  for (let n = 0; n < N; n++) {
    const off = n * C, m = mu[n], s = rs[n];
    let dnormMean = 0, dnormNormMean = 0;
    for (let c = 0; c < C; c++) {
      const norm = (x[off + c] - m) * s;
      const dnorm = wt[c] * d[off + c];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let c = 0; c < C; c++) {
      const norm = (x[off + c] - m) * s;
      const dnorm = wt[c] * d[off + c];
      dbs[c] += d[off + c];
      dwt[c] += norm * d[off + c];
      di[off + c] += (dnorm - dnormMean - norm * dnormNormMean) * s;
    }
  }
}
