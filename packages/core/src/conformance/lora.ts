// Conformance of LoRA fine-tuning (model/lora.ts) against scripts/lora_reference.py's float64
// PyTorch run on gpt2-odd (fixtures/gpt2-odd/lora.safetensors): r=4, alpha=8 on every target
// module. Logits and loss, the adapters' gradients (with and without dropout), cached decoding,
// and 10 AdamW steps on the adapters with the base weights proven unmoved, at the tolerances of
// the precision the backend runs (fp32's, or a reduced mode's: precision.ts).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../backend.js';
import { GPT2 } from '../model/gpt2.js';
import { LORA_TARGETS, type LoraConfig } from '../model/lora.js';
import { adapterConfigJson, adapterToTensors, parseAdapter, type Adapter } from '../io/peft.js';
import { parseSafetensors, serializeSafetensors, type SafeTensors } from '../io/safetensors.js';
import { LORA_TOLERANCES, TOLERANCES, type Precision } from '../precision.js';
import { assertClose } from './compare.js';
import { fixturesDir, loadFixture, type Fixture } from './fixtures.js';
import type { KernelCase } from './kernels.js';

export interface LoraFixture {
  f: Fixture;
  ref: SafeTensors;
  meta: { dropout: number; seed: number };
}

export function loadLoraFixture(): LoraFixture | undefined {
  const path = join(fixturesDir(), 'gpt2-odd', 'lora.safetensors');
  if (!existsSync(path)) return undefined;
  const b = readFileSync(path);
  const ref = parseSafetensors(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), 'gpt2-odd/lora.safetensors');
  return { f: loadFixture('gpt2-odd'), ref, meta: { dropout: Number(ref.metadata.dropout), seed: Number(ref.metadata.dropout_seed) } };
}

/** The fixture's adapters under `prefix` (lora. or adamw.), read back through the peft reader. */
export function fixtureAdapter(x: LoraFixture, prefix: string, dropout = 0): Adapter {
  const tensors = [...x.ref.tensors.keys()].filter((n) => n.startsWith(prefix) && n.includes('.lora_')).map((n) => {
    const name = n.slice(prefix.length);
    return { name, shape: x.ref.tensors.get(n)!.shape, data: x.ref.float32(n) };
  });
  const lc: LoraConfig = { r: Number(x.ref.metadata.r), alpha: Number(x.ref.metadata.lora_alpha), dropout, targets: [...LORA_TARGETS] };
  return parseAdapter(x.f.config, adapterConfigJson(lc, 'gpt2-odd'), parseSafetensors(serializeSafetensors(tensors)), 'the LoRA fixture');
}

/** Our adapter-layout buffer (gradients, parameters) compared tensor by tensor under peft's names. */
function compareAdapter(what: string, x: LoraFixture, a: Adapter, flat: Float32Array, prefix: string, tol: readonly number[]): void {
  for (const t of adapterToTensors(x.f.config, a.config, flat)) assertClose(`${what} ${t.name}`, t.data, x.ref.float32(prefix + t.name), tol[0], tol[1]);
}

function batch(x: LoraFixture) {
  const r = x.f.ref, [B, T] = r.tensors.get('inputs')!.shape;
  return { inputs: r.int32('inputs'), targets: r.int32('targets'), B, T };
}

function model(be: Backend, x: LoraFixture, a: Adapter, seed = 0): GPT2 {
  return new GPT2(be, x.f.config, x.f.params, { lora: { config: a.config, params: a.params, seed } });
}

export function loraModelCases(p: Precision = 'fp32'): KernelCase[] {
  const x = loadLoraFixture();
  if (!x) return [];
  const own = LORA_TOLERANCES[p], TOL = { ...TOLERANCES[p], grad: own?.grad ?? TOLERANCES[p].grad };
  const NORM = own ? [own.norm, 0] : TOL.grad, at = p === 'fp32' ? '' : ` (${p})`;
  return [
    {
      name: 'gpt2-odd + LoRA: logits, loss and adapter gradients' + at,
      async run(be) {
        const a = fixtureAdapter(x, 'lora.'), m = model(be, x, a), { inputs, targets, B, T } = batch(x);
        m.zeroGrad();
        const loss = await m.forwardBackward(inputs, B, T, targets);
        assertClose('LoRA loss', [loss], x.ref.float32('loss'), TOL.loss);
        compareAdapter('LoRA grad', x, a, await m.readGrads(), 'grads.', TOL.grad);
        const eval_ = model(be, x, a);
        await eval_.forward(inputs, B, T, targets);
        assertClose('LoRA logits', await eval_.logits(), x.ref.float32('logits'), TOL.logits);
        m.dispose();
        eval_.dispose();
      },
    },
    {
      name: `gpt2-odd + LoRA: a training step with dropout ${x.meta.dropout} (gpt2.ts's masks, drawn in PyTorch)${at}`,
      async run(be) {
        const a = fixtureAdapter(x, 'lora.', x.meta.dropout), m = model(be, x, a, x.meta.seed), { inputs, targets, B, T } = batch(x);
        m.zeroGrad();
        const loss = await m.forwardBackward(inputs, B, T, targets);
        assertClose('LoRA loss with dropout', [loss], x.ref.float32('dropout.loss'), TOL.loss);
        compareAdapter('LoRA grad with dropout', x, a, await m.readGrads(), 'dropout.grads.', TOL.grad);
        // evaluation draws no masks: the logits are the dropout-free ones
        await m.forward(inputs, B, T, targets);
        assertClose('LoRA logits after a dropout step', await m.logits(), x.ref.float32('logits'), TOL.logits);
        m.dispose();
      },
    },
    {
      name: 'gpt2-odd + LoRA: cached decoding (prefill, then one token a step)' + at,
      async run(be) {
        const a = fixtureAdapter(x, 'lora.'), m = model(be, x, a), { inputs, T } = batch(x), V = x.f.config.vocabSize;
        const want = x.ref.float32('logits'), cache = m.createCache(1), P = T - 6;
        let logits = await cache.feed(inputs.subarray(0, P), P);
        for (let t = P - 1; t < T; t++) {
          assertClose(`LoRA decoding logits at position ${t}`, logits, want.subarray(t * V, (t + 1) * V), TOL.logits);
          if (t + 1 < T) logits = await cache.feed(inputs.subarray(t + 1, t + 2), 1);
        }
        cache.dispose();
        m.dispose();
      },
    },
    {
      name: 'gpt2-odd + LoRA: 10 clipped AdamW steps on the adapters, base weights unmoved' + at,
      async run(be) {
        const a = fixtureAdapter(x, 'lora.'), m = model(be, x, a), { inputs, targets, B, T } = batch(x);
        const wantLoss = x.ref.float32('adamw.losses'), wantNorm = x.ref.float32('adamw.grad_norms');
        for (let i = 0; i < wantLoss.length; i++) {
          const loss = await m.forward(inputs, B, T, targets);
          assertClose(`LoRA AdamW loss before step ${i}`, [loss!], [wantLoss[i]], TOL.adamLoss);
          m.zeroGrad();
          m.backward();
          const norm = await m.update({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.1, clip: 1.0 });
          assertClose(`LoRA grad norm at step ${i}`, [norm], [wantNorm[i]], NORM[0], NORM[1]);
        }
        compareAdapter('LoRA adapters after AdamW', x, a, await m.readAdapter(), 'adamw.', TOL.param);
        assertClose('base weights after LoRA training', await m.readParams(), x.f.params, 0);
        m.dispose();
      },
    },
  ];
}
