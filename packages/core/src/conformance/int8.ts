// Conformance of int8 weights (model/int8.ts): matmulInt8Forward against its float64 definition on
// random data, then whole int8 models against the reference backend's int8 model (which defines
// the arithmetic: the same quantized weights, so only the order of fp32 sums may differ), prefill
// and cached decoding included.
import type { Backend } from '../backend.js';
import { createReferenceBackend } from '../backends/reference/index.js';
import { GPT2 } from '../model/gpt2.js';
import { int8RowBytes } from '../model/int8.js';
import { Rng } from '../sample/rng.js';
import { assertClose } from './compare.js';
import { fixtureNames, greedy, loadFixture, type Fixture } from './fixtures.js';
import type { KernelCase } from './kernels.js';
import * as ref from './reference.js';
import { TOLERANCES } from '../precision.js';

// out = scale[j] * (inp . q[j]) + bias over random int8 rows, IN odd too (padded rows); with gelu,
// pre is that and out its GELU
function matmulInt8Case(N: number, IN: number, OUT: number, bias: boolean, gelu: boolean): KernelCase {
  return {
    name: `matmulInt8 N=${N} IN=${IN} OUT=${OUT}${bias ? '' : ' (no bias)'}${gelu ? ' + gelu' : ''}`,
    async run(be) {
      const rng = new Rng(N * 977 + IN * 13 + OUT);
      const rb = int8RowBytes(IN);
      const q = new Int8Array(OUT * rb), scale = new Float32Array(OUT);
      const inp = Float32Array.from({ length: N * IN }, () => (rng.random() * 2 - 1) * 3);
      const b = Float32Array.from({ length: OUT }, () => rng.random() * 2 - 1);
      for (let j = 0; j < OUT; j++) {
        scale[j] = (0.5 + rng.random()) / (127 * Math.sqrt(IN));
        for (let i = 0; i < IN; i++) q[j * rb + i] = rng.int(255) - 127;
      }
      const w = Float64Array.from({ length: OUT * IN }, (_, k) => q[Math.floor(k / IN) * rb + (k % IN)] * scale[Math.floor(k / IN)]);
      const want = ref.matmul(Float64Array.from(inp), w, bias ? Float64Array.from(b) : null, N, IN, OUT);
      const up = (a: Float32Array | Int32Array, dtype: 'f32' | 'i32' = 'f32') => {
        const buf = be.alloc(a.length, dtype);
        be.upload(buf, a);
        return buf;
      };
      const out = be.alloc(N * OUT), pre = gelu ? be.alloc(N * OUT) : null;
      be.kernels.matmulInt8Forward!(out, pre, up(inp), up(new Int32Array(q.buffer), 'i32'), up(scale), bias ? up(b) : null, N, IN, OUT);
      assertClose(`matmulInt8Forward ${gelu ? 'pre' : 'out'}`, await be.read(pre ?? out), want, 2e-5, 1e-4);
      if (pre) assertClose('matmulInt8Forward out', await be.read(out), ref.gelu(Float64Array.from(await be.read(pre))), 1e-6, 1e-4);
    },
  };
}

export function int8KernelCases(): KernelCase[] {
  return [
    matmulInt8Case(1, 7, 5, true, false),
    matmulInt8Case(1, 768, 2304, true, false),
    matmulInt8Case(2, 48, 997, false, false),
    matmulInt8Case(5, 64, 3072, true, true),
    matmulInt8Case(37, 48, 144, true, false),
    matmulInt8Case(70, 3072, 64, true, false), // past the rows kernel: panels or one GEMM
    matmulInt8Case(80, 40, 96, false, false),
    matmulInt8Case(66, 33, 50, true, true),
    matmulInt8Case(9, 30, 31, true, true),
  ];
}

// decoding steps compared: the prefill and several single-token steps (a software GPU takes
// seconds a step at gpt2-tiny's vocabulary; the fp32 greedy case already runs all 24)
const DECODE_STEPS = 6;

interface Int8Reference {
  logits: Float32Array;
  loss: number;
  /** greedy decoding from the fixture's prompt: each step's logits and the token chosen */
  steps?: { logits: Float32Array; token: number }[];
}

// The reference backend's int8 run of a fixture, made once per process.
const references = new Map<string, Int8Reference>();
async function int8Reference(f: Fixture): Promise<Int8Reference> {
  const have = references.get(f.name);
  if (have) return have;
  const m = new GPT2(createReferenceBackend(), f.config, f.params, { weights: 'int8' });
  const [B, T] = f.ref.tensors.get('inputs')!.shape;
  const loss = (await m.forward(f.ref.int32('inputs'), B, T, f.ref.int32('targets')))!;
  const r: Int8Reference = { logits: await m.logits(), loss };
  if (f.ref.tensors.has('greedy.prompt')) r.steps = await greedy(m, f.ref.int32('greedy.prompt'), DECODE_STEPS);
  references.set(f.name, r);
  return r;
}

function int8ModelCase(f: Fixture): KernelCase {
  const tol = TOLERANCES.fp32;
  return {
    name: `${f.name}: int8 weights, logits and loss${f.ref.tensors.has('greedy.prompt') ? ' and cached decoding' : ''} as the reference backend's`,
    async run(be: Backend) {
      const want = await int8Reference(f);
      const m = new GPT2(be, f.config, f.params, { weights: 'int8' });
      const [B, T] = f.ref.tensors.get('inputs')!.shape;
      const loss = await m.forward(f.ref.int32('inputs'), B, T, f.ref.int32('targets'));
      assertClose(`${f.name} int8 logits`, await m.logits(), want.logits, tol.logits);
      assertClose(`${f.name} int8 loss`, [loss!], [want.loss], tol.loss);
      if (!want.steps) return;
      // decoding fed the reference's tokens, so a near-tie cannot send the two down different paths
      const got = await greedy(m, f.ref.int32('greedy.prompt'), want.steps.length, want.steps.map((s) => s.token));
      got.forEach((s, i) => assertClose(`${f.name} int8 decoding logits at step ${i}`, s.logits, want.steps![i].logits, tol.logits));
    },
  };
}

export function int8ModelCases(): KernelCase[] {
  return fixtureNames().map((n) => int8ModelCase(loadFixture(n)));
}
