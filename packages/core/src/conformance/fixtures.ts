// Model-level conformance: the fixtures' float64 PyTorch outputs define correct (fixtures/README.md).
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Backend } from '../backend.js';
import { parseConfig, type GPT2Config } from '../model/config.js';
import { GPT2 } from '../model/gpt2.js';
import { paramsFromSafetensors, paramsToTensors } from '../io/checkpoint.js';
import { parseSafetensors, type SafeTensors } from '../io/safetensors.js';
import { assertClose } from './compare.js';
import { argmax } from '../sample/processors.js';
import { ROUNDED, TOLERANCES, roundOperand, type Precision, type Tolerances } from '../precision.js';

/** The repository's fixtures/ folder (GPT2_FIXTURES overrides). */
export function fixturesDir(): string {
  return process.env.GPT2_FIXTURES ?? fileURLToPath(new URL('../../../../fixtures/', import.meta.url));
}

export interface Fixture {
  name: string;
  dir: string;
  config: GPT2Config;
  params: Float32Array;
  ref: SafeTensors;
}

export function loadFixture(name: string): Fixture {
  const dir = join(fixturesDir(), name);
  const read = (f: string) => {
    const b = readFileSync(join(dir, f));
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  };
  const config = parseConfig(readFileSync(join(dir, 'config.json'), 'utf8'), `${name}/config.json`);
  const params = paramsFromSafetensors(config, parseSafetensors(read('model.safetensors'), `${name}/model.safetensors`));
  return { name, dir, config, params, ref: parseSafetensors(read('reference.safetensors'), `${name}/reference.safetensors`) };
}

export function fixtureNames(): string[] {
  const root = fixturesDir();
  if (!existsSync(root)) throw new Error(`fixtures folder ${root} not found`);
  return readdirSync(root).filter((d) => existsSync(join(root, d, 'reference.safetensors'))).sort();
}

export interface ModelCase {
  name: string;
  run(be: Backend): Promise<void>;
}

/**
 * A mode's tolerances for this fixture. A mode that rounds only weights is exact on a fixture whose
 * weights it leaves unchanged (gpt2-tiny-fp16 under f16), so there it is held to fp32's.
 */
function tolerances(f: Fixture, p: Precision): Tolerances {
  const unchanged = ROUNDED[p] === 'weights' && f.params.every((x) => roundOperand(p, x) === x);
  return TOLERANCES[unchanged ? 'fp32' : p];
}

function batch(f: Fixture) {
  const inputs = f.ref.int32('inputs'), targets = f.ref.int32('targets');
  const [B, T] = f.ref.tensors.get('inputs')!.shape;
  return { inputs, targets, B, T };
}

function logitsCase(f: Fixture, TOL: Tolerances): ModelCase {
  return {
    name: `${f.name}: logits, loss and accuracy`,
    async run(be) {
      const m = new GPT2(be, f.config, f.params);
      const { inputs, targets, B, T } = batch(f);
      const loss = await m.forward(inputs, B, T, targets);
      assertClose(`${f.name} logits`, await m.logits(), f.ref.float32('logits'), TOL.logits);
      assertClose(`${f.name} loss`, [loss!], f.ref.float32('loss'), TOL.loss);
      // accuracy, from the same pass: against the reference logits' argmax, with half the targets
      // set to it (random weights rarely predict the text); rows whose top two reference logits are
      // within the logits tolerance may go either way
      const ref = f.ref.float32('logits'), V = f.config.vocabSize, half = targets.slice();
      let want = 0, ambiguous = 0;
      for (let n = 0; n < B * T; n++) {
        const row = ref.subarray(n * V, (n + 1) * V);
        let top = 0;
        for (let v = 1; v < V; v++) if (row[v] > row[top]) top = v;
        if (n % 2 === 0) half[n] = top;
        if (half[n] === top) want++;
        if (row.some((x, v) => v !== top && row[top] - x <= 2 * TOL.logits)) ambiguous++;
      }
      await m.forward(inputs, B, T, half);
      const { correct, counted } = await m.accuracy();
      if (counted !== B * T || Math.abs(correct - want) > ambiguous) {
        throw new Error(`${f.name} accuracy: ${correct} of ${counted} targets are the argmax, expected ${want} of ${B * T} (${ambiguous} rows too close to call)`);
      }
    },
  };
}

/** Our gradients (flat, our layout) compared tensor by tensor in HF's names and layout. */
export function compareTensors(what: string, cfg: GPT2Config, flat: Float32Array, ref: SafeTensors, prefix: string, tol: readonly number[]) {
  for (const t of paramsToTensors(cfg, flat)) {
    const hfName = t.name.replace(/^transformer\./, '');
    assertClose(`${what} ${hfName}`, t.data, ref.float32(prefix + hfName), tol[0], tol[1]);
  }
}

function gradsCase(f: Fixture, TOL: Tolerances): ModelCase {
  return {
    name: `${f.name}: every parameter gradient (forwardBackward)`,
    async run(be) {
      // the training path: loss and gradient in one pass (forward() + backward() is the AdamW case's)
      const m = new GPT2(be, f.config, f.params);
      const { inputs, targets, B, T } = batch(f);
      m.zeroGrad();
      const loss = await m.forwardBackward(inputs, B, T, targets);
      assertClose(`${f.name} loss from forwardBackward`, [loss], f.ref.float32('loss'), TOL.loss);
      compareTensors(`${f.name} grad`, f.config, await m.readGrads(), f.ref, 'grads.', TOL.grad);
    },
  };
}

function adamwCase(f: Fixture, TOL: Tolerances): ModelCase {
  return {
    name: `${f.name}: 10 clipped AdamW steps`,
    async run(be) {
      const h = JSON.parse(f.ref.metadata.adamw) as { lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number };
      const m = new GPT2(be, f.config, f.params);
      const { inputs, targets, B, T } = batch(f);
      const wantLoss = f.ref.float32('adamw.losses'), wantNorm = f.ref.float32('adamw.grad_norms');
      for (let i = 0; i < h.steps; i++) {
        const loss = await m.forward(inputs, B, T, targets);
        assertClose(`${f.name} AdamW loss before step ${i}`, [loss!], [wantLoss[i]], TOL.adamLoss);
        m.zeroGrad();
        m.backward();
        const norm = await m.update({ lr: h.lr, beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay: h.weight_decay, clip: 1.0 });
        assertClose(`${f.name} grad norm at step ${i}`, [norm], [wantNorm[i]], TOL.grad[0], TOL.grad[1]);
      }
      compareTensors(`${f.name} params after AdamW`, f.config, await m.readParams(), f.ref, 'adamw.params.', TOL.param);
    },
  };
}

/** Greedy decoding through the KV cache: each step's logits and argmax; `force` feeds these tokens instead. */
export async function greedy(m: GPT2, prompt: Int32Array, steps: number, force?: number[]): Promise<{ logits: Float32Array; token: number }[]> {
  const cache = m.createCache(1);
  const out: { logits: Float32Array; token: number }[] = [];
  let logits = await cache.feed(prompt, prompt.length);
  for (let i = 0; i < steps; i++) {
    const token = force ? force[i] : argmax(logits);
    out.push({ logits, token });
    if (i + 1 < steps) logits = await cache.feed(Int32Array.of(token), 1);
  }
  cache.dispose();
  return out;
}

function greedyCase(f: Fixture): ModelCase {
  return {
    name: `${f.name}: greedy decoding through the KV cache`,
    async run(be) {
      const m = new GPT2(be, f.config, f.params);
      const want = f.ref.int32('greedy.tokens');
      const got = await greedy(m, f.ref.int32('greedy.prompt'), want.length);
      assertClose(`${f.name} greedy tokens`, got.map((s) => s.token), want, 0);
    },
  };
}

/** Every model-level case the fixtures support, at a precision mode's tolerances. */
export function modelCases(p: Precision = 'fp32'): ModelCase[] {
  const cases: ModelCase[] = [];
  for (const name of fixtureNames()) {
    const f = loadFixture(name);
    const tol = tolerances(f, p);
    cases.push(logitsCase(f, tol));
    if (f.ref.tensors.has(`grads.${'wte.weight'}`)) cases.push(gradsCase(f, tol));
    if (f.ref.tensors.has('adamw.losses')) cases.push(adamwCase(f, tol));
    if (f.ref.tensors.has('greedy.tokens') && tol.greedy) cases.push(greedyCase(f));
  }
  return cases;
}
