// The bf16 copies a backend with bf16Copies reads its products from (model/bf16-copies.ts) must never
// go stale: fresh after a model is loaded tensor by tensor and after every AdamW step, so a model
// rebuilt from a checkpoint continues training bit for bit as the original; a LoRA adapter merged
// into the weights is what the merged model computes; int8 weights keep no copies and compute as on
// fp32. Registered for each backend with bf16Copies (reference emulation, cpu), besides the suite.
import type { Backend } from '../backend.js';
import { GPT2 } from '../model/gpt2.js';
import { COPIED } from '../model/bf16-copies.js';
import { initLora, mergeLora, LORA_TARGETS, type LoraConfig } from '../model/lora.js';
import { paramLayout, slices } from '../model/params.js';
import { roundOperand, TOLERANCES } from '../precision.js';
import { createReferenceBackend } from '../backends/reference/index.js';
import { assertClose } from './compare.js';
import { loadFixture, type Fixture } from './fixtures.js';
import { int8ModelCases } from './int8.js';
import type { KernelCase } from './kernels.js';

const OPT = { lr: 1e-2, weightDecay: 0.1, clip: 1 };

/** Every matrix's copy holds its fp32 weights rounded to bf16, exactly. */
async function expectFresh(what: string, be: Backend, m: GPT2, f: Fixture): Promise<void> {
  const params = await m.readParams(), { tensors } = paramLayout(f.config);
  for (const name of COPIED) {
    const t = tensors[name];
    for (const [l, o] of slices(f.config, t).entries()) {
      const copy = m.copyPiece(name, l, 0, t.perLayer);
      if (!copy) throw new Error(`${what}: the model keeps no bf16 copy of ${name} on a backend with bf16Copies`);
      const want = params.subarray(o, o + t.perLayer).map((x) => roundOperand('bf16', x));
      assertClose(`${what}: the bf16 copy of ${name}[${l}]`, await be.read(copy), want, 0);
    }
  }
}

function batch(f: Fixture) {
  const [B, T] = f.ref.tensors.get('inputs')!.shape;
  return { inputs: f.ref.int32('inputs'), targets: f.ref.int32('targets'), B, T };
}

async function step(m: GPT2, f: Fixture): Promise<number> {
  const { inputs, targets, B, T } = batch(f);
  m.zeroGrad();
  const loss = await m.forwardBackward(inputs, B, T, targets);
  await m.update(OPT);
  return loss;
}

export function bf16CopyCases(): KernelCase[] {
  const f = loadFixture('gpt2-odd');
  return [
    {
      name: 'bf16 copies: fresh after a streamed load and after each AdamW step; a model rebuilt from a checkpoint continues bit for bit',
      async run(be) {
        if (!be.bf16Copies) throw new Error(`the ${be.name} backend does not take bf16 copies`);
        const { tensors } = paramLayout(f.config);
        const stream = async function* (params: Float32Array) {
          for (const [name, t] of Object.entries(tensors)) for (const [layer, o] of slices(f.config, t).entries()) yield { name: name as keyof typeof tensors, layer, data: params.slice(o, o + t.perLayer) };
        };
        const a = await GPT2.load(be, f.config, stream(f.params));
        await expectFresh('loaded', be, a, f);
        for (let i = 0; i < 3; i++) await step(a, f);
        await expectFresh('after 3 AdamW steps', be, a, f);
        // a checkpoint: the weights a tensor at a time, and the moments
        const b = await GPT2.load(be, f.config, stream(await a.readParams()));
        b.loadOptimizerState((await a.readOptimizerState())!);
        const la: number[] = [], lb: number[] = [];
        for (let i = 0; i < 3; i++) {
          la.push(await step(a, f));
          lb.push(await step(b, f));
        }
        assertClose('the resumed model\'s losses', lb, la, 0);
        assertClose('the resumed model\'s weights', await b.readParams(), await a.readParams(), 0);
        a.dispose();
        b.dispose();
      },
    },
    {
      name: 'bf16 copies: a LoRA adapter merged into the weights computes what the adapter did',
      async run(be) {
        const lc: LoraConfig = { r: 4, alpha: 8, dropout: 0, targets: [...LORA_TARGETS] };
        const lora = new GPT2(be, f.config, f.params, { lora: { config: lc, params: initLora(f.config, lc, 7) } });
        for (let i = 0; i < 3; i++) await step(lora, f);
        const merged = mergeLora(f.config, f.params, lc, await lora.readAdapter());
        const { inputs, targets, B, T } = batch(f);
        const logits = async (m: GPT2) => (await m.forward(inputs, B, T, targets), m.logits());
        const plain = new GPT2(be, f.config, f.params), fp32 = new GPT2(createReferenceBackend(), f.config, merged);
        const [withAdapter, base] = [await logits(lora), await logits(plain)];
        const m = new GPT2(be, f.config, merged);
        await expectFresh('merged', be, m, f);
        const got = await logits(m), tol = TOLERANCES.bf16.logits;
        // the adapter moved the logits by far more than the tolerance: copies of the unmerged weights would fail
        let moved = 0;
        for (let i = 0; i < base.length; i++) moved = Math.max(moved, Math.abs(withAdapter[i] - base[i]));
        if (moved < 10 * tol) throw new Error(`the adapter moved the logits by ${moved} only, too little to tell merged weights from stale ones`);
        assertClose('merged logits against the adapter\'s', got, withAdapter, tol);
        assertClose('merged logits against fp32\'s', got, await logits(fp32), tol);
        for (const x of [lora, plain, m, fp32]) x.dispose();
      },
    },
    {
      name: 'bf16 copies: none for int8 weights',
      async run(be) {
        const m = new GPT2(be, f.config, f.params, { weights: 'int8' });
        for (const name of COPIED) if (m.copyPiece(name, 0, 0, 1)) throw new Error(`an int8 model keeps a bf16 copy of ${name}`);
        m.dispose();
      },
    },
    // and they compute as the reference backend's int8 model (fp32 arithmetic), copies or not
    ...int8ModelCases(),
  ];
}
