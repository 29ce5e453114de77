// safetensors: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {str: str}}, then the data
// (offsets relative to the end of the header). Every check below names the file and the tensor.
import { GPT2Error } from '../errors.js';

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Headers larger than this are refused: real ones are kilobytes (the Rust crate caps at 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  dtype: string;
  shape: number[];
  begin: number; // absolute byte offset in the file
  end: number;
}

export interface SafeTensors {
  readonly source: string;
  readonly metadata: Record<string, string>;
  readonly tensors: Map<string, TensorEntry>;
  /** The tensor as float32 (F32, F16, BF16 and F64 convert). */
  float32(name: string): Float32Array;
  /** The tensor as int32 (I32; I64 within range). */
  int32(name: string): Int32Array;
}

export function parseSafetensors(input: Uint8Array, source = 'safetensors data'): SafeTensors {
  // a plain Uint8Array view: Node's Buffer.slice would share memory instead of copying
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const fail = (what: string): never => {
    throw new GPT2Error(`${source} is not a valid safetensors file: ${what}; re-download or re-save it.`);
  };
  if (bytes.length < 8) fail(`it is only ${bytes.length} bytes long`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = dv.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`its header claims ${headerLen} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  if (8 + n > bytes.length) fail(`its ${n}-byte header runs past the end of the ${bytes.length}-byte file (truncated?)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch {
    return fail('its header is not valid UTF-8 JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('its header is not a JSON object');

  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `tensor '${name}'`;
    if (e === null || typeof e !== 'object') fail(`${where} has no description`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) fail(`${where} has unknown dtype ${JSON.stringify(e.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`${where} has an invalid shape`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1]) {
      fail(`${where} has invalid data_offsets`);
    }
    const [b, end] = offs as [number, number];
    if (end > dataLen) fail(`${where} ends at byte ${end} but the data section is only ${dataLen} bytes (truncated?)`);
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    const expected = count * DTYPE_BYTES[e.dtype as string];
    if (expected !== end - b) fail(`${where} is ${e.dtype} ${JSON.stringify(shape)} = ${expected} bytes, but its offsets span ${end - b}`);
    tensors.set(name, { dtype: e.dtype as string, shape: shape as number[], begin: dataStart + b, end: dataStart + end });
  }
  const sorted = [...tensors.entries()].sort((x, y) => x[1].begin - y[1].begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i][1].begin < sorted[i - 1][1].end) fail(`tensors '${sorted[i - 1][0]}' and '${sorted[i][0]}' overlap`);
  }

  const entry = (name: string): TensorEntry => {
    const e = tensors.get(name);
    if (!e) throw new GPT2Error(`${source} has no tensor '${name}'; is it the right file?`);
    return e;
  };
  const aligned = (e: TensorEntry): ArrayBuffer => bytes.slice(e.begin, e.end).buffer; // a copy, so 4-byte aligned
  return {
    source,
    metadata,
    tensors,
    float32(name) {
      const e = entry(name);
      switch (e.dtype) {
        case 'F32': return new Float32Array(aligned(e));
        case 'F16': return f16ToF32(new Uint16Array(aligned(e)));
        case 'BF16': return bf16ToF32(new Uint16Array(aligned(e)));
        case 'F64': return Float32Array.from(new Float64Array(aligned(e)));
        default: throw new GPT2Error(`${source}: tensor '${name}' is ${e.dtype}, expected a float tensor.`);
      }
    },
    int32(name) {
      const e = entry(name);
      if (e.dtype === 'I32') return new Int32Array(aligned(e));
      if (e.dtype === 'I64') return Int32Array.from(new BigInt64Array(aligned(e)), (v) => Number(v));
      throw new GPT2Error(`${source}: tensor '${name}' is ${e.dtype}, expected an integer tensor.`);
    },
  };
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Serialises tensors (F32 / I32) in the given order; the header is padded to 8 bytes like the reference writer. */
export function serializeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) throw new Error(`tensor '${t.name}': shape ${JSON.stringify(t.shape)} does not match ${t.data.length} values`);
    header[t.name] = { dtype: t.data instanceof Int32Array ? 'I32' : 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let p = 8 + head.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
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
