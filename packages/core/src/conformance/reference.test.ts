// The naive references' backward passes against central finite differences of their own
// float64 forwards, so the kernel cases compare backends with verified math.
import { describe, expect, it } from 'vitest';
import { Rng } from '../sample/rng.js';
import * as ref from './reference.js';

const rng = new Rng(7);
const rand = (n: number, s = 1) => Float64Array.from({ length: n }, () => (rng.random() * 2 - 1) * s);

/** d/dx_i of sum(dout * f(x)) for every i, by central differences. */
function numericGrad(x: Float64Array, dout: Float64Array, f: (x: Float64Array) => Float64Array): Float64Array {
  const g = new Float64Array(x.length), h = 1e-6;
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const up = f(x).reduce((a, v, j) => a + v * dout[j], 0);
    x[i] = keep - h;
    const down = f(x).reduce((a, v, j) => a + v * dout[j], 0);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

const close = (a: Float64Array, b: Float64Array) => {
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-6 + 1e-6 * Math.abs(b[i]));
};

describe('reference kernels: backward = finite differences of forward', () => {
  it('matmul', () => {
    const N = 3, IN = 4, OUT = 5, inp = rand(N * IN), w = rand(OUT * IN), b = rand(OUT), dout = rand(N * OUT);
    const g = ref.matmulGrad(dout, inp, w, N, IN, OUT);
    close(g.dinp, numericGrad(inp, dout, (x) => ref.matmul(x, w, b, N, IN, OUT)));
    close(g.dw, numericGrad(w, dout, (x) => ref.matmul(inp, x, b, N, IN, OUT)));
    close(g.dbias, numericGrad(b, dout, (x) => ref.matmul(inp, w, x, N, IN, OUT)));
  });

  it('layernorm', () => {
    const N = 3, C = 6, inp = rand(N * C, 2), w = rand(C), b = rand(C), dout = rand(N * C);
    const g = ref.layernormGrad(dout, inp, w, N, C);
    close(g.dinp, numericGrad(inp, dout, (x) => ref.layernorm(x, w, b, N, C).out));
    close(g.dw, numericGrad(w, dout, (x) => ref.layernorm(inp, x, b, N, C).out));
    close(g.db, numericGrad(b, dout, (x) => ref.layernorm(inp, w, x, N, C).out));
  });

  it('attention', () => {
    const B = 2, T = 4, NH = 2, HS = 3, qkv = rand(B * T * 3 * NH * HS, 1.5), dout = rand(B * T * NH * HS);
    close(ref.attentionGrad(dout, qkv, B, T, NH, HS), numericGrad(qkv, dout, (x) => ref.attention(x, B, T, NH, HS).out));
  });

  it('gelu', () => {
    const x = rand(20, 5), dout = rand(20);
    close(ref.geluGrad(x, dout), numericGrad(x, dout, ref.gelu));
  });

  it('cross-entropy', () => {
    const N = 3, V = 7, logits = rand(N * V, 3), targets = Int32Array.of(2, -100, 6), dout = Float64Array.of(1 / 2, 1 / 2, 1 / 2);
    close(ref.crossEntropyGrad(logits, targets, 1 / 2, N, V), numericGrad(logits, dout, (x) => ref.crossEntropy(x, targets, N, V)));
  });

  it('gelu_new matches its published values', () => {
    // HF's NewGELUActivation at a few points (computed by the closed form in float64)
    expect(ref.gelu(Float64Array.of(0, 1, -1, 3))[1]).toBeCloseTo(0.8411919906, 9);
    expect(ref.gelu(Float64Array.of(-1))[0]).toBeCloseTo(-0.1588080094, 9);
  });
});
