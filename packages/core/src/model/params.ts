import type { GPT2Config } from './config.js';

/**
 * One table of GPT-2's parameters, in llm.c's order: each tensor of the L blocks is stored
 * stacked (L, ...), so the whole model is one flat buffer and each row below one contiguous view.
 * Linear weights are [OUT, IN]. `hf` names the per-layer HF tensor ({l} = layer); `conv1d` marks
 * HF Conv1D weights stored [IN, OUT]; `decay` marks 2+-dim tensors (AdamW weight decay).
 */
export interface ParamSpec {
  name: string;
  shape: (c: GPT2Config) => number[]; // per layer when `layered`
  layered: boolean;
  hf: string;
  conv1d: boolean;
  decay: boolean;
}

const C = (c: GPT2Config) => c.nEmbd;
const F = (c: GPT2Config) => c.nInner;

export const PARAM_SPECS: ParamSpec[] = [
  { name: 'wte', shape: (c) => [c.vocabSize, C(c)], layered: false, hf: 'wte.weight', conv1d: false, decay: true },
  { name: 'wpe', shape: (c) => [c.nPositions, C(c)], layered: false, hf: 'wpe.weight', conv1d: false, decay: true },
  { name: 'ln1w', shape: (c) => [C(c)], layered: true, hf: 'h.{l}.ln_1.weight', conv1d: false, decay: false },
  { name: 'ln1b', shape: (c) => [C(c)], layered: true, hf: 'h.{l}.ln_1.bias', conv1d: false, decay: false },
  { name: 'qkvw', shape: (c) => [3 * C(c), C(c)], layered: true, hf: 'h.{l}.attn.c_attn.weight', conv1d: true, decay: true },
  { name: 'qkvb', shape: (c) => [3 * C(c)], layered: true, hf: 'h.{l}.attn.c_attn.bias', conv1d: false, decay: false },
  { name: 'attprojw', shape: (c) => [C(c), C(c)], layered: true, hf: 'h.{l}.attn.c_proj.weight', conv1d: true, decay: true },
  { name: 'attprojb', shape: (c) => [C(c)], layered: true, hf: 'h.{l}.attn.c_proj.bias', conv1d: false, decay: false },
  { name: 'ln2w', shape: (c) => [C(c)], layered: true, hf: 'h.{l}.ln_2.weight', conv1d: false, decay: false },
  { name: 'ln2b', shape: (c) => [C(c)], layered: true, hf: 'h.{l}.ln_2.bias', conv1d: false, decay: false },
  { name: 'fcw', shape: (c) => [F(c), C(c)], layered: true, hf: 'h.{l}.mlp.c_fc.weight', conv1d: true, decay: true },
  { name: 'fcb', shape: (c) => [F(c)], layered: true, hf: 'h.{l}.mlp.c_fc.bias', conv1d: false, decay: false },
  { name: 'fcprojw', shape: (c) => [C(c), F(c)], layered: true, hf: 'h.{l}.mlp.c_proj.weight', conv1d: true, decay: true },
  { name: 'fcprojb', shape: (c) => [C(c)], layered: true, hf: 'h.{l}.mlp.c_proj.bias', conv1d: false, decay: false },
  { name: 'lnfw', shape: (c) => [C(c)], layered: false, hf: 'ln_f.weight', conv1d: false, decay: false },
  { name: 'lnfb', shape: (c) => [C(c)], layered: false, hf: 'ln_f.bias', conv1d: false, decay: false },
];

export type ParamName =
  | 'wte' | 'wpe' | 'ln1w' | 'ln1b' | 'qkvw' | 'qkvb' | 'attprojw' | 'attprojb'
  | 'ln2w' | 'ln2b' | 'fcw' | 'fcb' | 'fcprojw' | 'fcprojb' | 'lnfw' | 'lnfb';

export interface ParamLayout {
  spec: ParamSpec;
  offset: number; // into the flat buffer
  perLayer: number; // elements of one layer's tensor (or of the whole tensor when not layered)
  stride: number; // from one layer's slice to the next: perLayer rounded up to ALIGN
  size: number; // elements the tensor spans (stride * L when layered)
}

/**
 * Every tensor, and every layer's slice of it, starts at a multiple of 64 floats (256 bytes,
 * WebGPU's storage-offset alignment), so views never share an aligned range; the gaps stay zero.
 */
export const ALIGN = 64;
const up = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Offsets of every tensor in the flat parameter buffer, its total length, and the parameter count. */
export function paramLayout(cfg: GPT2Config): { tensors: Record<ParamName, ParamLayout>; total: number; count: number } {
  const tensors = {} as Record<ParamName, ParamLayout>;
  let offset = 0, count = 0;
  for (const spec of PARAM_SPECS) {
    const perLayer = prod(spec.shape(cfg));
    const stride = up(perLayer);
    const size = spec.layered ? stride * cfg.nLayer : stride;
    tensors[spec.name as ParamName] = { spec, offset, perLayer, stride, size };
    offset += size;
    count += spec.layered ? perLayer * cfg.nLayer : perLayer;
  }
  return { tensors, total: offset, count };
}

/** The [offset, offset + perLayer) slices of a tensor: one per layer when layered. */
export function slices(cfg: GPT2Config, p: ParamLayout): number[] {
  return p.spec.layered ? Array.from({ length: cfg.nLayer }, (_, l) => p.offset + l * p.stride) : [p.offset];
}

/** The HF names of one spec's tensors with their offsets: one per layer when layered. */
export function hfTensors(cfg: GPT2Config, p: ParamLayout): { hfName: string; offset: number }[] {
  return slices(cfg, p).map((offset, l) => ({ hfName: p.spec.hf.replace('{l}', String(l)), offset }));
}
