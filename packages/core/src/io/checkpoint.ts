// HF GPT-2 checkpoints <-> our parameter tensors (PARAM_SPECS layout), one tensor at a time.
// HF stores Conv1D weights as [IN, OUT]; we keep [OUT, IN], so they are transposed both ways.
// Reading checks every name and shape against config.json before any weight is read; writing
// produces each tensor when the file gets to it, split into shards past a size limit as
// save_pretrained does (model-0000i-of-0000N.safetensors + model.safetensors.index.json).
import { GPT2Error } from '../errors.js';
import type { GPT2Config } from '../model/config.js';
import { hfTensors, paramLayout, PARAM_SPECS, type ParamName } from '../model/params.js';
import { DTYPE_BYTES, safetensorsFile, type LazyTensor, type SafeTensors, type StreamedFile, type TensorToWrite } from './safetensors.js';
import { parseByteSize, type TensorStore } from './tensor-store.js';

const PREFIX = 'transformer.';
// causal-mask buffers older transformers versions saved; not parameters
const IGNORED = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/** One parameter tensor of one layer (the whole tensor when not layered), in our layout: perLayer values. */
export interface ParamTensor {
  name: ParamName;
  layer: number;
  data: Float32Array;
}

interface Copy {
  name: ParamName;
  layer: number;
  stored: string; // the name in the file
  conv1d: boolean;
  hfShape: number[];
}

/** Every GPT-2 tensor of a checkpoint matched to its stored name, shapes checked against the config, nothing unexpected: before anything is read. */
function planCopies(cfg: GPT2Config, store: TensorStore): { copies: Copy[]; lmHead?: string } {
  const { tensors } = paramLayout(cfg);
  // strip the optional prefix; keep a map from our HF name to the stored name
  const stored = new Map<string, string>();
  for (const name of store.tensors.keys()) stored.set(name.startsWith(PREFIX) ? name.slice(PREFIX.length) : name, name);
  const copies: Copy[] = [];
  const used = new Set<string>();
  for (const [pname, p] of Object.entries(tensors)) {
    const shape = p.spec.shape(cfg);
    const hfShape = p.spec.conv1d ? [shape[1], shape[0]] : shape;
    hfTensors(cfg, p).forEach(({ hfName }, layer) => {
      const name = stored.get(hfName);
      if (name === undefined) throw new GPT2Error(`${store.source} has no tensor '${hfName}'; the checkpoint is incomplete or not a GPT-2 model.`);
      const got = store.tensors.get(name)!.shape;
      if (got.length !== hfShape.length || got.some((d, i) => d !== hfShape[i])) {
        throw new GPT2Error(`${store.source}: tensor '${name}' has shape [${got}] but config.json implies [${hfShape}]; the config does not match the weights.`);
      }
      copies.push({ name: pname as ParamName, layer, stored: name, conv1d: p.spec.conv1d, hfShape });
      used.add(hfName);
    });
  }
  const lmHead = stored.get('lm_head.weight');
  if (lmHead !== undefined) used.add('lm_head.weight');
  for (const [hfName, name] of stored) {
    if (!used.has(hfName) && !IGNORED.test(hfName)) throw new GPT2Error(`${store.source} has an unexpected tensor '${name}'; it is not a plain GPT-2 checkpoint.`);
  }
  return { copies, lmHead };
}

function toOurs(c: Copy, data: Float32Array): Float32Array {
  if (!c.conv1d) return data;
  const t = new Float32Array(data.length);
  transposeInto(t, 0, data, c.hfShape[0], c.hfShape[1]);
  return t;
}

function checkTied(source: string, lmHead: Float32Array, wte: Float32Array): void {
  if (lmHead.length !== wte.length || lmHead.some((x, i) => x !== wte[i])) {
    throw new GPT2Error(`${source}: lm_head.weight differs from wte.weight; untied LM heads are not supported.`);
  }
}

/**
 * Reads one parameter tensor of a checkpoint (layer l's slice, our layout) at a time, after
 * checking every name and shape against the config: a model loads, or a merge streams, holding a
 * tensor or two of the file at a time, never the file. The tensors come in two pairs of scratch
 * buffers used in turn (the bytes as read, and a Conv1D weight's transpose), so a load touches no
 * fresh memory per tensor: a returned array is overwritten two calls later, so use (upload, copy,
 * write) each before asking for the one after next.
 */
export function paramReader(cfg: GPT2Config, store: TensorStore): (name: ParamName, layer: number) => Promise<Float32Array> {
  const { copies, lmHead } = planCopies(cfg, store);
  const byKey = new Map(copies.map((c) => [`${c.name}.${c.layer}`, c]));
  const count = (c: Copy) => c.hfShape.reduce((a, d) => a * d, 1);
  const maxBytes = Math.max(0, ...copies.map((c) => count(c) * (DTYPE_BYTES[store.tensors.get(c.stored)!.dtype] ?? 4)));
  const maxConv = Math.max(0, ...copies.filter((c) => c.conv1d).map(count));
  const slots = [0, 1].map(() => ({ bytes: undefined as Uint8Array | undefined, t: undefined as Float32Array | undefined }));
  let turn = 0;
  return async (name, layer) => {
    const c = byKey.get(`${name}.${layer}`);
    if (!c) throw new Error(`no parameter tensor ${name}[${layer}]`);
    const slot = slots[turn++ % 2];
    slot.bytes ??= new Uint8Array(maxBytes);
    const read = await store.float32(c.stored, undefined, slot.bytes);
    let data = read;
    if (c.conv1d) {
      data = (slot.t ??= new Float32Array(maxConv)).subarray(0, read.length);
      transposeInto(data, 0, read, c.hfShape[0], c.hfShape[1]);
    }
    if (c.name === 'wte' && lmHead !== undefined && !store.sameData?.(lmHead, c.stored)) checkTied(store.source, await store.float32(lmHead), data);
    return data;
  };
}

/** The checkpoint's parameter tensors one at a time, in PARAM_SPECS order (for GPT2.load). */
export async function* paramTensors(cfg: GPT2Config, store: TensorStore): AsyncGenerator<ParamTensor> {
  yield* tensorsFrom(cfg, paramReader(cfg, store));
}

/**
 * Every (tensor, layer) of the layout in PARAM_SPECS order, each fetched by get. The next tensor is
 * already being read while the caller uploads this one, so the disk and the CPU work at once (two
 * tensors are held at a time).
 */
export async function* tensorsFrom(cfg: GPT2Config, get: (name: ParamName, layer: number) => Promise<Float32Array>): AsyncGenerator<ParamTensor> {
  const order = PARAM_SPECS.flatMap((spec) => Array.from({ length: spec.layered ? cfg.nLayer : 1 }, (_, layer) => ({ name: spec.name as ParamName, layer })));
  let next = order.length ? get(order[0].name, order[0].layer) : undefined;
  for (let i = 0; i < order.length; i++) {
    const data = await next!;
    next = i + 1 < order.length ? get(order[i + 1].name, order[i + 1].layer) : undefined;
    next?.catch(() => {}); // awaited on the next turn; a caller that stops early must not see it unhandled
    yield { ...order[i], data };
  }
}

/** Parameter tensors gathered into one new flat float32 buffer (paramLayout). */
export async function paramsFrom(cfg: GPT2Config, tensors: AsyncIterable<ParamTensor>): Promise<Float32Array> {
  const flat = new Float32Array(paramLayout(cfg).total);
  for await (const t of tensors) flat.set(t.data, offsetOf(cfg, t.name, t.layer));
  return flat;
}

/** Every GPT-2 tensor of a checkpoint in one new flat float32 buffer: for small models and browsers. */
export const paramsFromStore = (cfg: GPT2Config, store: TensorStore): Promise<Float32Array> => paramsFrom(cfg, paramTensors(cfg, store));

/** paramsFromStore for an in-memory safetensors file, synchronously (fixtures). */
export function paramsFromSafetensors(cfg: GPT2Config, st: SafeTensors): Float32Array {
  const { copies, lmHead } = planCopies(cfg, st);
  const flat = new Float32Array(paramLayout(cfg).total);
  for (const c of copies) flat.set(toOurs(c, st.float32(c.stored)), offsetOf(cfg, c.name, c.layer));
  const { tensors } = paramLayout(cfg);
  if (lmHead !== undefined) checkTied(st.source, st.float32(lmHead), flat.subarray(tensors.wte.offset, tensors.wte.offset + tensors.wte.perLayer));
  return flat;
}

/** Where layer l's slice of a tensor starts in the flat buffer. */
export function offsetOf(cfg: GPT2Config, name: ParamName, layer: number): number {
  const t = paramLayout(cfg).tensors[name];
  return t.offset + layer * t.stride;
}

/** A getter over a flat parameter buffer, for writing it. */
export function flatTensors(cfg: GPT2Config, flat: Float32Array): (name: ParamName, layer: number) => Float32Array {
  const { tensors, total } = paramLayout(cfg);
  if (flat.length !== total) throw new Error(`parameter buffer has ${flat.length} values, expected ${total}`);
  return (name, layer) => {
    const o = offsetOf(cfg, name, layer);
    return flat.subarray(o, o + tensors[name].perLayer);
  };
}

/**
 * The tensors GPT2LMHeadModel.save_pretrained writes, in its order: `transformer.` prefix, Conv1D
 * [IN, OUT], tied lm_head omitted; each one's data is fetched (and transposed) when it is written.
 */
export function paramTensorsToWrite(cfg: GPT2Config, get: (name: ParamName, layer: number) => Float32Array | Promise<Float32Array>): LazyTensor[] {
  const { tensors } = paramLayout(cfg);
  const out: LazyTensor[] = [];
  for (const spec of PARAM_SPECS) {
    const p = tensors[spec.name as ParamName];
    const shape = spec.shape(cfg);
    hfTensors(cfg, p).forEach(({ hfName }, layer) => {
      const transpose = (src: Float32Array) => {
        const t = new Float32Array(src.length);
        transposeInto(t, 0, src, shape[0], shape[1]);
        return t;
      };
      const fetch = () => get(spec.name as ParamName, layer);
      out.push({
        name: PREFIX + hfName,
        shape: spec.conv1d ? [shape[1], shape[0]] : shape,
        dtype: 'F32',
        data: spec.conv1d ? () => then(fetch(), transpose) : fetch,
      });
    });
  }
  return out;
}

/** The tensors of a flat parameter buffer in save_pretrained's layout, in memory (for the ONNX export). */
export function paramsToTensors(cfg: GPT2Config, flat: Float32Array): TensorToWrite[] {
  return paramTensorsToWrite(cfg, flatTensors(cfg, flat)).map((t) => ({ name: t.name, shape: t.shape, data: t.data() as Float32Array }));
}

const then = <T, R>(v: T | Promise<T>, f: (x: T) => R): R | Promise<R> => (v instanceof Promise ? v.then(f) : f(v));

/**
 * save_pretrained's default max_shard_size in transformers 4.x: a checkpoint up to 5 GB is one
 * model.safetensors (every GPT-2 but gpt2-xl, whose 6.4 GB become two shards as transformers would
 * write them), and no file passes the 5 GB that single-request uploads (S3's PUT) allow.
 */
export const DEFAULT_MAX_SHARD_SIZE = '5GB';

/**
 * The weight files of a model folder: model.safetensors, or past maxShardSize, shards filled in
 * order (a tensor that would overflow a non-empty shard starts the next, as transformers does) and
 * model.safetensors.index.json mapping every tensor to its shard.
 */
export function modelWeightFiles(tensors: LazyTensor[], maxShardSize: string | number = DEFAULT_MAX_SHARD_SIZE): Record<string, StreamedFile | string> {
  const max = parseByteSize(maxShardSize);
  const size = (t: LazyTensor) => t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
  const shards: LazyTensor[][] = [[]];
  let current = 0;
  for (const t of tensors) {
    if (current + size(t) > max && shards.at(-1)!.length > 0) {
      shards.push([]);
      current = 0;
    }
    shards.at(-1)!.push(t);
    current += size(t);
  }
  if (shards.length === 1) return { 'model.safetensors': safetensorsFile(tensors) };
  const files: Record<string, StreamedFile | string> = {};
  const weightMap: Record<string, string> = {};
  const n = String(shards.length).padStart(5, '0');
  shards.forEach((list, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`;
    files[file] = safetensorsFile(list);
    for (const t of list) weightMap[t.name] = file;
  });
  const totalSize = tensors.reduce((a, t) => a + size(t), 0);
  files['model.safetensors.index.json'] = JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n';
  return files;
}

// dst[offset + c*R + r] = src[r*Cn + c]: src (R, Cn) -> dst (Cn, R), in 64x64 tiles so both sides stay in cache
function transposeInto(dst: Float32Array, offset: number, src: Float32Array, R: number, Cn: number): void {
  const TILE = 64;
  for (let r0 = 0; r0 < R; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, R);
    for (let c0 = 0; c0 < Cn; c0 += TILE) {
      const c1 = Math.min(c0 + TILE, Cn);
      for (let r = r0; r < r1; r++) for (let c = c0, s = r * Cn; c < c1; c++) dst[offset + c * R + r] = src[s + c];
    }
  }
}
