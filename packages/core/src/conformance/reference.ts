// Naive float64 reference kernels for the kernel-level conformance cases. They are written
// independently of every backend (the reference one included): attention materialises the full (T,T)
// score matrix and backpropagates through the softmax Jacobian, matmuls are textbook triple
// loops. `reference.test.ts` checks every backward here against finite differences, so these
// are verified, not assumed.
import { dropoutHash, dropoutThreshold } from '../dropout.js';

type A = Float64Array;

export function matmul(inp: A, w: A, bias: A | null, N: number, IN: number, OUT: number): A {
  const out = new Float64Array(N * OUT);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OUT; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < IN; i++) s += inp[n * IN + i] * w[o * IN + i];
      out[n * OUT + o] = s;
    }
  return out;
}

export function matmulGrad(dout: A, inp: A, w: A, N: number, IN: number, OUT: number) {
  const dinp = new Float64Array(N * IN), dw = new Float64Array(OUT * IN), dbias = new Float64Array(OUT);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OUT; o++) {
      const g = dout[n * OUT + o];
      dbias[o] += g;
      for (let i = 0; i < IN; i++) {
        dinp[n * IN + i] += g * w[o * IN + i];
        dw[o * IN + i] += g * inp[n * IN + i];
      }
    }
  return { dinp, dw, dbias };
}

export function layernorm(inp: A, w: A, b: A, N: number, C: number) {
  const out = new Float64Array(N * C), mean = new Float64Array(N), rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += inp[n * C + c] / C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (inp[n * C + c] - m) ** 2 / C;
    const r = 1 / Math.sqrt(v + 1e-5);
    for (let c = 0; c < C; c++) out[n * C + c] = (inp[n * C + c] - m) * r * w[c] + b[c];
    mean[n] = m;
    rstd[n] = r;
  }
  return { out, mean, rstd };
}

// The layernorm Jacobian applied row by row: y = xhat * w + b, xhat = (x - mu) * r.
export function layernormGrad(dout: A, inp: A, w: A, N: number, C: number) {
  const { mean, rstd } = layernorm(inp, w, new Float64Array(C), N, C);
  const dinp = new Float64Array(N * C), dw = new Float64Array(C), db = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const r = rstd[n];
    const xhat = (c: number) => (inp[n * C + c] - mean[n]) * r;
    for (let c = 0; c < C; c++) {
      db[c] += dout[n * C + c];
      dw[c] += dout[n * C + c] * xhat(c);
    }
    // d xhat_j / d x_i = r * (delta_ij - 1/C - xhat_i xhat_j / C)
    for (let i = 0; i < C; i++) {
      let s = 0;
      for (let j = 0; j < C; j++) {
        const dxhat = dout[n * C + j] * w[j];
        s += dxhat * r * ((i === j ? 1 : 0) - 1 / C - (xhat(i) * xhat(j)) / C);
      }
      dinp[n * C + i] = s;
    }
  }
  return { dinp, dw, db };
}

const GS = Math.sqrt(2 / Math.PI);
export const gelu = (x: A): A => x.map((v) => 0.5 * v * (1 + Math.tanh(GS * (v + 0.044715 * v ** 3))));
export function geluGrad(x: A, dout: A): A {
  return x.map((v, i) => {
    const th = Math.tanh(GS * (v + 0.044715 * v ** 3));
    return dout[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * GS * (1 + 3 * 0.044715 * v * v));
  });
}

/** Causal attention with the whole (T,T) probability matrix per head. */
export function attention(qkv: A, B: number, T: number, NH: number, HS: number) {
  const C = NH * HS, out = new Float64Array(B * T * C), lse = new Float64Array(B * NH * T);
  const P = new Float64Array(B * NH * T * T);
  const at = (b: number, t: number, part: number, h: number, i: number) => qkv[(b * T + t) * 3 * C + part * C + h * HS + i];
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++)
      for (let t = 0; t < T; t++) {
        const s = new Float64Array(t + 1);
        for (let u = 0; u <= t; u++) {
          for (let i = 0; i < HS; i++) s[u] += at(b, t, 0, h, i) * at(b, u, 1, h, i);
          s[u] /= Math.sqrt(HS);
        }
        const mx = Math.max(...s);
        const z = s.reduce((acc, x) => acc + Math.exp(x - mx), 0);
        lse[(b * NH + h) * T + t] = mx + Math.log(z);
        for (let u = 0; u <= t; u++) {
          const p = Math.exp(s[u] - mx) / z;
          P[((b * NH + h) * T + t) * T + u] = p;
          for (let i = 0; i < HS; i++) out[(b * T + t) * C + h * HS + i] += p * at(b, u, 2, h, i);
        }
      }
  return { out, lse, P };
}

export function attentionGrad(dout: A, qkv: A, B: number, T: number, NH: number, HS: number): A {
  const C = NH * HS, { P } = attention(qkv, B, T, NH, HS), dqkv = new Float64Array(qkv.length);
  const idx = (b: number, t: number, part: number, h: number, i: number) => (b * T + t) * 3 * C + part * C + h * HS + i;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < NH; h++)
      for (let t = 0; t < T; t++) {
        const p = (u: number) => P[((b * NH + h) * T + t) * T + u];
        const dP = new Float64Array(t + 1);
        for (let u = 0; u <= t; u++)
          for (let i = 0; i < HS; i++) {
            dP[u] += dout[(b * T + t) * C + h * HS + i] * qkv[idx(b, u, 2, h, i)];
            dqkv[idx(b, u, 2, h, i)] += p(u) * dout[(b * T + t) * C + h * HS + i];
          }
        let dot = 0;
        for (let u = 0; u <= t; u++) dot += p(u) * dP[u];
        for (let u = 0; u <= t; u++) {
          const dS = (p(u) * (dP[u] - dot)) / Math.sqrt(HS);
          for (let i = 0; i < HS; i++) {
            dqkv[idx(b, t, 0, h, i)] += dS * qkv[idx(b, u, 1, h, i)];
            dqkv[idx(b, u, 1, h, i)] += dS * qkv[idx(b, t, 0, h, i)];
          }
        }
      }
  return dqkv;
}

export function crossEntropy(logits: A, targets: Int32Array, N: number, V: number): A {
  const losses = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    if (targets[n] < 0) continue;
    const row = logits.subarray(n * V, (n + 1) * V);
    const mx = Math.max(...row);
    losses[n] = Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0)) + mx - row[targets[n]];
  }
  return losses;
}

/** 1 where the row's argmax (its first maximum, as torch.argmax) is the target, else 0 (0 for a negative target). */
export function argmaxHits(logits: A, targets: Int32Array, N: number, V: number): A {
  const hits = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    if (targets[n] < 0) continue;
    const row = logits.subarray(n * V, (n + 1) * V);
    hits[n] = row.indexOf(Math.max(...row)) === targets[n] ? 1 : 0;
  }
  return hits;
}

export function crossEntropyGrad(logits: A, targets: Int32Array, scale: number, N: number, V: number): A {
  const d = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    if (targets[n] < 0) continue;
    const row = logits.subarray(n * V, (n + 1) * V);
    const mx = Math.max(...row);
    const z = row.reduce((a, x) => a + Math.exp(x - mx), 0);
    for (let v = 0; v < V; v++) d[n * V + v] = (scale * Math.exp(row[v] - mx)) / z - (v === targets[n] ? scale : 0);
  }
  return d;
}

/** torch.optim.AdamW's update, written as torch writes it. */
export function adamw(
  p: A, g: A, m: A, v: A, lr: number, b1: number, b2: number, eps: number, wd: number, step: number, scale: number,
) {
  const P = p.slice(), M = m.slice(), Vv = v.slice();
  const bc1 = 1 - b1 ** step, bc2 = 1 - b2 ** step;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * scale;
    P[i] *= 1 - lr * wd;
    M[i] = M[i] * b1 + gi * (1 - b1);
    Vv[i] = Vv[i] * b2 + gi * gi * (1 - b2);
    const denom = Math.sqrt(Vv[i]) / Math.sqrt(bc2) + eps;
    P[i] -= (lr / bc1) * (M[i] / denom);
  }
  return { p: P, m: M, v: Vv };
}

/** out0 + scale * dropout_p(x), the mask from dropout.ts's hash (the definition every backend draws). */
export function scaledDropout(out0: A, x: A, scale: number, p: number, seed: number): A {
  const keepFrom = dropoutThreshold(p);
  return out0.map((o, i) => (dropoutHash(seed, i) >= keepFrom ? o + (x[i] * scale) / (1 - p) : o));
}
