// LoRA (Hu et al. 2021), as HF peft applies it to GPT-2: each adapted linear layer keeps its
// frozen weight W (OUT,IN) and gains A (r,IN) and B (OUT,r), so that
//   y = x W^T + b + (alpha/r) * dropout(x) A^T B^T.
// A starts kaiming-uniform (bound 1/sqrt(IN), as nn.Linear), B at zero, so training starts from
// the base model. Only A and B have gradients and AdamW moments. All adapters live in one flat
// buffer, target by target, layer by layer, A then B, each slice aligned as params.ts aligns.
import { GPT2Error } from '../errors.js';
import { Rng } from '../sample/rng.js';
import type { GPT2Config } from './config.js';
import { ALIGN, paramLayout, type ParamName } from './params.js';

/** The modules LoRA can adapt, named as in `--lora-targets` (peft's target_modules suffixes). */
export const LORA_TARGETS = ['c_attn', 'attn.c_proj', 'c_fc', 'mlp.c_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

interface TargetSpec {
  module: string; // the HF module under transformer.h.N
  param: ParamName & ('qkvw' | 'attprojw' | 'fcw' | 'fcprojw');
  IN: (c: GPT2Config) => number;
  OUT: (c: GPT2Config) => number;
}

export const TARGET_SPECS: Record<LoraTarget, TargetSpec> = {
  c_attn: { module: 'attn.c_attn', param: 'qkvw', IN: (c) => c.nEmbd, OUT: (c) => 3 * c.nEmbd },
  'attn.c_proj': { module: 'attn.c_proj', param: 'attprojw', IN: (c) => c.nEmbd, OUT: (c) => c.nEmbd },
  c_fc: { module: 'mlp.c_fc', param: 'fcw', IN: (c) => c.nEmbd, OUT: (c) => c.nInner },
  'mlp.c_proj': { module: 'mlp.c_proj', param: 'fcprojw', IN: (c) => c.nInner, OUT: (c) => c.nEmbd },
};

export interface LoraConfig {
  r: number;
  alpha: number;
  /** Dropout on each adapter's input while training (peft's lora_dropout); 0 <= dropout < 1. */
  dropout: number;
  targets: LoraTarget[];
  /** rsLoRA's scaling alpha/sqrt(r) instead of alpha/r (peft's use_rslora; read from adapters, never the default). */
  rslora?: boolean;
}

/** What the adapters' product is multiplied by: alpha/r (alpha/sqrt(r) under rsLoRA). */
export const loraScale = (c: LoraConfig): number => (c.rslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r);

/** One adapted layer: its place in the flat buffer and its sizes. */
export interface LoraSlot {
  target: LoraTarget;
  index: number; // of the target in config.targets
  layer: number;
  IN: number;
  OUT: number;
  a: number; // offset of A (r,IN)
  b: number; // offset of B (OUT,r)
}

const up = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Every adapter's offsets, the buffer's length and the trainable parameter count. */
export function loraLayout(cfg: GPT2Config, lc: LoraConfig): { slots: LoraSlot[]; total: number; count: number } {
  const slots: LoraSlot[] = [];
  let offset = 0, count = 0;
  lc.targets.forEach((target, index) => {
    const s = TARGET_SPECS[target], IN = s.IN(cfg), OUT = s.OUT(cfg);
    for (let layer = 0; layer < cfg.nLayer; layer++) {
      const a = offset, b = a + up(lc.r * IN);
      offset = b + up(OUT * lc.r);
      count += lc.r * (IN + OUT);
      slots.push({ target, index, layer, IN, OUT, a, b });
    }
  });
  return { slots, total: offset, count };
}

/** Checks a LoRA configuration against a model; one sentence for what is wrong. */
export function checkLoraConfig(cfg: GPT2Config, lc: LoraConfig): void {
  if (lc.targets.length === 0) throw new GPT2Error(`LoRA needs at least one target module; choose from ${LORA_TARGETS.join(', ')}.`);
  for (const t of lc.targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) throw new GPT2Error(`'${t}' is not a GPT-2 module LoRA can adapt; choose --lora-targets from ${LORA_TARGETS.join(', ')}.`);
  }
  if (new Set(lc.targets).size !== lc.targets.length) throw new GPT2Error(`--lora-targets names a module twice (${lc.targets.join(',')}).`);
  if (!Number.isInteger(lc.r) || lc.r < 1) throw new GPT2Error(`The LoRA rank must be a whole number of at least 1 (got ${lc.r}).`);
  for (const t of lc.targets) {
    const s = TARGET_SPECS[t], most = Math.min(s.IN(cfg), s.OUT(cfg));
    if (lc.r > most) throw new GPT2Error(`A LoRA rank of ${lc.r} is larger than ${t}'s ${s.IN(cfg)}x${s.OUT(cfg)} weight allows (at most ${most}); lower --lora-r.`);
  }
  if (!(Number.isFinite(lc.alpha) && lc.alpha > 0)) throw new GPT2Error(`--lora-alpha must be a positive number (got ${lc.alpha}).`);
  if (!(lc.dropout >= 0 && lc.dropout < 1)) throw new GPT2Error(`--lora-dropout must be at least 0 and below 1 (got ${lc.dropout}).`);
}

/** peft's initialisation: A ~ U(-1/sqrt(IN), 1/sqrt(IN)) (kaiming_uniform_ with a = sqrt(5)), B = 0. */
export function initLora(cfg: GPT2Config, lc: LoraConfig, seed: number): Float32Array {
  const { slots, total } = loraLayout(cfg, lc);
  const flat = new Float32Array(total), rng = new Rng(seed);
  for (const s of slots) {
    const bound = 1 / Math.sqrt(s.IN);
    for (let i = 0; i < lc.r * s.IN; i++) flat[s.a + i] = (rng.random() * 2 - 1) * bound;
  }
  return flat;
}

/**
 * The seed of one adapter's dropout mask in one training forward: a function of the optimizer
 * step, the micro-batch within it and the adapter, so backward redraws the same mask and a resumed
 * run draws what the uninterrupted one would have.
 */
export function loraDropoutSeed(seed: number, step: number, micro: number, slot: number): number {
  let h = (seed ^ Math.imul(step + 1, 0x85ebca6b)) >>> 0;
  h = (h ^ Math.imul(micro + 1, 0xc2b2ae35)) >>> 0;
  h = (h ^ Math.imul(slot + 1, 0x27d4eb2f)) >>> 0;
  return h;
}

/**
 * The base weights with the adapters folded in (peft's merge_and_unload): W += scale * B @ A for
 * every adapted layer, in float64 per element. `params` is the flat PARAM_SPECS buffer; a new one
 * is returned.
 */
export function mergeLora(cfg: GPT2Config, params: Float32Array, lc: LoraConfig, adapter: Float32Array): Float32Array {
  const { tensors } = paramLayout(cfg);
  const out = params.slice();
  for (const name of new Set(lc.targets.map((t) => TARGET_SPECS[t].param))) {
    const t = tensors[name];
    for (let l = 0; l < cfg.nLayer; l++) mergeLoraTensor(cfg, lc, adapter, name, l, out.subarray(t.offset + l * t.stride, t.offset + l * t.stride + t.perLayer));
  }
  return out;
}

/** Folds the adapter into one layer's weight w (OUT, IN) in place, if that tensor is adapted; returns w. */
export function mergeLoraTensor(cfg: GPT2Config, lc: LoraConfig, adapter: Float32Array, name: ParamName, layer: number, w: Float32Array): Float32Array {
  const r = lc.r, scale = loraScale(lc);
  for (const s of loraLayout(cfg, lc).slots) {
    if (s.layer !== layer || TARGET_SPECS[s.target].param !== name) continue;
    for (let j = 0; j < s.OUT; j++) {
      for (let i = 0; i < s.IN; i++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += adapter[s.b + j * r + k] * adapter[s.a + k * s.IN + i];
        w[j * s.IN + i] += scale * sum;
      }
    }
  }
  return w;
}
