// The contract's kernels over the WGSL ones (kernels/*.ts), each run in pieces small enough that
// no binding exceeds maxStorageBufferBindingSize: activations split by rows (or by sequence for
// attention), elementwise kernels by ranges, and a weight too large for one binding (the
// 50257 x C token table on devices with 128 MiB bindings) by blocks of its rows. At GPT-2 sizes
// on desktop GPUs every loop below runs once.
import type { Buf, Kernels } from '@gpt2/core';
import { GpuBuf, type Runtime } from './runtime.js';
import { biasBackward, matmulBackward, matmulForward } from './kernels/matmul.js';
import { geluBackward, geluForward } from './kernels/elementwise.js';
import { scaledDropout } from './kernels/dropout.js';
import { matmulInt8Forward } from './kernels/matmul-int8.js';
import { encoderBackwardWpe, encoderBackwardWte, encoderForward } from './kernels/encoder.js';
import { layernormBackward, layernormForward, residualLayernormForward } from './kernels/layernorm.js';
import { attentionBackward, attentionDecode, attentionForward } from './kernels/attention.js';
import { crossEntropyBackward, crossEntropyForward } from './kernels/crossentropy.js';
import { CHUNK, sumPartials, sumSquaresPartial } from './kernels/sum-squares.js';
import { adamw } from './kernels/adamw.js';
import type { HalfWeights } from './kernels/half.js';

/** Backend-owned scratch: a buffer of at least `length` floats, grown on demand. */
export type Scratch = (name: string, length: number) => GpuBuf;

export function splitKernels(rt: Runtime, scratch: Scratch, halves: HalfWeights | null): Kernels {
  const g = (b: Buf) => b as GpuBuf;
  /** Elements [offset, offset + length) of b as a view. */
  const sub = (b: Buf, offset: number, length: number) => new GpuBuf(g(b).buffer, g(b).offset + offset, length, g(b).dtype, false);
  /** Calls fn over blocks of rows, each small enough that rowFloats floats per row fit one binding. */
  const byRows = (N: number, rowFloats: number, fn: (n0: number, rows: number) => void) => {
    const maxRows = Math.max(1, Math.floor((rt.maxBinding - rt.align) / 4 / rowFloats));
    for (let n0 = 0; n0 < N; n0 += maxRows) fn(n0, Math.min(maxRows, N - n0));
  };
  const wt = (w: GpuBuf) => (halves ? halves.of(w) : w);
  // out (N,OUT) = inp @ w^T + bias (and gelu(out) into geluOut): rows of inp/out, then blocks of
  // W's rows, each writing a column block of out
  const forward = (out: Buf, geluOut: Buf | null, inp: Buf, w: Buf, bias: Buf | null, N: number, IN: number, OUT: number) =>
    byRows(N, Math.max(IN, OUT), (n0, rows) =>
      byRows(OUT, IN, (o0, oc) => {
        const at = (x: Buf) => sub(x, n0 * OUT + o0, rows * OUT - o0);
        matmulForward(rt, at(out), sub(inp, n0 * IN, rows * IN), wt(sub(w, o0 * IN, oc * IN)), bias && sub(bias, o0, oc), rows, IN, oc, halves !== null, OUT, geluOut && at(geluOut));
      }));

  return {
    encoderForward(out, tokens, wte, wpe, B, T, C) {
      const V = wte.length / C;
      byRows(B, T * C, (b0, nb) =>
        byRows(V, C, (v0, vn) => encoderForward(rt, sub(out, b0 * T * C, nb * T * C), sub(tokens, b0 * T, nb * T), sub(wte, v0 * C, vn * C), g(wpe), nb, T, C, v0, vn)));
    },
    encoderBackward(dwte, dwpe, dout, tokens, B, T, C) {
      const V = dwte.length / C;
      byRows(B, T * C, (b0, nb) => {
        const d = sub(dout, b0 * T * C, nb * T * C);
        byRows(V, C, (v0, vn) => encoderBackwardWte(rt, sub(dwte, v0 * C, vn * C), d, sub(tokens, b0 * T, nb * T), nb * T, C, v0, vn));
        encoderBackwardWpe(rt, g(dwpe), d, nb, T, C);
      });
    },
    layernormForward: (out, mean, rstd, inp, w, b, N, C) =>
      byRows(N, C, (n0, n) => layernormForward(rt, sub(out, n0 * C, n * C), sub(mean, n0, n), sub(rstd, n0, n), sub(inp, n0 * C, n * C), g(w), g(b), n, C)),
    layernormBackward: (dinp, dw, db, dout, inp, w, mean, rstd, N, C) =>
      byRows(N, C, (n0, n) =>
        layernormBackward(rt, sub(dinp, n0 * C, n * C), g(dw), g(db), sub(dout, n0 * C, n * C), sub(inp, n0 * C, n * C), g(w), sub(mean, n0, n), sub(rstd, n0, n), n, C)),
    residualLayernormForward: (res, out, mean, rstd, a, b, w, bias, N, C) =>
      byRows(N, C, (n0, n) =>
        residualLayernormForward(rt, sub(res, n0 * C, n * C), sub(out, n0 * C, n * C), sub(mean, n0, n), sub(rstd, n0, n), sub(a, n0 * C, n * C), sub(b, n0 * C, n * C), g(w), g(bias), n, C)),
    matmulForward: (out, inp, w, bias, N, IN, OUT) => forward(out, null, inp, w, bias, N, IN, OUT),
    matmulGeluForward: (out, pre, inp, w, bias, N, IN, OUT) => forward(pre, out, inp, w, bias, N, IN, OUT),
    // with GELU: pre = the product, out = gelu(pre), as matmulGeluForward; rows of inp/out at a time
    matmulInt8Forward: (out, pre, inp, q, scale, bias, N, IN, OUT) =>
      byRows(N, Math.max(IN, OUT), (n0, rows) => {
        const c = pre ?? out, at = (x: Buf) => sub(x, n0 * OUT, rows * OUT);
        matmulInt8Forward(rt, at(c), pre && at(out), sub(inp, n0 * IN, rows * IN), g(q), g(scale), bias && g(bias), rows, IN, OUT, OUT);
      }),
    // per block of W's rows: dinp += dout[:, block] @ W[block]; dW[block] += dout[:, block]^T @ inp
    // (none for a null dw, a frozen weight)
    matmulBackward: (dinp, dw, dbias, dout, inp, w, N, IN, OUT) =>
      byRows(N, Math.max(IN, OUT), (n0, rows) => {
        const di = sub(dinp, n0 * IN, rows * IN), d = sub(dout, n0 * OUT, rows * OUT), x = sub(inp, n0 * IN, rows * IN);
        byRows(OUT, IN, (o0, oc) => {
          const wb = sub(w, o0 * IN, oc * IN);
          matmulBackward(rt, di, dw && sub(dw, o0 * IN, oc * IN), sub(d, o0, rows * OUT - o0), x, wb, rows, IN, oc, OUT, halves?.of(wb));
        });
        if (dbias) biasBackward(rt, g(dbias), d, rows, OUT);
      }),
    attentionForward: (out, lse, qkv, B, T, NH, HS) => {
      const C = NH * HS;
      byRows(B, 3 * T * C, (b0, nb) =>
        attentionForward(rt, sub(out, b0 * T * C, nb * T * C), sub(lse, b0 * NH * T, nb * NH * T), sub(qkv, b0 * 3 * T * C, nb * 3 * T * C), nb, T, NH, HS));
    },
    attentionBackward: (dqkv, dout, qkv, out, lse, B, T, NH, HS) => {
      const C = NH * HS;
      byRows(B, 3 * T * C, (b0, nb) =>
        attentionBackward(rt, scratch('attentionD', nb * NH * T), sub(dqkv, b0 * 3 * T * C, nb * 3 * T * C), sub(dout, b0 * T * C, nb * T * C),
          sub(qkv, b0 * 3 * T * C, nb * 3 * T * C), sub(out, b0 * T * C, nb * T * C), sub(lse, b0 * NH * T, nb * NH * T), nb, T, NH, HS));
    },
    attentionDecode: (out, qkv, kc, vc, pos, B, T, NH, HS, maxT) => {
      const C = NH * HS, cache = NH * maxT * HS;
      byRows(B, Math.max(3 * T * C, cache), (b0, nb) =>
        attentionDecode(rt, sub(out, b0 * T * C, nb * T * C), sub(qkv, b0 * 3 * T * C, nb * 3 * T * C), sub(kc, b0 * cache, nb * cache), sub(vc, b0 * cache, nb * cache), sub(pos, b0, nb), nb, T, NH, HS, maxT));
    },
    geluForward: (out, inp, N) => byRows(N, 1, (i, n) => geluForward(rt, sub(out, i, n), sub(inp, i, n), n)),
    geluBackward: (dinp, inp, dout, N) => byRows(N, 1, (i, n) => geluBackward(rt, sub(dinp, i, n), sub(inp, i, n), sub(dout, i, n), n)),
    crossEntropyForward: (losses, hits, logits, targets, N, V) =>
      byRows(N, V, (n0, rows) => crossEntropyForward(rt, sub(losses, n0, rows), hits && sub(hits, n0, rows), sub(logits, n0 * V, rows * V), sub(targets, n0, rows), rows, V)),
    crossEntropyBackward: (dlogits, losses, logits, targets, scale, N, V) =>
      byRows(N, V, (n0, rows) =>
        crossEntropyBackward(rt, sub(dlogits, n0 * V, rows * V), sub(losses, n0, rows), sub(logits, n0 * V, rows * V), sub(targets, n0, rows), scale, rows, V)),
    // by ranges, each hashing its elements' indices in the whole buffer (from i), so the mask is unsplit's
    scaledDropout: (out, inp, scale, p, seed, N) => byRows(N, 1, (i, n) => scaledDropout(rt, sub(out, i, n), sub(inp, i, n), scale, p, seed, i, n)),
    // partial sums per range, side by side in one scratch buffer, then one final sum
    sumSquares(out, x, N) {
      const ranges: [number, number][] = [];
      byRows(N, 1, (i, n) => ranges.push([i, n]));
      const partials = scratch('partials', ranges.reduce((s, [, n]) => s + Math.ceil(n / CHUNK), 0));
      let p = 0;
      for (const [i, n] of ranges) {
        sumSquaresPartial(rt, sub(partials, p, Math.ceil(n / CHUNK)), sub(x, i, n), n);
        p += Math.ceil(n / CHUNK);
      }
      sumPartials(rt, g(out), partials, p);
    },
    adamw: (params, grads, m, v, N, lr, b1, b2, eps, wd, step, gs) =>
      byRows(N, 1, (i, n) => adamw(rt, sub(params, i, n), sub(grads, i, n), sub(m, i, n), sub(v, i, n), n, lr, b1, b2, eps, wd, step, gs)),
  };
}
