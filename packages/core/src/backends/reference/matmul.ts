import type { Buf } from '../../backend.js';
import { f32, i32 } from './buf.js';
import { int8RowBytes } from '../../model/int8.js';

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
// Both products are row axpys over contiguous memory, four source rows per pass so each
// destination element is loaded and stored once per four multiply-adds.
export function matmulBackward(
  dinp: Buf, dw: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, w: Buf, N: number, IN: number, OUT: number,
): void {
  const di = f32(dinp), d = f32(dout), x = f32(inp), wt = f32(w);
  // dinp[n, :] += sum_j dout[n, j] * w[j, :]
  for (let n = 0; n < N; n++) axpy4(di, n * IN, wt, IN, OUT, (j) => d[n * OUT + j]);
  // dw[j, :] += sum_n dout[n, j] * inp[n, :]
  const dwt = dw ? f32(dw) : null;
  if (dwt) for (let j = 0; j < OUT; j++) axpy4(dwt, j * IN, x, IN, N, (n) => d[n * OUT + j]);
  if (dbias) biasBackward(dbias, dout, N, OUT);
}

// dbias (OUT) += column sums of dout (N,OUT)
export function biasBackward(dbias: Buf, dout: Buf, N: number, OUT: number): void {
  const db = f32(dbias), d = f32(dout);
  for (let n = 0; n < N; n++) for (let j = 0; j < OUT; j++) db[j] += d[n * OUT + j];
}

// dst[off .. off+IN) += sum_{r < R} coef(r) * src[r*IN .. r*IN+IN), four rows at a time
function axpy4(dst: Float32Array, off: number, src: Float32Array, IN: number, R: number, coef: (r: number) => number): void {
  let r = 0;
  for (; r + 4 <= R; r += 4) {
    const g0 = coef(r), g1 = coef(r + 1), g2 = coef(r + 2), g3 = coef(r + 3);
    const s0 = r * IN, s1 = s0 + IN, s2 = s1 + IN, s3 = s2 + IN;
    for (let i = 0; i < IN; i++) dst[off + i] += g0 * src[s0 + i] + g1 * src[s1 + i] + g2 * src[s2 + i] + g3 * src[s3 + i];
  }
  for (; r < R; r++) {
    const g = coef(r), s0 = r * IN;
    for (let i = 0; i < IN; i++) dst[off + i] += g * src[s0 + i];
  }
}

// out (N,OUT) = scale[j] * (inp (N,IN) . q[j,:]) + bias, q (OUT,IN) int8 packed in i32 words with
// rows padded to int8RowBytes(IN): the int8 arithmetic every backend matches
export function matmulInt8Forward(out: Buf, inp: Buf, q: Buf, scale: Buf, bias: Buf | null, N: number, IN: number, OUT: number): void {
  const o = f32(out), x = f32(inp), s = f32(scale), bs = bias ? f32(bias) : null;
  const qw = i32(q), bytes = new Int8Array(qw.buffer, qw.byteOffset, qw.byteLength), rb = int8RowBytes(IN);
  for (let n = 0; n < N; n++) {
    const xo = n * IN;
    for (let j = 0; j < OUT; j++) {
      const wo = j * rb;
      let acc = 0;
      for (let i = 0; i < IN; i++) acc += x[xo + i] * bytes[wo + i];
      o[n * OUT + j] = s[j] * acc + (bs ? bs[j] : 0);
    }
  }
}
