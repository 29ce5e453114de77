// safetensors: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {str: str}}, then the data
// (offsets relative to the end of the header). Every check below names the file and the tensor.
// Files are read tensor by tensor through a ByteSource (positioned reads of a file in Node, a
// Blob's slices in browsers), so no file is ever held whole; small in-memory files (adapters,
// fixtures) read synchronously through the same header checks.
import { GPT2Error } from '../errors.js';
import { decodeFloat32, type ByteSource, type StoredTensor, type TensorStore } from './tensor-store.js';

export const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Headers larger than this are refused: real ones are kilobytes (the Rust crate caps at 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry extends StoredTensor {
  begin: number; // absolute byte offset in the file
  end: number;
}

interface Header {
  metadata: Record<string, string>;
  tensors: Map<string, TensorEntry>;
}

const failer = (source: string) => (what: string): never => {
  throw new GPT2Error(`${source} is not a valid safetensors file: ${what}; re-download or re-save it.`);
};

/** The header's length from the file's first 8 bytes, checked against the file's size. */
function headerLength(first8: Uint8Array, fileSize: number, source: string): number {
  const fail = failer(source);
  if (fileSize < 8) fail(`it is only ${fileSize} bytes long`);
  const headerLen = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`its header claims ${headerLen} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  if (8 + n > fileSize) fail(`its ${n}-byte header runs past the end of the ${fileSize}-byte file (truncated?)`);
  return n;
}

/** Every tensor's dtype, shape and byte range, checked against each other and the file's size before anything is read. */
function parseHeader(json: Uint8Array, fileSize: number, source: string): Header {
  const fail = failer(source);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    return fail('its header is not valid UTF-8 JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('its header is not a JSON object');

  const dataStart = 8 + json.length;
  const dataLen = fileSize - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  let last = 0;
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
    last = Math.max(last, end);
  }
  const sorted = [...tensors.entries()].sort((x, y) => x[1].begin - y[1].begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i][1].begin < sorted[i - 1][1].end) fail(`tensors '${sorted[i - 1][0]}' and '${sorted[i][0]}' overlap`);
  }
  // as the reference reader: the tensors cover the data section to its end, so a file with bytes appended (or a header from another file) is caught
  if (last !== dataLen) fail(`its header describes ${last} bytes of data but the file holds ${dataLen} after the header (the file and its header disagree)`);
  return { metadata, tensors };
}

/** A safetensors store: the header's tensors, each read as float32 (F32, F16, BF16 and F64 convert) when asked for. */
export interface SafeTensorsFile extends TensorStore {
  readonly metadata: Record<string, string>;
  readonly tensors: Map<string, TensorEntry>;
}

/** An in-memory safetensors file (adapters, fixtures, optimizer state of small models), read synchronously. */
export interface SafeTensors extends SafeTensorsFile {
  float32(name: string): Float32Array;
  /** The tensor as int32 (I32; I64 within range). */
  int32(name: string): Int32Array;
}

const entryOf = (h: Header, source: string, name: string): TensorEntry => {
  const e = h.tensors.get(name);
  if (!e) throw new GPT2Error(`${source} has no tensor '${name}'; is it the right file?`);
  return e;
};

export function parseSafetensors(input: Uint8Array, source = 'safetensors data'): SafeTensors {
  // a plain Uint8Array view: Node's Buffer.slice would share memory instead of copying
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const n = headerLength(bytes.subarray(0, 8), bytes.length, source);
  const h = parseHeader(bytes.subarray(8, 8 + n), bytes.length, source);
  const copy = (e: TensorEntry): Uint8Array => bytes.slice(e.begin, e.end); // a copy, so 4-byte aligned
  return {
    source,
    ...h,
    float32: (name) => decodeFloat32(entryOf(h, source, name), copy(entryOf(h, source, name)), `${source}: tensor '${name}'`),
    int32(name) {
      const e = entryOf(h, source, name);
      if (e.dtype === 'I32') return new Int32Array(copy(e).buffer);
      if (e.dtype === 'I64') return Int32Array.from(new BigInt64Array(copy(e).buffer), (v) => Number(v));
      throw new GPT2Error(`${source}: tensor '${name}' is ${e.dtype}, expected an integer tensor.`);
    },
  };
}

/**
 * Opens a safetensors file of any size for reading tensor by tensor: reads and checks its header
 * (nothing else), then each float32() reads just that tensor's bytes, or with `range` [start,
 * count) just those elements of it.
 */
export async function openSafetensors(src: ByteSource): Promise<SafeTensorsFile> {
  const n = headerLength(await src.read(0, Math.min(8, src.size)), src.size, src.name);
  const h = parseHeader(await src.read(8, n), src.size, src.name);
  return {
    source: src.name,
    ...h,
    async float32(name, range, into) {
      const e = entryOf(h, src.name, name), size = DTYPE_BYTES[e.dtype];
      const [start, count] = range ?? [0, (e.end - e.begin) / size];
      if (start < 0 || (start + count) * size > e.end - e.begin) throw new Error(`elements [${start}, ${start + count}) outside tensor '${name}'`);
      return decodeFloat32(e, await src.read(e.begin + start * size, count * size, into), `${src.name}: tensor '${name}'`);
    },
  };
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array;
}

type Data = Float32Array | Int32Array;

/** A tensor whose data is produced when the file is written (read from a device, transposed...): whole, or in consecutive pieces. */
export interface LazyTensor {
  name: string;
  shape: number[];
  dtype: 'F32' | 'I32';
  data: () => Data | Promise<Data> | AsyncIterable<Data>;
}

/** A file written piece by piece: its size up front (for the free-space check), then its bytes in order. */
export interface StreamedFile {
  size: number;
  chunks(): AsyncGenerator<Uint8Array>;
}

const tensorBytes = (t: { shape: number[]; dtype: string }) => t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];

/** The header bytes for tensors laid out in order, padded to 8 bytes like the reference writer. */
function headerBytes(tensors: { name: string; shape: number[]; dtype: string }[], metadata: Record<string, string>): { head: Uint8Array; data: number } {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const text = new TextEncoder().encode(json);
  const head = new Uint8Array(8 + text.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(text.length), true);
  head.set(text, 8);
  return { head, data: offset };
}

const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * A safetensors file whose tensors are produced one at a time as it is written, so writing it holds
 * one tensor, not the file. Each tensor's data must match its shape.
 */
export function safetensorsFile(tensors: LazyTensor[], metadata: Record<string, string> = { format: 'pt' }): StreamedFile {
  const { head, data } = headerBytes(tensors, metadata);
  return {
    size: head.length + data,
    async *chunks() {
      yield head;
      for (const t of tensors) {
        const d = t.data();
        let n = 0;
        for await (const piece of Symbol.asyncIterator in d ? (d as AsyncIterable<Data>) : [await d]) {
          n += piece.byteLength;
          yield asBytes(piece);
        }
        if (n !== tensorBytes(t)) throw new Error(`tensor '${t.name}': shape ${JSON.stringify(t.shape)} does not match ${n / 4} values`);
      }
    },
  };
}

/** A streamed file gathered into one buffer (small files, and browsers' downloads). */
export async function collect(f: StreamedFile): Promise<Uint8Array> {
  const out = new Uint8Array(f.size);
  let p = 0;
  for await (const c of f.chunks()) {
    out.set(c, p);
    p += c.byteLength;
  }
  return out;
}

/** Serialises small in-memory tensors (F32 / I32) in the given order: the layout safetensorsFile writes. */
export function serializeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const lazy = tensors.map((t) => {
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) throw new Error(`tensor '${t.name}': shape ${JSON.stringify(t.shape)} does not match ${t.data.length} values`);
    return { name: t.name, shape: t.shape, dtype: t.data instanceof Int32Array ? ('I32' as const) : ('F32' as const), data: () => t.data };
  });
  const { head, data } = headerBytes(lazy, metadata);
  const out = new Uint8Array(head.length + data);
  out.set(head);
  let p = head.length;
  for (const t of tensors) {
    out.set(asBytes(t.data), p);
    p += t.data.byteLength;
  }
  return out;
}
