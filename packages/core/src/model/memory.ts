// What a model needs in memory, from the same shapes GPT2 allocates (gpt2.ts): for the message a
// failed allocation ends in, and for benchmarks that print peak memory next to the arithmetic.
import type { GPT2Config } from './config.js';
import { ALIGN, paramLayout } from './params.js';
import { INT8_MATRICES, int8Layout, int8RowBytes, type WeightFormat } from './int8.js';
import { loraLayout, TARGET_SPECS, type LoraConfig } from './lora.js';
import { COPIED } from './bf16-copies.js';

export interface MemoryPlan {
  /** Bytes of each part; `activations` for training at (B, T), or the KV cache and scratch for generation. */
  params: number;
  grads: number;
  moments: number;
  activations: number;
  total: number;
}

const GiB = 2 ** 30;

/** Bytes of the bf16 copies of the weight matrices a backend with bf16Copies reads (bf16-copies.ts). */
export function copyBytes(cfg: GPT2Config): number {
  const { tensors } = paramLayout(cfg);
  return COPIED.reduce((n, name) => n + tensors[name].size, 0) * 2;
}

export interface TrainingMemoryOptions {
  lora?: LoraConfig;
  /** ZeRO-1 across this many ranks: one rank's share. */
  zeroRanks?: number;
  /** The backend's bf16Copies: the matrices' bf16 copies, and those of the activations the GEMMs read. */
  bf16Copies?: boolean;
}

/**
 * Training at (B, T): parameters, gradients, AdamW's two moments and the activations GPT2 keeps.
 * Under LoRA the gradients and moments are the adapters' alone, which also keep each adapted
 * layer's u (N,r) and a scratch (lora-adapters.ts). Under ZeRO-1 across `zeroRanks` ranks, one rank's
 * share. Under bf16 copies, `params` holds the matrices' copies too and `activations` theirs.
 */
export function trainingMemory(cfg: GPT2Config, B: number, T: number, o: TrainingMemoryOptions = {}): MemoryPlan {
  const { lora, zeroRanks } = o;
  const { total } = paramLayout(cfg);
  const { nEmbd: C, nLayer: L, nHead: NH, nInner: F, vocabSize: V } = cfg;
  const N = B * T;
  // per layer: ln1, qkv (3), atty, res2, ln2, res3 (N,C each); fch, fchGelu (N,F); 4 means/rstds (N); lse (N,NH)
  const perLayer = 8 * N * C + 2 * N * F + 4 * N + N * NH;
  // tokens, targets, encoded, proj, lnf (+2), logits, losses, hits, and the backward scratch (dres, dln, datty, dqkv (3), dfch, dfchGelu)
  const rest = 2 * N + 3 * N * C + 2 * N + N * V + 2 * N + 6 * N * C + 2 * N * F;
  // bf16 copies: ln1, atty, ln2 (N,C) and fchGelu (N,F) per layer, and lnf; two bytes each
  const copied = o.bf16Copies ? copyBytes(cfg) : 0, copiedActs = o.bf16Copies ? (L * (3 * N * C + N * F) + N * C) * 2 : 0;
  const params = total * 4, activations = (L * perLayer + rest) * 4 + copiedActs;
  if (zeroRanks) {
    // ZeRO-1 (train/zero.ts): this rank's part of the moments, and of the summed gradients beside the whole ones
    const part = Math.ceil(params / zeroRanks);
    return { params: params + copied, grads: params + part, moments: 2 * part, activations, total: 2 * params + copied + 3 * part + activations };
  }
  if (!lora) return { params: params + copied, grads: params, moments: 2 * params, activations, total: 4 * params + copied + activations };
  const adapters = loraLayout(cfg, lora).total * 4;
  const IN = Math.max(...lora.targets.map((t) => TARGET_SPECS[t].IN(cfg))), OUT = Math.max(...lora.targets.map((t) => TARGET_SPECS[t].OUT(cfg)));
  // u (N,r) kept per adapted layer at aligned offsets, scratch xs, dxs (N,IN), z (N,OUT), du, u (N,r), the frozen layernorms' sink (2C)
  const saved = lora.targets.length * L * Math.ceil((N * lora.r) / ALIGN) * ALIGN;
  const loraActs = (saved + N * (2 * IN + OUT + 2 * lora.r) + 2 * C) * 4;
  const all = activations + loraActs;
  return { params: params + copied + adapters, grads: adapters, moments: 2 * adapters, activations: all, total: params + copied + 4 * adapters + all };
}

/** Bytes of a model's weights on the device: fp32, or under int8 the int8 matrices and their scales beside the fp32 rest (gpt2.ts). */
export function weightBytes(cfg: GPT2Config, weights: WeightFormat = 'fp32'): number {
  const { tensors, total } = paramLayout(cfg);
  if (weights === 'fp32') return total * 4;
  const { words, scales } = int8Layout(cfg);
  const matrices = INT8_MATRICES.reduce((n, name) => n + tensors[name].size, 0);
  return (total - matrices) * 4 + words * 4 + scales * 4;
}

/**
 * Generation for B sequences of up to maxT tokens: parameters (with fp32 weights on a backend with
 * bf16Copies, their copies too), the KV cache and one step's scratch.
 */
export function generationMemory(cfg: GPT2Config, B: number, maxT: number, weights: WeightFormat = 'fp32', bf16Copies = false): MemoryPlan {
  const { nEmbd: C, nLayer: L, nInner: F, vocabSize: V } = cfg;
  const params = weightBytes(cfg, weights) + (bf16Copies && weights === 'fp32' ? copyBytes(cfg) : 0), activations = (2 * L * B * maxT * C + B * maxT * (7 * C + 2 * F + 3) + B * (V + 1)) * 4; // + B: the rows' positions
  return { params, grads: 0, moments: 0, activations, total: params + activations };
}

/**
 * Host bytes that reading or writing a checkpoint holds beyond the model's own buffers, at its
 * peak, assuming F32 files (the hub's GPT-2s): loading reads a tensor at a time, the next one
 * already being read, into two scratch buffers of the largest tensor's size, and transposes Conv1D
 * weights into two more of the largest matrix's (io/checkpoint.ts paramReader); under int8 a
 * matrix's int8 rows and scales besides. Never the file, nor a flat copy of the model. Saving holds
 * less: a tensor read back from the device and its transpose.
 */
export function checkpointIoMemory(cfg: GPT2Config, weights: WeightFormat = 'fp32'): number {
  const { tensors } = paramLayout(cfg);
  let largest = 0, conv = 0, int8 = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const [OUT, IN] = t.spec.shape(cfg);
    largest = Math.max(largest, t.perLayer * 4);
    if (t.spec.conv1d) conv = Math.max(conv, t.perLayer * 4);
    if (weights === 'int8' && ((INT8_MATRICES as readonly string[]).includes(name) || name === 'wte')) int8 = Math.max(int8, OUT * (int8RowBytes(IN) + 4));
  }
  return 2 * largest + 2 * conv + int8;
}

/** "6.1 GiB in all (parameters 1.4 GiB, gradients 1.4 GiB, AdamW moments 2.8 GiB, activations 0.5 GiB)" */
export function describeMemory(p: MemoryPlan): string {
  const g = (b: number) => `${(b / GiB).toFixed(1)} GiB`;
  const parts = [`parameters ${g(p.params)}`, ...(p.grads ? [`gradients ${g(p.grads)}`, `AdamW moments ${g(p.moments)}`] : []), `activations ${g(p.activations)}`];
  return `${g(p.total)} in all (${parts.join(', ')})`;
}
