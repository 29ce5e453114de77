import type { Buf } from '../../backend.js';
import { f32, i32 } from './buf.js';

// Flash-style causal attention: each query row keeps only its log-sum-exp; no (T,T) matrix.
// qkv (B,T,3C): q at [0,C), k at [C,2C), v at [2C,3C); head h occupies columns h*HS .. h*HS+HS.
export function attentionForward(out: Buf, lse: Buf, qkv: Buf, B: number, T: number, NH: number, HS: number): void {
  const o = f32(out), l = f32(lse), x = f32(qkv);
  const C = NH * HS, C3 = 3 * C, scale = 1 / Math.sqrt(HS);
  const scores = new Float64Array(T); // one row of scores, reused: O(T) memory
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * HS;
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * C3 + C + h * HS;
          let s = 0;
          for (let i = 0; i < HS; i++) s += x[q + i] * x[k + i];
          s *= scale;
          scores[t2] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) sum += Math.exp(scores[t2] - max);
        const oo = (b * T + t) * C + h * HS;
        for (let i = 0; i < HS; i++) o[oo + i] = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const p = Math.exp(scores[t2] - max) / sum;
          const v = (b * T + t2) * C3 + 2 * C + h * HS;
          for (let i = 0; i < HS; i++) o[oo + i] += p * x[v + i];
        }
        l[(b * NH + h) * T + t] = max + Math.log(sum);
      }
    }
  }
}

// Recomputes p = exp(s - lse); with D = dout . out:  dv += p dout;  ds = p (dout . v - D);
// dq += scale ds k;  dk += scale ds q.
export function attentionBackward(
  dqkv: Buf, dout: Buf, qkv: Buf, out: Buf, lse: Buf, B: number, T: number, NH: number, HS: number,
): void {
  const dx = f32(dqkv), d = f32(dout), x = f32(qkv), o = f32(out), l = f32(lse);
  const C = NH * HS, C3 = 3 * C, scale = 1 / Math.sqrt(HS);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * HS, oo = (b * T + t) * C + h * HS;
        const rowLse = l[(b * NH + h) * T + t];
        let D = 0;
        for (let i = 0; i < HS; i++) D += d[oo + i] * o[oo + i];
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * C3 + C + h * HS, v = k + C;
          let s = 0, dp = 0;
          for (let i = 0; i < HS; i++) {
            s += x[q + i] * x[k + i];
            dp += d[oo + i] * x[v + i];
          }
          const p = Math.exp(s * scale - rowLse);
          const ds = p * (dp - D) * scale;
          for (let i = 0; i < HS; i++) {
            dx[v + i] += p * d[oo + i];
            dx[q + i] += ds * x[k + i];
            dx[k + i] += ds * x[q + i];
          }
        }
      }
    }
  }
}

// Row b appends its T new positions' k, v to the caches (B,NH,maxT,HS) at pos[b], then attends;
// a row with pos[b] < 0 is skipped.
export function attentionDecode(
  out: Buf, qkv: Buf, kCache: Buf, vCache: Buf, posBuf: Buf, B: number, T: number, NH: number, HS: number,
  maxT: number,
): void {
  const o = f32(out), x = f32(qkv), kc = f32(kCache), vc = f32(vCache), ps = i32(posBuf);
  const C = NH * HS, C3 = 3 * C, scale = 1 / Math.sqrt(HS);
  const scores = new Float64Array(maxT);
  for (let b = 0; b < B; b++) {
    const pos = ps[b];
    if (pos < 0) continue;
    for (let h = 0; h < NH; h++) {
      const cache = (b * NH + h) * maxT * HS;
      for (let t = 0; t < T; t++) {
        const src = (b * T + t) * C3 + h * HS, dst = cache + (pos + t) * HS;
        for (let i = 0; i < HS; i++) {
          kc[dst + i] = x[src + C + i];
          vc[dst + i] = x[src + 2 * C + i];
        }
      }
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * HS, last = pos + t;
        let max = -Infinity;
        for (let t2 = 0; t2 <= last; t2++) {
          const k = cache + t2 * HS;
          let s = 0;
          for (let i = 0; i < HS; i++) s += x[q + i] * kc[k + i];
          s *= scale;
          scores[t2] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= last; t2++) sum += Math.exp(scores[t2] - max);
        const oo = (b * T + t) * C + h * HS;
        for (let i = 0; i < HS; i++) o[oo + i] = 0;
        for (let t2 = 0; t2 <= last; t2++) {
          const p = Math.exp(scores[t2] - max) / sum;
          const v = cache + t2 * HS;
          for (let i = 0; i < HS; i++) o[oo + i] += p * vc[v + i];
        }
      }
    }
  }
}
