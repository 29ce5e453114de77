// Where a checkpoint's tensors come from, whatever the file format: a TensorStore lists each
// tensor's dtype and shape (known from a header before anything large is read) and reads one
// tensor at a time as float32. safetensors files, shards under a model.safetensors.index.json and
// PyTorch's pytorch_model.bin all become one; the bytes come from a ByteSource.
import { GPT2Error } from '../errors.js';

/** Positioned reads of a file or a blob: Node's FileHandle, a browser's Blob.slice, or bytes in memory. */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /**
   * `length` bytes at `offset`: into the start of `into` when given (a scratch buffer the caller
   * reuses, so loading touches no fresh memory per tensor), else into a new buffer of their own.
   * Either way 4-byte aligned.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
}

export interface StoredTensor {
  dtype: string;
  shape: number[];
}

export interface TensorStore {
  readonly source: string;
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  /**
   * The tensor as float32 (F32, F16, BF16, F64 convert); with range, only elements [start, start +
   * count). With `into`, its bytes are read into that scratch buffer (at least the tensor's byte
   * size), which an F32 result then views.
   */
  float32(name: string, range?: [number, number], into?: Uint8Array): Float32Array | Promise<Float32Array>;
  /** Two names of one tensor's bytes (a .bin's tied weights) share this key; absent elsewhere. */
  sameData?(a: string, b: string): boolean;
}

/** Decodes a tensor's little-endian bytes (a buffer of their own, starting at offset 0 of it, or any aligned view) to float32. */
export function decodeFloat32(e: { dtype: string }, bytes: Uint8Array, what: string): Float32Array {
  const aligned = (k: number) => (bytes.byteOffset % k === 0 ? bytes : bytes.slice());
  const view = <T>(C: new (b: ArrayBufferLike, o: number, n: number) => T, k: number) => {
    const b = aligned(k);
    return new C(b.buffer, b.byteOffset, b.byteLength / k);
  };
  switch (e.dtype) {
    case 'F32': return view(Float32Array, 4);
    case 'F16': return f16ToF32(view(Uint16Array, 2));
    case 'BF16': return bf16ToF32(view(Uint16Array, 2));
    case 'F64': return Float32Array.from(view(Float64Array, 8));
    default: throw new GPT2Error(`${what} is ${e.dtype}, expected a float tensor.`);
  }
}

export function f16ToF32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const x = h[i], sign = x & 0x8000 ? -1 : 1, exp = (x >> 10) & 0x1f, frac = x & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24;
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

export function bf16ToF32(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return new Float32Array(u.buffer);
}

/** A shard file name from an index: a plain file name in the same folder, nothing that reaches elsewhere. */
const plainFile = (f: unknown): f is string => typeof f === 'string' && /^[\w.-]+$/.test(f) && !/^\.+$/.test(f);

/** The shard files a model.safetensors.index.json (or pytorch_model.bin.index.json) names, in order, with its weight map checked. */
export function parseShardIndex(text: string, source: string): { files: string[]; weightMap: Map<string, string> } {
  let j: { weight_map?: unknown };
  try {
    j = JSON.parse(text);
  } catch {
    throw new GPT2Error(`${source} is not valid JSON; re-download or re-save the model.`);
  }
  const wm = j?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) throw new GPT2Error(`${source} has no weight_map object; it is not a sharded checkpoint's index.`);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (!plainFile(file)) throw new GPT2Error(`${source} maps '${name}' to ${JSON.stringify(file)}, which is not a file name beside the index; the index is damaged.`);
    weightMap.set(name, file);
  }
  if (weightMap.size === 0) throw new GPT2Error(`${source} names no tensors; the index is damaged.`);
  return { files: [...new Set(weightMap.values())], weightMap };
}

/**
 * One store over the shards an index names: every shard is opened (headers only) and every tensor
 * must lie in the shard the index names, and in no other.
 */
export async function shardedStore(indexText: string, source: string, open: (file: string) => Promise<TensorStore>): Promise<TensorStore> {
  const { files, weightMap } = parseShardIndex(indexText, source);
  const shards = new Map<string, TensorStore>();
  for (const f of files) shards.set(f, await open(f));
  const tensors = new Map<string, StoredTensor>();
  const owner = new Map<string, TensorStore>();
  for (const [f, s] of shards) {
    for (const [name, t] of s.tensors) {
      const other = owner.get(name);
      if (other) throw new GPT2Error(`The tensor '${name}' is in both ${other.source} and ${s.source}; the shards of ${source} disagree (re-download or re-save the model).`);
      const listed = weightMap.get(name);
      if (listed !== undefined && listed !== f) throw new GPT2Error(`${source} places '${name}' in ${listed}, but it is in ${s.source}; the index and its shards disagree.`);
      owner.set(name, s);
      tensors.set(name, t);
    }
  }
  for (const [name, f] of weightMap) {
    if (!owner.has(name)) throw new GPT2Error(`${source} places '${name}' in ${f}, but ${shards.get(f)!.source} does not hold it; the shard is from another save or damaged.`);
  }
  return {
    source,
    tensors,
    float32: (name, range, into) => {
      const s = owner.get(name);
      if (!s) throw new GPT2Error(`${source} has no tensor '${name}'; is it the right model?`);
      return s.float32(name, range, into);
    },
  };
}

/** "5GB", "500MB", "2GiB", "100KB" or a number of bytes, as save_pretrained's max_shard_size reads them. */
export function parseByteSize(s: string | number): number {
  if (typeof s === 'number') return s;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*$/i.exec(s);
  if (!m) throw new GPT2Error(`'${s}' is not a size; write it as transformers does, e.g. 5GB, 500MB, 2GiB or a number of bytes.`);
  const units: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };
  const bytes = Math.floor(Number(m[1]) * units[(m[2] ?? 'B').toUpperCase()]);
  if (bytes < 1) throw new GPT2Error(`A shard size of '${s}' is too small; give at least a few MB.`);
  return bytes;
}
