// Kernel-level conformance: every kernel of the contract on random data at several shapes,
// odd ones included, against the naive float64 references. Backward kernels start from random
// gradient buffers, so a kernel that overwrites instead of accumulating fails.
import type { Backend, Buf } from '../backend.js';
import { Rng } from '../sample/rng.js';
import * as ref from './reference.js';
import { assertClose } from './compare.js';
import { ROUNDED, TOLERANCES, type Precision } from '../precision.js';

export interface KernelCase {
  name: string;
  run(be: Backend): Promise<void>;
}

type F64 = Float64Array;

class Ctx {
  rng: Rng;
  constructor(readonly be: Backend, seed: number) {
    this.rng = new Rng(seed);
  }
  /** Random float32 values in [-scale, scale), returned as the exact float64 the reference sees. */
  rand(n: number, scale = 1): F64 {
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = (this.rng.random() * 2 - 1) * scale;
    return Float64Array.from(f);
  }
  ints(n: number, max: number, ignoreEvery = 0): Int32Array {
    return Int32Array.from({ length: n }, (_, i) => (ignoreEvery && i % ignoreEvery === 1 ? -100 : this.rng.int(max)));
  }
  buf(a: F64): Buf {
    const b = this.be.alloc(a.length);
    this.be.upload(b, Float32Array.from(a));
    return b;
  }
  ibuf(a: Int32Array): Buf {
    const b = this.be.alloc(a.length, 'i32');
    this.be.upload(b, a);
    return b;
  }
  async expect(what: string, b: Buf, want: F64, atol: number, rtol = 1e-4): Promise<void> {
    assertClose(what, await this.be.read(b), want, atol, rtol);
  }
}

const plus = (a: F64, b: F64): F64 => a.map((x, i) => x + b[i]);

// Under a reduced-precision mode the outputs may also differ by the mode's rounding, which grows
// with the square root of the summed length K and with the operands' scale.
function matmulCase(N: number, IN: number, OUT: number, bias: boolean, p: Precision = 'fp32'): KernelCase {
  return {
    name: `matmul N=${N} IN=${IN} OUT=${OUT}${bias ? '' : ' (no bias)'}${p === 'fp32' ? '' : ` (${p})`}`,
    async run(be) {
      const c = new Ctx(be, N * 131 + IN * 7 + OUT);
      const s = 1 / Math.sqrt(IN);
      const mode = (K: number, scale: number) => TOLERANCES[p].matmul * Math.sqrt(K) * scale;
      const inp = c.rand(N * IN), w = c.rand(OUT * IN, s), b = bias ? c.rand(OUT) : null;
      const out = be.alloc(N * OUT);
      be.kernels.matmulForward(out, c.buf(inp), c.buf(w), b ? c.buf(b) : null, N, IN, OUT);
      await c.expect('matmulForward out', out, ref.matmul(inp, w, b, N, IN, OUT), 1e-5 + mode(IN, s));
      const dout = c.rand(N * OUT), di0 = c.rand(N * IN), dw0 = c.rand(OUT * IN), db0 = c.rand(OUT);
      const dinp = c.buf(di0), dw = c.buf(dw0), db = bias ? c.buf(db0) : null;
      be.kernels.matmulBackward(dinp, dw, db, c.buf(dout), c.buf(inp), c.buf(w), N, IN, OUT);
      const g = ref.matmulGrad(dout, inp, w, N, IN, OUT);
      await c.expect('matmulBackward dinp', dinp, plus(di0, g.dinp), 2e-5 + mode(OUT, s));
      await c.expect('matmulBackward dw', dw, plus(dw0, g.dw), 1e-5 * Math.sqrt(N) + 1e-5 + (ROUNDED[p] === 'all' ? mode(N, 1) : 0));
      if (db) await c.expect('matmulBackward dbias', db, plus(db0, g.dbias), 1e-5 * Math.sqrt(N) + 1e-5);
      if (!be.bf16Copies) return;
      // the same products on the operands' bf16 copies, as the model passes them (the weight's alone when decoding)
      const copy = (x: F64) => {
        const b16 = be.alloc(x.length, 'bf16');
        be.kernels.roundBf16!(b16, c.buf(x), x.length);
        return b16;
      };
      const inpC = copy(inp), wC = copy(w);
      be.kernels.matmulForward(out, inpC, wC, b ? c.buf(b) : null, N, IN, OUT);
      await c.expect('matmulForward out (bf16 copies)', out, ref.matmul(inp, w, b, N, IN, OUT), 1e-5 + mode(IN, s));
      be.kernels.matmulForward(out, c.buf(inp), wC, b ? c.buf(b) : null, N, IN, OUT);
      await c.expect('matmulForward out (the weight\'s bf16 copy)', out, ref.matmul(inp, w, b, N, IN, OUT), 1e-5 + mode(IN, s));
      const dinpC = c.buf(di0), dwC = c.buf(dw0);
      be.kernels.matmulBackward(dinpC, dwC, null, c.buf(dout), inpC, wC, N, IN, OUT);
      await c.expect('matmulBackward dinp (bf16 copies)', dinpC, plus(di0, g.dinp), 2e-5 + mode(OUT, s));
      await c.expect('matmulBackward dw (bf16 copies)', dwC, plus(dw0, g.dw), 1e-5 * Math.sqrt(N) + 1e-5 + mode(N, 1));
    },
  };
}

// a frozen weight (LoRA's base): dw null, so only dinp (and dbias) accumulate
function frozenMatmulCase(N: number, IN: number, OUT: number, bias: boolean): KernelCase {
  return {
    name: `matmulBackward frozen w N=${N} IN=${IN} OUT=${OUT}${bias ? '' : ' (no bias)'}`,
    async run(be) {
      const c = new Ctx(be, N * 59 + IN * 3 + OUT);
      const inp = c.rand(N * IN), w = c.rand(OUT * IN, 1 / Math.sqrt(IN)), dout = c.rand(N * OUT);
      const di0 = c.rand(N * IN), db0 = c.rand(OUT), dinp = c.buf(di0), db = bias ? c.buf(db0) : null;
      be.kernels.matmulBackward(dinp, null, db, c.buf(dout), c.buf(inp), c.buf(w), N, IN, OUT);
      const g = ref.matmulGrad(dout, inp, w, N, IN, OUT);
      await c.expect('matmulBackward dinp (dw null)', dinp, plus(di0, g.dinp), 2e-5);
      if (db) await c.expect('matmulBackward dbias (dw null)', db, plus(db0, g.dbias), 1e-5 * Math.sqrt(N) + 1e-5);
    },
  };
}

function layernormCase(N: number, C: number): KernelCase {
  return {
    name: `layernorm N=${N} C=${C}`,
    async run(be) {
      const c = new Ctx(be, N * 17 + C);
      const inp = c.rand(N * C, 3).map((x, i) => x + (i % 5)), w = c.rand(C, 2), b = c.rand(C);
      const out = be.alloc(N * C), mean = be.alloc(N), rstd = be.alloc(N);
      const inpB = c.buf(inp), wB = c.buf(w);
      be.kernels.layernormForward(out, mean, rstd, inpB, wB, c.buf(b), N, C);
      const r = ref.layernorm(inp, w, b, N, C);
      await c.expect('layernormForward out', out, r.out, 1e-5);
      await c.expect('layernormForward mean', mean, r.mean, 1e-5);
      await c.expect('layernormForward rstd', rstd, r.rstd, 1e-5);
      const dout = c.rand(N * C), di0 = c.rand(N * C), dw0 = c.rand(C), db0 = c.rand(C);
      const dinp = c.buf(di0), dw = c.buf(dw0), db = c.buf(db0);
      be.kernels.layernormBackward(dinp, dw, db, c.buf(dout), inpB, wB, mean, rstd, N, C);
      const g = ref.layernormGrad(dout, inp, w, N, C);
      await c.expect('layernormBackward dinp', dinp, plus(di0, g.dinp), 1e-4);
      await c.expect('layernormBackward dw', dw, plus(dw0, g.dw), 1e-5 * Math.sqrt(N) + 1e-5);
      await c.expect('layernormBackward db', db, plus(db0, g.db), 1e-5 * Math.sqrt(N) + 1e-5);
    },
  };
}

function attentionCase(B: number, T: number, NH: number, HS: number): KernelCase {
  return {
    name: `attention B=${B} T=${T} NH=${NH} HS=${HS}`,
    async run(be) {
      const c = new Ctx(be, B * 1000 + T * 10 + NH + HS);
      const C = NH * HS, qkv = c.rand(B * T * 3 * C, 2);
      const out = be.alloc(B * T * C), lse = be.alloc(B * NH * T), qkvB = c.buf(qkv);
      be.kernels.attentionForward(out, lse, qkvB, B, T, NH, HS);
      const r = ref.attention(qkv, B, T, NH, HS);
      await c.expect('attentionForward out', out, r.out, 1e-5);
      await c.expect('attentionForward lse', lse, r.lse, 1e-5);
      const dout = c.rand(B * T * C), d0 = c.rand(B * T * 3 * C), dqkv = c.buf(d0);
      be.kernels.attentionBackward(dqkv, c.buf(dout), qkvB, out, lse, B, T, NH, HS);
      await c.expect('attentionBackward dqkv', dqkv, plus(d0, ref.attentionGrad(dout, qkv, B, T, NH, HS)), 5e-5);
    },
  };
}

// Prefill T0 positions, then decode one at a time: every output row and the caches must equal
// full causal attention over the whole sequence.
function decodeCase(B: number, T0: number, steps: number, NH: number, HS: number, maxT: number): KernelCase {
  return {
    name: `attentionDecode B=${B} prefill=${T0} steps=${steps} NH=${NH} HS=${HS} maxT=${maxT}`,
    async run(be) {
      const c = new Ctx(be, 4242 + B + T0);
      const C = NH * HS, T = T0 + steps, qkv = c.rand(B * T * 3 * C, 2);
      const want = ref.attention(qkv, B, T, NH, HS).out;
      const kc = be.alloc(B * NH * maxT * HS), vc = be.alloc(B * NH * maxT * HS);
      // rows [t0, t0+n) of every sequence, as (B, n, X)
      const rows = (a: F64, t0: number, n: number, X: number) => {
        const r = new Float64Array(B * n * X);
        for (let b = 0; b < B; b++) r.set(a.subarray((b * T + t0) * X, (b * T + t0 + n) * X), b * n * X);
        return r;
      };
      let pos = 0;
      for (const n of [T0, ...Array(steps).fill(1)] as number[]) {
        const out = be.alloc(B * n * C);
        be.kernels.attentionDecode(out, c.buf(rows(qkv, pos, n, 3 * C)), kc, vc, c.ibuf(new Int32Array(B).fill(pos)), B, n, NH, HS, maxT);
        await c.expect(`attentionDecode out at pos ${pos}`, out, rows(want, pos, n, C), 1e-5);
        pos += n;
      }
      const kWant = new Float64Array(B * NH * maxT * HS), vWant = new Float64Array(B * NH * maxT * HS);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < NH; h++)
          for (let t = 0; t < T; t++)
            for (let i = 0; i < HS; i++) {
              const src = (b * T + t) * 3 * C + h * HS + i, dst = ((b * NH + h) * maxT + t) * HS + i;
              kWant[dst] = qkv[src + C];
              vWant[dst] = qkv[src + 2 * C];
            }
      await c.expect('attentionDecode kCache', kc, kWant, 0, 0);
      await c.expect('attentionDecode vCache', vc, vWant, 0, 0);
    },
  };
}

// Rows at different positions (continuous batching): each row's prompt (lens[b] positions) is
// prefilled alone by B=1 calls on views of its cache rows, in two pieces where it is long enough;
// then every row takes a batched step of 2 positions and `steps` steps of 1, each at its own
// position. In some steps a row sits out (pos -1): its out rows keep a sentinel and its cache rows
// are not written. Every output must equal full causal attention over the row's sequence, and the
// caches must hold exactly the k, v of the positions each row has taken, zeros past them.
function raggedDecodeCase(lens: number[], steps: number, NH: number, HS: number, maxT: number): KernelCase {
  return {
    name: `attentionDecode rows at different positions lens=${lens.join(',')} steps=${steps} NH=${NH} HS=${HS} maxT=${maxT}`,
    async run(be) {
      const B = lens.length, c = new Ctx(be, 777 + lens.reduce((a, x) => a * 31 + x, 0) + NH + HS);
      const C = NH * HS, T = Math.max(...lens) + 2 + steps, per = NH * maxT * HS, SENTINEL = 7.5;
      if (T > maxT) throw new Error(`raggedDecodeCase: ${T} positions past maxT ${maxT}`);
      const qkv = c.rand(B * T * 3 * C, 2), want = ref.attention(qkv, B, T, NH, HS).out;
      const kc = be.alloc(B * per), vc = be.alloc(B * per);
      // positions [t0, t0+n) of row b, as (n, X)
      const at = (a: F64, b: number, t0: number, n: number, X: number) => a.subarray((b * T + t0) * X, (b * T + t0 + n) * X);
      const cur = lens.map(() => 0); // positions each row holds
      const expectCaches = async (when: string) => {
        const kWant = new Float64Array(B * per), vWant = new Float64Array(B * per);
        for (let b = 0; b < B; b++)
          for (let h = 0; h < NH; h++)
            for (let t = 0; t < cur[b]; t++)
              for (let i = 0; i < HS; i++) {
                const src = (b * T + t) * 3 * C + h * HS + i, dst = ((b * NH + h) * maxT + t) * HS + i;
                kWant[dst] = qkv[src + C];
                vWant[dst] = qkv[src + 2 * C];
              }
        await c.expect(`attentionDecode kCache ${when}`, kc, kWant, 0, 0);
        await c.expect(`attentionDecode vCache ${when}`, vc, vWant, 0, 0);
      };
      // prefill, a row at a time (B=1 on views of its cache rows)
      for (let b = 0; b < B; b++) {
        for (const n of lens[b] > 3 ? [lens[b] - 2, 2] : [lens[b]]) {
          const out = be.alloc(n * C);
          be.kernels.attentionDecode(out, c.buf(at(qkv, b, cur[b], n, 3 * C)), be.view(kc, b * per, per), be.view(vc, b * per, per), c.ibuf(Int32Array.of(cur[b])), 1, n, NH, HS, maxT);
          await c.expect(`attentionDecode prefill row ${b} out at pos ${cur[b]}`, out, at(want, b, cur[b], n, C), 1e-5);
          cur[b] += n;
        }
      }
      await expectCaches('after prefill');
      // batched steps, every row at its own position: one of 2 positions, then single ones
      const plan = [2, ...Array<number>(steps).fill(1)];
      for (let s = 0; s < plan.length; s++) {
        const n = plan[s];
        const skip = s === 2 ? Math.min(1, B - 1) : s === plan.length - 1 ? 0 : -1; // a row that sits out
        const pos = Int32Array.from(cur, (p, b) => (b === skip ? -1 : p));
        const x = new Float64Array(B * n * 3 * C), o = new Float64Array(B * n * C).fill(SENTINEL);
        for (let b = 0; b < B; b++) {
          if (b === skip) x.set(c.rand(n * 3 * C, 2), b * n * 3 * C); // never to be written anywhere
          else {
            x.set(at(qkv, b, cur[b], n, 3 * C), b * n * 3 * C);
            o.set(at(want, b, cur[b], n, C), b * n * C);
          }
        }
        const out = c.buf(new Float64Array(B * n * C).fill(SENTINEL));
        be.kernels.attentionDecode(out, c.buf(x), kc, vc, c.ibuf(pos), B, n, NH, HS, maxT);
        const what = `attentionDecode step ${s} (T=${n}) at positions ${Array.from(pos).join(',')}`;
        await c.expect(`${what} out`, out, o, 1e-5);
        if (skip >= 0) {
          const got = (await be.read(out)).subarray(skip * n * C, (skip + 1) * n * C);
          if (got.some((v) => v !== SENTINEL)) throw new Error(`${what}: row ${skip} (pos -1) had its out rows written`);
        }
        for (let b = 0; b < B; b++) if (b !== skip) cur[b] += n;
        if (skip >= 0) await expectCaches(`after ${what}`);
      }
      await expectCaches('at the end');
    },
  };
}

function geluCase(N: number): KernelCase {
  return {
    name: `geluBackward N=${N}`,
    async run(be) {
      const c = new Ctx(be, N);
      const x = c.rand(N, 6), dout = c.rand(N), d0 = c.rand(N), dinp = c.buf(d0);
      be.kernels.geluBackward(dinp, c.buf(x), c.buf(dout), N);
      await c.expect('geluBackward', dinp, plus(d0, ref.geluGrad(x, dout)), 1e-6);
    },
  };
}

function geluForwardCase(N: number): KernelCase {
  return {
    name: `geluForward N=${N}`,
    async run(be) {
      const c = new Ctx(be, N + 5);
      const x = c.rand(N, 6), out = c.buf(c.rand(N)); // overwritten
      be.kernels.geluForward(out, c.buf(x), N);
      await c.expect('geluForward', out, ref.gelu(x), 1e-6);
    },
  };
}

// out += scale * dropout_p(inp) with the mask drawn from (seed, i): the kept fraction is near 1 - p
function scaledDropoutCase(N: number, scale: number, p: number, seed: number): KernelCase {
  return {
    name: `scaledDropout N=${N} scale=${scale} p=${p} seed=${seed}`,
    async run(be) {
      const c = new Ctx(be, N + seed);
      const x = c.rand(N, 3), o0 = c.rand(N), out = c.buf(o0);
      be.kernels.scaledDropout(out, c.buf(x), scale, p, seed, N);
      const want = ref.scaledDropout(o0, x, scale, p, seed);
      await c.expect('scaledDropout', out, want, 1e-6);
      const kept = want.reduce((n, v, i) => n + (v !== o0[i] ? 1 : 0), 0) / N;
      if (N >= 1000 && Math.abs(kept - (1 - p)) > 0.02) throw new Error(`scaledDropout kept ${kept} of the elements at p=${p}`);
    },
  };
}

// pre = inp @ w^T + bias and out = gelu(pre); inputs up to 6 wide, so GELU sees both tails
function matmulGeluCase(N: number, IN: number, OUT: number): KernelCase {
  return {
    name: `matmulGelu N=${N} IN=${IN} OUT=${OUT}`,
    async run(be) {
      const c = new Ctx(be, N * 31 + IN + OUT);
      const inp = c.rand(N * IN, 6), w = c.rand(OUT * IN, 1 / Math.sqrt(IN)), b = c.rand(OUT);
      const out = be.alloc(N * OUT), pre = be.alloc(N * OUT);
      be.kernels.matmulGeluForward(out, pre, c.buf(inp), c.buf(w), c.buf(b), N, IN, OUT);
      const want = ref.matmul(inp, w, b, N, IN, OUT);
      await c.expect('matmulGeluForward pre', pre, want, 1e-5);
      // gelu of what the backend computed: the GELU's own error, not the matmul's twice over
      await c.expect('matmulGeluForward out', out, ref.gelu(Float64Array.from(await be.read(pre))), 1e-6);
    },
  };
}

function residualLayernormCase(N: number, C: number): KernelCase {
  return {
    name: `residualLayernorm, sumSquares N=${N} C=${C}`,
    async run(be) {
      const c = new Ctx(be, N * 13 + C);
      const a = c.rand(N * C, 3), b = c.rand(N * C, 3), w = c.rand(C, 2), bias = c.rand(C);
      const res = plus(a, b).map(Math.fround); // one fp32 rounding: exact
      const r = ref.layernorm(res, w, bias, N, C);
      const aB = c.buf(a), bB = c.buf(b), wB = c.buf(w), biasB = c.buf(bias);
      for (const inPlace of [false, true]) {
        const resB = inPlace ? aB : be.alloc(N * C), out = be.alloc(N * C), mean = be.alloc(N), rstd = be.alloc(N);
        be.kernels.residualLayernormForward(resB, out, mean, rstd, aB, bB, wB, biasB, N, C);
        const how = inPlace ? ' (in place)' : '';
        await c.expect(`residualLayernormForward res${how}`, resB, res, 0, 0);
        await c.expect(`residualLayernormForward out${how}`, out, r.out, 1e-5);
        await c.expect(`residualLayernormForward mean${how}`, mean, r.mean, 1e-5);
        await c.expect(`residualLayernormForward rstd${how}`, rstd, r.rstd, 1e-5);
      }
      const s = be.alloc(1);
      be.kernels.sumSquares(s, c.buf(a), N * C);
      await c.expect('sumSquares', s, Float64Array.of(a.reduce((acc, x) => acc + x * x, 0)), 1e-5, 1e-5);
    },
  };
}

function crossEntropyCase(N: number, V: number): KernelCase {
  return {
    name: `crossEntropy N=${N} V=${V}`,
    async run(be) {
      const c = new Ctx(be, N * 7 + V);
      const logits = c.rand(N * V, 8), targets = c.ints(N, V, N > 2 ? 3 : 0);
      // accuracy's edge cases: targets that are their row's argmax, and ties (the first maximum counts)
      const row = (n: number) => logits.subarray(n * V, (n + 1) * V);
      for (let n = 0; n < N; n += 2) if (targets[n] >= 0) targets[n] = row(n).indexOf(Math.max(...row(n)));
      if (N > 4 && V > 8) {
        const top = Math.max(...row(4)) + 1;
        logits[4 * V + 2] = logits[4 * V + V - 1] = top;
        targets[4] = V - 1; // tied with an earlier index: not the argmax
        const top6 = Math.max(...row(6)) + 1;
        logits[6 * V + 3] = logits[6 * V + 5] = top6;
        targets[6] = 3; // the first of two maxima: the argmax
      }
      const losses = be.alloc(N), hits = c.buf(c.rand(N)), lB = c.buf(logits), tB = c.ibuf(targets);
      be.kernels.crossEntropyForward(losses, hits, lB, tB, N, V);
      await c.expect('crossEntropyForward', losses, ref.crossEntropy(logits, targets, N, V), 1e-5);
      await c.expect('crossEntropyForward hits', hits, ref.argmaxHits(Float64Array.from(Float32Array.from(logits)), targets, N, V), 0, 0); // of the logits as stored
      be.kernels.crossEntropyForward(losses, null, lB, tB, N, V); // without hits
      await c.expect('crossEntropyForward without hits', losses, ref.crossEntropy(logits, targets, N, V), 1e-5);
      const scale = 1 / N, want = ref.crossEntropyGrad(logits, targets, scale, N, V), wantLoss = ref.crossEntropy(logits, targets, N, V);
      const d = c.buf(c.rand(N * V)), l2 = c.buf(c.rand(N)); // overwritten, not accumulated
      be.kernels.crossEntropyBackward(d, l2, lB, tB, scale, N, V);
      await c.expect('crossEntropyBackward', d, want, 1e-7);
      await c.expect('crossEntropyBackward losses', l2, wantLoss, 1e-5);
      const l3 = be.alloc(N);
      be.kernels.crossEntropyBackward(lB, l3, lB, tB, scale, N, V); // in place
      await c.expect('crossEntropyBackward in place', lB, want, 1e-7);
      await c.expect('crossEntropyBackward in place losses', l3, wantLoss, 1e-5);
    },
  };
}

function encoderCase(B: number, T: number, C: number, V: number): KernelCase {
  return {
    name: `encoder B=${B} T=${T} C=${C} V=${V}`,
    async run(be) {
      const c = new Ctx(be, B + T + C + V);
      const tokens = c.ints(B * T, Math.min(V, 5)); // repeated ids: dwte rows accumulate several times
      tokens[0] = V - 1;
      const wte = c.rand(V * C), wpe = c.rand((T + 3) * C), tB = c.ibuf(tokens);
      const out = be.alloc(B * T * C);
      be.kernels.encoderForward(out, tB, c.buf(wte), c.buf(wpe), B, T, C);
      const want = new Float64Array(B * T * C), dwte = c.rand(V * C), dwpe = c.rand((T + 3) * C);
      const dout = c.rand(B * T * C), dwteB = c.buf(dwte), dwpeB = c.buf(dwpe);
      for (let bt = 0; bt < B * T; bt++)
        for (let i = 0; i < C; i++) {
          const t = bt % T, tok = tokens[bt];
          want[bt * C + i] = wte[tok * C + i] + wpe[t * C + i];
          dwte[tok * C + i] += dout[bt * C + i];
          dwpe[t * C + i] += dout[bt * C + i];
        }
      await c.expect('encoderForward', out, want, 1e-6);
      be.kernels.encoderBackward(dwteB, dwpeB, c.buf(dout), tB, B, T, C);
      await c.expect('encoderBackward dwte', dwteB, dwte, 1e-5);
      await c.expect('encoderBackward dwpe', dwpeB, dwpe, 1e-5);
    },
  };
}

function adamwCase(N: number, step: number, wd: number, scale: number): KernelCase {
  return {
    name: `adamw N=${N} step=${step} wd=${wd} gradScale=${scale}`,
    async run(be) {
      const c = new Ctx(be, N + step);
      const p = c.rand(N), g = c.rand(N), m = c.rand(N, 0.1), v = c.rand(N, 0.01).map(Math.abs);
      const pB = c.buf(p), mB = c.buf(m), vB = c.buf(v);
      be.kernels.adamw(pB, c.buf(g), mB, vB, N, 1e-3, 0.9, 0.999, 1e-6, wd, step, scale);
      const r = ref.adamw(p, g, m, v, 1e-3, 0.9, 0.999, 1e-6, wd, step, scale);
      // fp32 arithmetic on O(1), O(0.1), O(0.01) inputs: a few ulps of each
      await c.expect('adamw params', pB, r.p, 3e-7, 1e-6);
      await c.expect('adamw m', mB, r.m, 3e-8, 1e-6);
      await c.expect('adamw v', vB, r.v, 3e-9, 1e-6);
    },
  };
}

/** The matmul cases, at a precision mode's tolerances. */
export function matmulCases(p: Precision = 'fp32'): KernelCase[] {
  return [
    matmulCase(1, 7, 5, true, p),
    matmulCase(37, 48, 144, true, p),
    matmulCase(5, 48, 997, false, p),
    matmulCase(64, 768, 64, true, p),
    matmulCase(3, 64, 3072, true, p),
    matmulCase(9, 37, 33, true, p), // the fewest rows past the decoding kernel's, odd widths
  ];
}

/** Every kernel case, small and odd shapes first, then GPT-2-sized reductions. */
export function kernelCases(): KernelCase[] {
  return [
    ...matmulCases(),
    layernormCase(1, 3),
    layernormCase(37, 48),
    layernormCase(8, 768),
    attentionCase(1, 1, 1, 4),
    attentionCase(2, 37, 3, 16),
    attentionCase(1, 64, 2, 64),
    attentionCase(2, 150, 2, 32), // several 64-row tiles of queries and keys
    attentionCase(1, 70, 1, 128), // the widest head the GPU backends take
    decodeCase(2, 5, 4, 3, 16, 12),
    decodeCase(1, 1, 6, 2, 8, 7),
    decodeCase(1, 70, 3, 2, 48, 80), // past 64 cache positions, and a head wider than 32
    raggedDecodeCase([5, 1, 9], 4, 3, 16, 20),
    raggedDecodeCase([70, 3, 66, 12], 3, 2, 48, 80), // rows on both sides of 64 cache positions
    frozenMatmulCase(37, 48, 144, false),
    frozenMatmulCase(5, 64, 3072, true),
    geluCase(1),
    geluCase(4099),
    geluForwardCase(1),
    geluForwardCase(4099),
    scaledDropoutCase(1, 2, 0, 0),
    scaledDropoutCase(1000, 0.5, 0, 3),
    scaledDropoutCase(4099, 2, 0.1, 7),
    scaledDropoutCase(70000, 1.5, 0.5, 0xdeadbeef),
    matmulGeluCase(1, 7, 5),
    matmulGeluCase(37, 48, 192),
    matmulGeluCase(5, 64, 3072),
    residualLayernormCase(1, 3),
    residualLayernormCase(37, 48),
    residualLayernormCase(8, 768),
    crossEntropyCase(1, 5),
    crossEntropyCase(37, 997),
    crossEntropyCase(2, 50257),
    encoderCase(2, 37, 48, 997),
    adamwCase(1, 1, 0.1, 1),
    adamwCase(1001, 7, 0.1, 0.37),
    adamwCase(64, 3, 0, 1),
  ];
}
