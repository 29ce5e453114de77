// The memory arithmetic matches what GPT2 really allocates: every byte counted through a backend
// that records its allocations, for a training step and for a generation cache.
import { describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { loadFixture } from '../conformance/fixtures.js';
import type { Backend } from '../backend.js';
import { GPT2 } from './gpt2.js';
import { generationMemory, trainingMemory } from './memory.js';
import { initLora, type LoraConfig } from './lora.js';
import { ALIGN, PARAM_SPECS } from './params.js';

// bytes as a backend holds them: bf16 copies take two (the reference backend keeps their values as floats)
function counting(precision: 'fp32' | 'bf16' = 'fp32'): { be: Backend; bytes: () => number } {
  const be = createReferenceBackend({ precision });
  let total = 0;
  const alloc = be.alloc.bind(be);
  be.alloc = (n, dtype) => ((total += n * (dtype === 'bf16' ? 2 : 4)), alloc(n, dtype));
  return { be, bytes: () => total };
}

// less gradNorm's slots: one float per gradient buffer, each on its own 64-float line
const NORM_BYTES = PARAM_SPECS.length * ALIGN * 4;

describe('memory plan', () => {
  const f = loadFixture('gpt2-odd');
  it('training: parameters, gradients, moments and activations are what GPT2 allocates', async () => {
    const { be, bytes } = counting();
    const model = new GPT2(be, f.config, f.params);
    const B = 2, T = 7, ids = new Int32Array(B * T).fill(1);
    model.zeroGrad();
    await model.forwardBackward(ids, B, T, ids);
    await model.update({ lr: 1e-3 });
    expect(bytes() - NORM_BYTES).toBe(trainingMemory(f.config, B, T).total);
  });
  it('LoRA training: the frozen weights (no gradients or moments for them), the adapters with theirs, activations and the adapters\' own', async () => {
    const { be, bytes } = counting();
    const lora: LoraConfig = { r: 3, alpha: 6, dropout: 0.1, targets: ['c_attn', 'mlp.c_proj'] };
    const model = new GPT2(be, f.config, f.params, { lora: { config: lora, params: initLora(f.config, lora, 1) } });
    const B = 2, T = 7, ids = new Int32Array(B * T).fill(1);
    model.zeroGrad();
    await model.forwardBackward(ids, B, T, ids);
    await model.update({ lr: 1e-3 });
    expect(bytes() - NORM_BYTES).toBe(trainingMemory(f.config, B, T, { lora }).total);
  });
  it('bf16 copies: training and generation count the matrices\' copies and the activations\' the products read', async () => {
    const t = counting('bf16');
    const model = new GPT2(t.be, f.config, f.params);
    const B = 2, T = 7, ids = new Int32Array(B * T).fill(1);
    const loaded = t.bytes();
    expect(loaded).toBe(generationMemory(f.config, 0, 0, 'fp32', true).total);
    model.zeroGrad();
    await model.forwardBackward(ids, B, T, ids);
    await model.update({ lr: 1e-3 });
    expect(t.bytes() - NORM_BYTES).toBe(trainingMemory(f.config, B, T, { bf16Copies: true }).total);
    expect(trainingMemory(f.config, B, T, { bf16Copies: true }).total).toBeGreaterThan(trainingMemory(f.config, B, T).total);
  });
  it('generation: parameters, the KV cache and one feed of the prompt', async () => {
    const { be, bytes } = counting();
    const model = new GPT2(be, f.config, f.params);
    const B = 3, maxT = 20, cache = model.createCache(B, maxT);
    await cache.feed(new Int32Array(B * maxT).fill(1), maxT);
    expect(bytes()).toBe(generationMemory(f.config, B, maxT).total);
  });
});
