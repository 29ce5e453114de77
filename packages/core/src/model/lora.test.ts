import { describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { assertClose } from '../conformance/compare.js';
import { fixtureAdapter, loadLoraFixture } from '../conformance/lora.js';
import { paramsToTensors } from '../io/checkpoint.js';
import { adapterConfigJson, adapterToSafetensors, parseAdapter } from '../io/peft.js';
import { parseSafetensors, serializeSafetensors } from '../io/safetensors.js';
import { presetConfig } from './config.js';
import { GPT2 } from './gpt2.js';
import { checkLoraConfig, initLora, loraLayout, mergeLora, type LoraConfig } from './lora.js';

const x = loadLoraFixture()!;
const cfg = x.f.config;
const all: LoraConfig = { r: 4, alpha: 8, dropout: 0, targets: ['c_attn', 'attn.c_proj', 'c_fc', 'mlp.c_proj'] };

describe('LoRA', () => {
  it('initialises as peft: A uniform within 1/sqrt(IN), B zero, so the model starts as its base', async () => {
    const flat = initLora(cfg, all, 1);
    for (const s of loraLayout(cfg, all).slots) {
      const A = flat.subarray(s.a, s.a + 4 * s.IN), B = flat.subarray(s.b, s.b + s.OUT * 4);
      const bound = 1 / Math.sqrt(s.IN);
      expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...A.map(Math.abs))).toBeGreaterThan(0.8 * bound);
      expect(B.every((v) => v === 0)).toBe(true);
    }
    const be = createReferenceBackend(), inputs = x.f.ref.int32('inputs'), [B, T] = x.f.ref.tensors.get('inputs')!.shape;
    const m = new GPT2(be, cfg, x.f.params, { lora: { config: all, params: flat } });
    await m.forward(inputs, B, T);
    assertClose('LoRA at init vs the base logits', await m.logits(), x.f.ref.float32('logits'), 1e-4);
    expect(m.trainableParams).toBe(3 * 4 * (48 + 144 + 48 + 48 + 48 + 192 + 192 + 48));
  });

  it('merges as peft merge_and_unload: W + alpha/r B A, against the PyTorch reference', () => {
    const a = fixtureAdapter(x, 'adamw.');
    const merged = mergeLora(cfg, x.f.params, a.config, a.params);
    let compared = 0;
    for (const t of paramsToTensors(cfg, merged)) {
      const name = 'merged.' + t.name.replace(/^transformer\./, '');
      if (!x.ref.tensors.has(name)) continue;
      assertClose(name, t.data, x.ref.float32(name), 1e-6, 1e-5);
      compared++;
    }
    expect(compared).toBe(12);
  });

  it('writes peft files it reads back, with peft names, shapes and config', () => {
    const a = fixtureAdapter(x, 'lora.');
    const bytes = adapterToSafetensors(cfg, a.config, a.params);
    const st = parseSafetensors(bytes);
    expect(st.tensors.get('base_model.model.transformer.h.2.mlp.c_fc.lora_A.weight')!.shape).toEqual([4, 48]);
    expect(st.tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.shape).toEqual([144, 4]);
    const json = JSON.parse(adapterConfigJson(a.config, 'gpt2-odd'));
    expect(json).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, fan_in_fan_out: true, base_model_name_or_path: 'gpt2-odd' });
    const back = parseAdapter(cfg, adapterConfigJson(a.config, 'gpt2-odd'), st, 'dir');
    expect(back.params).toEqual(a.params);
    expect(back.config.targets).toEqual(all.targets);
  });

  it('reads target_modules from the tensors: peft\'s "c_proj" adapting both projections', () => {
    const lc: LoraConfig = { r: 2, alpha: 4, dropout: 0, targets: ['attn.c_proj', 'mlp.c_proj'] };
    const st = parseSafetensors(adapterToSafetensors(cfg, lc, initLora(cfg, lc, 3)));
    const json = adapterConfigJson(lc, null).replace('"attn.c_proj",\n    "mlp.c_proj"', '"c_proj"');
    expect(parseAdapter(cfg, json, st, 'dir').config.targets).toEqual(['attn.c_proj', 'mlp.c_proj']);
  });

  it('refuses in one sentence: rank 0 or too large, unknown targets, an adapter for another model', () => {
    expect(() => checkLoraConfig(cfg, { ...all, r: 0 })).toThrow(/rank must be a whole number of at least 1/);
    expect(() => checkLoraConfig(cfg, { ...all, r: 49 })).toThrow(/larger than c_attn's 48x144 weight allows \(at most 48\)/);
    expect(() => checkLoraConfig(cfg, { ...all, targets: ['wte' as never] })).toThrow(/'wte' is not a GPT-2 module LoRA can adapt/);
    expect(() => checkLoraConfig(cfg, { ...all, dropout: 1 })).toThrow(/--lora-dropout/);
    // trained on gpt2 (C=768): shapes do not fit gpt2-odd (C=48)
    const big = presetConfig('gpt2'), lc: LoraConfig = { r: 1, alpha: 1, dropout: 0, targets: ['c_attn'] };
    const other = parseSafetensors(adapterToSafetensors({ ...big, nLayer: 3 }, lc, new Float32Array(loraLayout({ ...big, nLayer: 3 }, lc).total)));
    expect(() => parseAdapter(cfg, adapterConfigJson(lc, 'gpt2'), other, 'dir')).toThrow(/has shape \[1,768\] but this model with r=1 needs \[1,48\]; the adapter belongs to another base model/);
    const deeper = parseSafetensors(adapterToSafetensors({ ...cfg, nLayer: 4 }, lc, new Float32Array(loraLayout({ ...cfg, nLayer: 4 }, lc).total)));
    expect(() => parseAdapter(cfg, adapterConfigJson(lc, null), deeper, 'dir')).toThrow(/adapts layer 3, but the model has 3 layers/);
    const stray = parseSafetensors(serializeSafetensors([{ name: 'base_model.model.lm_head.weight', shape: [1], data: new Float32Array(1) }]));
    expect(() => parseAdapter(cfg, adapterConfigJson(lc, null), stray, 'dir')).toThrow(/not a LoRA weight of a GPT-2 layer/);
    expect(() => parseAdapter(cfg, adapterConfigJson(lc, null).replace('"use_dora": false', '"use_dora": true'), other, 'dir')).toThrow(/use_dora/);
    expect(() => parseAdapter(cfg, '{"peft_type": "PREFIX_TUNING"}', other, 'dir')).toThrow(/only LoRA adapters/);
  });
});
