// GGUF, llama.cpp's model file (version 3), for its `gpt2` architecture: the file llama.cpp,
// ollama and LM Studio load. Layout: a header, key/value metadata, one info record per tensor
// (name, dims fastest first, type, offset), then each tensor's data at a 32-byte boundary. Tensors
// and keys are the ones llama.cpp's convert_hf_to_gguf.py writes for GPT-2: the tied LM head is
// written twice (token_embd and output, which llama.cpp requires). With 'q8_0' the 2-D weights but
// the position table are Q8_0 blocks (32 int8 and an fp16 scale: max|x| / 127, rounded half away
// from zero, as ggml's quantize_row_q8_0), the rest F32. Written ourselves: the format is small and
// documented (ggml's gguf.h, gguf-py's constants); the tests read it back with @huggingface/gguf.
import type { GPT2Config } from '../model/config.js';
import type { ParamName } from '../model/params.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export type GgufQuant = 'f32' | 'q8_0';

/** ggml_type of each tensor we write */
export const GGML_TYPE = { F32: 0, Q8_0: 8 } as const;
/** general.file_type (llama_ftype): all F32, or mostly Q8_0 */
const FILE_TYPE: Record<GgufQuant, number> = { f32: 0, q8_0: 7 };
/** gguf_type of metadata values */
const KV = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;
/** tokenizer.ggml.token_type values (llama_token_type) */
const TOKEN = { NORMAL: 1, CONTROL: 3, UNUSED: 5 } as const;
export const GGUF_ALIGNMENT = 32;
export const Q8_0_BLOCK = 32; // values a block holds; it takes 2 + 32 bytes

export interface GgufTensor {
  name: string;
  /** row-major, as torch: [OUT, IN] for a weight (GGUF writes the dims reversed, fastest first) */
  shape: number[];
  type: keyof typeof GGML_TYPE;
  /** where its values come from: a parameter tensor of layer `layer` */
  from: [ParamName, number];
  /** bytes of data and offset from the start of the data section */
  bytes: number;
  offset: number;
}

const align = (n: number) => Math.ceil(n / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;

/** The tensors of a GPT-2 in llama.cpp's names, with their types, sizes and offsets. */
export function ggufTensors(cfg: GPT2Config, quant: GgufQuant): GgufTensor[] {
  const { nEmbd: C, nInner: F, vocabSize: V, nPositions: P, nLayer: L } = cfg;
  const list: [string, number[], ParamName, number][] = [['token_embd.weight', [V, C], 'wte', 0], ['position_embd.weight', [P, C], 'wpe', 0]];
  for (let l = 0; l < L; l++) {
    const b = `blk.${l}.`;
    list.push(
      [`${b}attn_norm.weight`, [C], 'ln1w', l], [`${b}attn_norm.bias`, [C], 'ln1b', l],
      [`${b}attn_qkv.weight`, [3 * C, C], 'qkvw', l], [`${b}attn_qkv.bias`, [3 * C], 'qkvb', l],
      [`${b}attn_output.weight`, [C, C], 'attprojw', l], [`${b}attn_output.bias`, [C], 'attprojb', l],
      [`${b}ffn_norm.weight`, [C], 'ln2w', l], [`${b}ffn_norm.bias`, [C], 'ln2b', l],
      [`${b}ffn_up.weight`, [F, C], 'fcw', l], [`${b}ffn_up.bias`, [F], 'fcb', l],
      [`${b}ffn_down.weight`, [C, F], 'fcprojw', l], [`${b}ffn_down.bias`, [C], 'fcprojb', l],
    );
  }
  list.push(['output_norm.weight', [C], 'lnfw', 0], ['output_norm.bias', [C], 'lnfb', 0], ['output.weight', [V, C], 'wte', 0]);
  let offset = 0;
  return list.map(([name, shape, param, layer]) => {
    // Q8_0 for the matrices (rows of whole blocks), as convert_hf_to_gguf.py: never the position table
    const type = quant === 'q8_0' && shape.length === 2 && name !== 'position_embd.weight' && shape[1] % Q8_0_BLOCK === 0 ? 'Q8_0' : 'F32';
    const n = shape.reduce((a, d) => a * d, 1);
    const bytes = type === 'Q8_0' ? (n / Q8_0_BLOCK) * 34 : n * 4;
    const t: GgufTensor = { name, shape, type, from: [param, layer], bytes, offset };
    offset = align(offset + bytes);
    return t;
  });
}

/** A growing little-endian byte buffer for the header. */
class Writer {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(x: number): this {
    this.room(4);
    this.view.setUint32(this.length, x, true);
    this.length += 4;
    return this;
  }
  i32(x: number): this {
    this.room(4);
    this.view.setInt32(this.length, x, true);
    this.length += 4;
    return this;
  }
  u64(x: number): this {
    this.room(8);
    this.view.setBigUint64(this.length, BigInt(x), true);
    this.length += 8;
    return this;
  }
  f32(x: number): this {
    this.room(4);
    this.view.setFloat32(this.length, x, true);
    this.length += 4;
    return this;
  }
  u8(x: number): this {
    this.room(1);
    this.buf[this.length++] = x;
    return this;
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

type Value = { t: 'u32' | 'i32' | 'f32'; v: number } | { t: 'bool'; v: boolean } | { t: 'str'; v: string } | { t: 'strs'; v: string[] } | { t: 'i32s'; v: Int32Array };

function writeKv(w: Writer, key: string, val: Value): void {
  w.str(key);
  switch (val.t) {
    case 'u32': w.u32(KV.UINT32).u32(val.v); break;
    case 'i32': w.u32(KV.INT32).i32(val.v); break;
    case 'f32': w.u32(KV.FLOAT32).f32(val.v); break;
    case 'bool': w.u32(KV.BOOL).u8(val.v ? 1 : 0); break;
    case 'str': w.u32(KV.STRING).str(val.v); break;
    case 'strs':
      w.u32(KV.ARRAY).u32(KV.STRING).u64(val.v.length);
      for (const s of val.v) w.str(s);
      break;
    case 'i32s':
      w.u32(KV.ARRAY).u32(KV.INT32).u64(val.v.length);
      for (const x of val.v) w.i32(x);
      break;
  }
}

/** The metadata llama.cpp reads for a gpt2 model: its hyperparameters and its byte-level BPE tokenizer. */
export function ggufMetadata(cfg: GPT2Config, tok: Tokenizer, quant: GgufQuant, name: string): [string, Value][] {
  const V = cfg.vocabSize;
  // llama.cpp takes one token string per id of the model's vocabulary: ids past the tokenizer's are padding
  const tokens = Array.from({ length: V }, (_, i) => tok.tokens[i] ?? `[PAD${i}]`);
  const types = Int32Array.from({ length: V }, (_, i) => (tok.tokens[i] === undefined ? TOKEN.UNUSED : tok.specials.has(tok.tokens[i]) ? TOKEN.CONTROL : TOKEN.NORMAL));
  const eos = tok.eosId;
  return [
    ['general.architecture', { t: 'str', v: 'gpt2' }],
    ['general.name', { t: 'str', v: name }],
    ['general.file_type', { t: 'u32', v: FILE_TYPE[quant] }],
    ...(quant === 'q8_0' ? [['general.quantization_version', { t: 'u32', v: 2 }] as [string, Value]] : []),
    ['gpt2.context_length', { t: 'u32', v: cfg.nPositions }],
    ['gpt2.embedding_length', { t: 'u32', v: cfg.nEmbd }],
    ['gpt2.feed_forward_length', { t: 'u32', v: cfg.nInner }],
    ['gpt2.block_count', { t: 'u32', v: cfg.nLayer }],
    ['gpt2.attention.head_count', { t: 'u32', v: cfg.nHead }],
    ['gpt2.attention.layer_norm_epsilon', { t: 'f32', v: 1e-5 }], // GPT-2's, which our layernorms use
    ['tokenizer.ggml.model', { t: 'str', v: 'gpt2' }],
    ['tokenizer.ggml.pre', { t: 'str', v: 'gpt-2' }],
    ['tokenizer.ggml.tokens', { t: 'strs', v: tokens }],
    ['tokenizer.ggml.token_type', { t: 'i32s', v: types }],
    ['tokenizer.ggml.merges', { t: 'strs', v: tok.merges.map(([a, b]) => `${a} ${b}`) }],
    ...(eos !== undefined
      ? (['bos_token_id', 'eos_token_id', 'unknown_token_id'].map((k) => [`tokenizer.ggml.${k}`, { t: 'u32', v: eos }]) as [string, Value][])
      : []),
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: false }], // GPT-2 adds none, as our tokenizer and HF's
  ];
}

/** Everything before the data section: header, metadata, tensor infos, and the padding to the data. */
export function ggufHeader(cfg: GPT2Config, tok: Tokenizer, quant: GgufQuant, name: string, tensors: GgufTensor[]): Uint8Array {
  const w = new Writer(), kv = ggufMetadata(cfg, tok, quant, name);
  w.u32(0x46554747).u32(3).u64(tensors.length).u64(kv.length); // "GGUF", version 3
  for (const [key, val] of kv) writeKv(w, key, val);
  for (const t of tensors) {
    w.str(t.name).u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(GGML_TYPE[t.type]).u64(t.offset);
  }
  while (w.length % GGUF_ALIGNMENT) w.u8(0);
  return w.bytes();
}

/** IEEE binary16 bits of x, rounded to nearest even (ggml's GGML_FP32_TO_FP16). */
export function f16Bits(x: number): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000, exp = (u >>> 23) & 0xff, man = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = man | 0x800000, shift = 14 - e, half = 1 << (shift - 1);
    let r = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++; // a carry into the exponent is still right
  return sign | r;
}

export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >>> 10) & 0x1f, man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** x (a whole number of 32-value blocks) as Q8_0 blocks: fp16 d = max|x| / 127, then 32 int8 round(x / d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const blocks = x.length / Q8_0_BLOCK, out = new Uint8Array(blocks * 34), view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const o = b * Q8_0_BLOCK;
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(x[o + i]));
    const d = Math.fround(amax / 127), id = d ? Math.fround(1 / d) : 0;
    view.setUint16(b * 34, f16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const v = Math.fround(x[o + i] * id);
      out[b * 34 + 2 + i] = (Math.sign(v) * Math.floor(Math.abs(v) + 0.5)) & 0xff; // roundf: half away from zero
    }
  }
  return out;
}

/** Q8_0 blocks back to floats: d * q. */
export function dequantizeQ8_0(b: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n), view = new DataView(b.buffer, b.byteOffset, b.byteLength), q = new Int8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let k = 0; k < n / Q8_0_BLOCK; k++) {
    const d = f16Value(view.getUint16(k * 34, true));
    for (let i = 0; i < Q8_0_BLOCK; i++) out[k * Q8_0_BLOCK + i] = d * q[k * 34 + 2 + i];
  }
  return out;
}

/**
 * The whole file as consecutive chunks: the header, then each tensor's data and its padding, a tensor
 * read (`read`: our layout, [OUT, IN] weights) and converted at a time, so a model is never held whole.
 */
export async function* ggufFile(cfg: GPT2Config, tok: Tokenizer, quant: GgufQuant, name: string, read: (name: ParamName, layer: number) => Promise<Float32Array>): AsyncGenerator<Uint8Array> {
  const tensors = ggufTensors(cfg, quant);
  yield ggufHeader(cfg, tok, quant, name, tensors);
  let at = 0;
  for (const t of tensors) {
    if (t.offset > at) yield new Uint8Array(t.offset - at);
    const x = await read(...t.from);
    yield t.type === 'Q8_0' ? quantizeQ8_0(x) : new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    at = t.offset + t.bytes;
  }
}
