// LoRA adapters in HF peft's format: adapter_config.json and adapter_model.safetensors with
// tensors named base_model.model.transformer.h.N.<module>.lora_A.weight (r, IN) and .lora_B.weight
// (OUT, r), nn.Linear layouts whatever the base layer's; fan_in_fan_out is true because GPT-2's
// Conv1D stores its weight [IN, OUT] (peft sets it so, with a warning, when it is not).
// PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(BASE), DIR) loads what we write.
import { GPT2Error } from '../errors.js';
import type { GPT2Config } from '../model/config.js';
import { LORA_TARGETS, TARGET_SPECS, checkLoraConfig, loraLayout, type LoraConfig, type LoraTarget } from '../model/lora.js';
import { serializeSafetensors, type SafeTensors, type TensorToWrite } from './safetensors.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

const PREFIX = 'base_model.model.transformer.h.';

/** The tensors of adapter_model.safetensors, from the flat adapter buffer (lora.ts layout). */
export function adapterToTensors(cfg: GPT2Config, lc: LoraConfig, flat: Float32Array): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const s of loraLayout(cfg, lc).slots) {
    const name = `${PREFIX}${s.layer}.${TARGET_SPECS[s.target].module}`;
    out.push({ name: `${name}.lora_A.weight`, shape: [lc.r, s.IN], data: flat.subarray(s.a, s.a + lc.r * s.IN) });
    out.push({ name: `${name}.lora_B.weight`, shape: [s.OUT, lc.r], data: flat.subarray(s.b, s.b + s.OUT * lc.r) });
  }
  return out;
}

export function adapterToSafetensors(cfg: GPT2Config, lc: LoraConfig, flat: Float32Array): Uint8Array {
  return serializeSafetensors(adapterToTensors(cfg, lc, flat));
}

/** adapter_config.json as peft writes it for a GPT-2 causal LM. */
export function adapterConfigJson(lc: LoraConfig, baseModel: string | null): string {
  const c = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: baseModel, revision: null, inference_mode: true,
    r: lc.r, lora_alpha: lc.alpha, lora_dropout: lc.dropout, target_modules: lc.targets, fan_in_fan_out: true, bias: 'none',
    use_rslora: lc.rslora ?? false, use_dora: false, modules_to_save: null, init_lora_weights: true,
    layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {},
  };
  return JSON.stringify(c, null, 2) + '\n';
}

export interface Adapter {
  config: LoraConfig;
  /** The flat adapter buffer (lora.ts layout). */
  params: Float32Array;
  /** base_model_name_or_path: the model it was trained on, as recorded. */
  baseModel: string | null;
}

const emptyish = (v: unknown) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);

/**
 * Reads a peft LoRA adapter for `cfg`: which modules it adapts comes from the tensor names (peft's
 * target_modules may say just "c_proj" for both projections), their shapes must be the model's,
 * and what we cannot apply exactly (per-layer ranks, DoRA, trained biases, a subset of layers,
 * extra modules) is refused in one sentence.
 */
export function parseAdapter(cfg: GPT2Config, configText: string, st: SafeTensors, source: string): Adapter {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(configText) as Record<string, unknown>;
  } catch {
    throw new GPT2Error(`${source}/${ADAPTER_CONFIG} is not valid JSON; re-save the adapter.`);
  }
  if (j.peft_type !== 'LORA') throw new GPT2Error(`${source} holds a ${String(j.peft_type ?? 'non-peft')} adapter; only LoRA adapters (peft_type LORA) can be applied.`);
  const unsupported: [string, boolean][] = [
    ['use_dora', j.use_dora === true], ['rank_pattern', !emptyish(j.rank_pattern)], ['alpha_pattern', !emptyish(j.alpha_pattern)],
    ['layers_to_transform', !emptyish(j.layers_to_transform)], ['modules_to_save', !emptyish(j.modules_to_save)], ['bias', (j.bias ?? 'none') !== 'none'],
  ];
  for (const [what, bad] of unsupported) if (bad) throw new GPT2Error(`${source} uses peft's ${what} (${JSON.stringify(j[what])}), which gpt2.ts cannot apply; merge it in Python instead.`);
  const r = Number(j.r), alpha = Number(j.lora_alpha ?? 8), dropout = Number(j.lora_dropout ?? 0);

  // which modules, from the tensor names
  const found = new Map<LoraTarget, Set<number>>();
  const moduleToTarget = new Map(LORA_TARGETS.map((t) => [TARGET_SPECS[t].module, t]));
  const pattern = /^base_model\.model\.transformer\.h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.lora_([AB])\.weight$/;
  for (const name of st.tensors.keys()) {
    const m = pattern.exec(name);
    if (!m) throw new GPT2Error(`${source}/${ADAPTER_WEIGHTS} has a tensor '${name}' that is not a LoRA weight of a GPT-2 layer; it is not a GPT-2 LoRA adapter.`);
    const layer = Number(m[1]), target = moduleToTarget.get(m[2])!;
    if (layer >= cfg.nLayer) throw new GPT2Error(`${source} adapts layer ${layer}, but the model has ${cfg.nLayer} layers; it was trained on another model.`);
    if (!found.has(target)) found.set(target, new Set());
    found.get(target)!.add(layer);
  }
  const targets = LORA_TARGETS.filter((t) => found.has(t));
  if (targets.length === 0) throw new GPT2Error(`${source}/${ADAPTER_WEIGHTS} holds no LoRA weights.`);
  for (const t of targets) {
    if (found.get(t)!.size !== cfg.nLayer) throw new GPT2Error(`${source} adapts ${t} in ${found.get(t)!.size} of the model's ${cfg.nLayer} layers; it was trained on another model.`);
  }
  const config: LoraConfig = { r, alpha, dropout: dropout >= 0 && dropout < 1 ? dropout : 0, targets, rslora: j.use_rslora === true };
  if (!(Number.isInteger(r) && r >= 1)) throw new GPT2Error(`${source}/${ADAPTER_CONFIG} gives a rank r of ${String(j.r)}; it must be a whole number of at least 1.`);
  const { slots, total } = loraLayout(cfg, config);
  const params = new Float32Array(total);
  for (const s of slots) {
    const name = `${PREFIX}${s.layer}.${TARGET_SPECS[s.target].module}`;
    for (const [part, shape, offset] of [['A', [r, s.IN], s.a], ['B', [s.OUT, r], s.b]] as const) {
      const tname = `${name}.lora_${part}.weight`, e = st.tensors.get(tname);
      if (!e) throw new GPT2Error(`${source}/${ADAPTER_WEIGHTS} has no '${tname}'; the adapter is incomplete.`);
      if (e.shape.length !== 2 || e.shape[0] !== shape[0] || e.shape[1] !== shape[1]) {
        throw new GPT2Error(`${source}: '${tname}' has shape [${e.shape}] but this model with r=${r} needs [${shape}]; the adapter belongs to another base model (or its r is wrong).`);
      }
      params.set(st.float32(tname), offset);
    }
  }
  checkLoraConfig(cfg, config);
  return { config, params, baseModel: typeof j.base_model_name_or_path === 'string' ? j.base_model_name_or_path : null };
}
