// GPT-2 with a KV cache as an ONNX graph, in the form transformers.js runs for a gpt2 causal LM:
//   inputs   input_ids [B, S], attention_mask [B, P+S], position_ids [B, S] (int64),
//            past_key_values.N.key|value [B, NH, P, HS] (float32; P = 0 on the first step)
//   outputs  logits [B, S, V], present.N.key|value [B, NH, P+S, HS]
// Built as protobuf messages with ONNX's own schema (onnx-proto), standard opset-17 operators only.
// Weights are stored in HF's layout (Conv1D [IN, OUT], which is MatMul's), fp32. With q8 every
// matmul weight is int8 with a scale per output column, run as DynamicQuantizeLinear ->
// MatMulInteger -> Cast -> Mul (the form onnxruntime's quantize_dynamic writes), and the tied
// wte is int8 with a scale per token, for the embedding and the LM head alike.
import onnxProto from 'onnx-proto';
import type { GPT2Config } from '../model/config.js';
import type { TensorToWrite } from '../io/safetensors.js';
import { quantizeRows } from '../model/int8.js';

const { onnx } = onnxProto;
type Node = onnxProto.onnx.INodeProto;
type Tensor = onnxProto.onnx.ITensorProto;
type Attr = number | number[] | string;
const DT = onnx.TensorProto.DataType;
const OPSET = 17; // LayerNormalization
const IR_VERSION = 8;

export interface OnnxGraphOptions {
  /** int8 matmul weights (dynamic quantization) instead of fp32 */
  quantize?: boolean;
  /**
   * When the initializers pass `above` bytes they go to an external data file of this name
   * (beside the .onnx file) instead of inside the protobuf, whose messages cannot pass 2 GB.
   */
  externalData?: { name: string; above: number };
}

export interface OnnxModelBytes {
  model: Uint8Array;
  /** the external data file's bytes, when options.externalData was given */
  data?: Uint8Array[];
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Collects nodes and initializers; every op returns the names of its outputs. */
class Graph {
  readonly nodes: Node[] = [];
  readonly inits: Tensor[] = [];
  private count = 0;

  /** Adds a node; outputs are named for it, or given (the graph's outputs). */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, out: number | string[] = 1): string[] {
    const id = `${type}_${this.count++}`;
    const outputs = typeof out === 'number' ? Array.from({ length: out }, (_, i) => `${id}_out${i}`) : out;
    const attribute = Object.entries(attrs).map(([name, v]) =>
      typeof v === 'string' ? { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) }
      : Array.isArray(v) ? { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
      : Number.isInteger(v) ? { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
      : { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v },
    );
    this.nodes.push({ opType: type, name: id, input: inputs, output: outputs, attribute });
    return outputs;
  }

  one(type: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    return this.op(type, inputs, attrs)[0];
  }

  init(name: string, dims: number[], data: Float32Array | Int8Array | BigInt64Array, dataType: number): string {
    this.inits.push({ name, dims, dataType, rawData: bytesOf(data) });
    return name;
  }

  f32(name: string, dims: number[], data: Float32Array) {
    return this.init(name, dims, data, DT.FLOAT);
  }

  i64(name: string, values: number[]) {
    return this.init(name, [values.length], BigInt64Array.from(values.map(BigInt)), DT.INT64);
  }

  scalar(name: string, value: number) {
    return this.init(name, [], Float32Array.of(value), DT.FLOAT);
  }
}

/** [R, Cn] -> [Cn, R] */
function transpose<A extends Float32Array | Int8Array>(a: A, R: number, Cn: number, make: (n: number) => A): A {
  const t = make(R * Cn);
  for (let r = 0; r < R; r++) for (let c = 0; c < Cn; c++) t[c * R + r] = a[r * Cn + c];
  return t;
}

const vi = (name: string, elemType: number, dims: (number | string)[]): onnxProto.onnx.IValueInfoProto => ({
  name,
  type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
});

/**
 * The ONNX model of a GPT-2 from its HF-layout tensors (paramsToTensors). `tensors` is read, not
 * copied, until the protobuf is encoded.
 */
export function gpt2OnnxModel(cfg: GPT2Config, tensors: TensorToWrite[], opts: OnnxGraphOptions = {}): OnnxModelBytes {
  const { nEmbd: C, nHead: NH, nLayer: L, vocabSize: V } = cfg;
  const HS = C / NH;
  const byName = new Map(tensors.map((t) => [t.name.replace(/^transformer\./, ''), t]));
  const weight = (name: string) => {
    const t = byName.get(name);
    if (!t) throw new Error(`missing tensor ${name}`);
    return t;
  };
  const g = new Graph();
  const param = (name: string) => g.f32(name, weight(name).shape, weight(name).data as Float32Array);

  // x [.., K] @ W [K, N] with W int8 [K, N] and a scale per column [N]: x quantized to uint8 on the fly
  const matmulInt8 = (x: string, wq: string, ws: string) => {
    const [xq, xs, xz] = g.op('DynamicQuantizeLinear', [x], {}, 3); // uint8, scale, zero point
    const acc = g.one('Cast', [g.one('MatMulInteger', [xq, wq, xz])], { to: DT.FLOAT });
    return g.one('Mul', [acc, g.one('Mul', [xs, ws])]);
  };
  // x [.., K] @ W [K, N] + b for an HF Conv1D
  const conv1d = (x: string, prefix: string) => {
    const name = `${prefix}.weight`, w = weight(name);
    const [K, N] = w.shape;
    let y: string;
    if (!opts.quantize) y = g.one('MatMul', [x, param(name)]);
    else {
      // a scale per column of [K, N]: per row of its transpose, our kernels' [OUT, IN] layout
      const { q, scale } = quantizeRows(transpose(w.data as Float32Array, K, N, (n) => new Float32Array(n)), N, K);
      y = matmulInt8(x, g.init(`${name}_quantized`, [K, N], transpose(q, N, K, (n) => new Int8Array(n)), DT.INT8), g.f32(`${name}_scale`, [N], scale));
    }
    return g.one('Add', [y, param(`${prefix}.bias`)]);
  };
  const layerNorm = (x: string, prefix: string) =>
    g.one('LayerNormalization', [x, param(`${prefix}.weight`), param(`${prefix}.bias`)], { axis: -1, epsilon: 1e-5 });

  // attention mask [B, 1, S, T]: key j visible to query i (absolute position T-S+i) when j <= T-S+i
  // and attention_mask[b, j] is 1. Masked scores become float32's lowest value, as HF does, so a
  // fully masked row (left padding) is uniform rather than NaN.
  const zero = g.i64('zero', [0]), oneI = g.i64('one', [1]);
  const seqLen = g.one('Shape', ['input_ids'], { start: 1, end: 2 }); // [1]
  const totalLen = g.one('Shape', ['attention_mask'], { start: 1, end: 2 }); // [1]
  const scalar = (t: string) => g.one('Squeeze', [t, zero]);
  const keys = g.one('Range', [scalar(zero), scalar(totalLen), scalar(oneI)]); // [T]
  const queries = g.one('Range', [scalar(g.one('Sub', [totalLen, seqLen])), scalar(totalLen), scalar(oneI)]); // [S]
  const causal = g.one('LessOrEqual', [g.one('Unsqueeze', [keys, zero]), g.one('Unsqueeze', [queries, oneI])]); // [S, T]
  const padding = g.one('Unsqueeze', [g.one('Cast', ['attention_mask'], { to: DT.BOOL }), g.i64('axes_1_2', [1, 2])]); // [B, 1, 1, T]
  const allowed = g.one('And', [causal, padding]); // [B, 1, S, T]
  const lowest = g.scalar('lowest', -3.4028234663852886e38);
  const headShape = g.i64('head_shape', [0, 0, NH, HS]), embdShape = g.i64('embd_shape', [0, 0, C]);
  const splitQkv = g.i64('split_qkv', [C, C, C]);
  const qScale = g.scalar('q_scale', 1 / Math.sqrt(HS));
  const [c0, c1, c2, c3] = [0.5, Math.sqrt(2 / Math.PI), 0.044715, 1].map((v, i) => g.scalar(`gelu_c${i}`, v));

  // token embeddings; under q8, wte is int8 with a scale per token (row), shared with the LM head
  let wteQ = '', wteScale = '', tokens: string;
  if (!opts.quantize) tokens = g.one('Gather', [param('wte.weight'), 'input_ids']);
  else {
    const { q, scale } = quantizeRows(weight('wte.weight').data as Float32Array, V, C);
    wteQ = g.init('wte.weight_quantized', [V, C], q, DT.INT8);
    wteScale = g.f32('wte.weight_scale', [V], scale);
    const rows = g.one('Cast', [g.one('Gather', [wteQ, 'input_ids'])], { to: DT.FLOAT }); // [B, S, C]
    tokens = g.one('Mul', [rows, g.one('Unsqueeze', [g.one('Gather', [wteScale, 'input_ids']), g.i64('last_axis', [-1])])]);
  }
  let x = g.one('Add', [tokens, g.one('Gather', [param('wpe.weight'), 'position_ids'])]); // [B, S, C]
  const outputs: onnxProto.onnx.IValueInfoProto[] = [];
  const inputs = [
    vi('input_ids', DT.INT64, ['batch_size', 'sequence_length']),
    vi('attention_mask', DT.INT64, ['batch_size', 'past_sequence_length + sequence_length']),
    vi('position_ids', DT.INT64, ['batch_size', 'sequence_length']),
  ];
  for (let l = 0; l < L; l++) {
    const h = `h.${l}`;
    const qkv = conv1d(layerNorm(x, `${h}.ln_1`), `${h}.attn.c_attn`); // [B, S, 3C]
    const heads = (t: string) => g.one('Transpose', [g.one('Reshape', [t, headShape])], { perm: [0, 2, 1, 3] }); // [B, NH, S, HS]
    const [q, k, v] = g.op('Split', [qkv, splitQkv], { axis: 2 }, 3).map(heads);
    const present: string[] = [];
    for (const [kind, t] of [['key', k], ['value', v]] as const) {
      const past = `past_key_values.${l}.${kind}`;
      inputs.push(vi(past, DT.FLOAT, ['batch_size', NH, 'past_sequence_length', HS]));
      const name = `present.${l}.${kind}`;
      present.push(g.op('Concat', [past, t], { axis: 2 }, [name])[0]);
      outputs.push(vi(name, DT.FLOAT, ['batch_size', NH, 'past_sequence_length + sequence_length', HS]));
    }
    const scores = g.one('MatMul', [g.one('Mul', [q, qScale]), g.one('Transpose', [present[0]], { perm: [0, 1, 3, 2] })]); // [B, NH, S, T]
    const att = g.one('Softmax', [g.one('Where', [allowed, scores, lowest])], { axis: -1 });
    const y = g.one('Reshape', [g.one('Transpose', [g.one('MatMul', [att, present[1]])], { perm: [0, 2, 1, 3] }), embdShape]); // [B, S, C]
    x = g.one('Add', [x, conv1d(y, `${h}.attn.c_proj`)]);
    // MLP with GELU's tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    const u = conv1d(layerNorm(x, `${h}.ln_2`), `${h}.mlp.c_fc`);
    const cube = g.one('Mul', [g.one('Mul', [u, u]), u]);
    const inner = g.one('Mul', [g.one('Add', [u, g.one('Mul', [cube, c2])]), c1]);
    const gelu = g.one('Mul', [g.one('Mul', [u, c0]), g.one('Add', [g.one('Tanh', [inner]), c3])]);
    x = g.one('Add', [x, conv1d(gelu, `${h}.mlp.c_proj`)]);
  }
  // tied LM head: logits = ln_f(x) @ wte^T, the transpose in the graph (onnxruntime folds it at load)
  const hf = layerNorm(x, 'ln_f');
  const logits = opts.quantize
    ? matmulInt8(hf, g.one('Transpose', [wteQ], { perm: [1, 0] }), wteScale)
    : g.one('MatMul', [hf, g.one('Transpose', ['wte.weight'], { perm: [1, 0] })]);
  g.op('Identity', [logits], {}, ['logits']);
  outputs.unshift(vi('logits', DT.FLOAT, ['batch_size', 'sequence_length', V]));

  const initBytes = g.inits.reduce((n, t) => n + (t.rawData as Uint8Array).byteLength, 0);
  const data = opts.externalData && initBytes > opts.externalData.above ? moveToExternal(g.inits, opts.externalData.name) : undefined;
  const model = onnx.ModelProto.encode({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'gpt2.ts',
    graph: { name: 'gpt2', node: g.nodes, initializer: g.inits, input: inputs, output: outputs },
  }).finish();
  return { model, data };
}

/**
 * Points every initializer of 1 KB or more at its place in one external data file (64-byte
 * aligned); small constants stay inline, where shape inference reads them. Returns the file's pieces.
 */
function moveToExternal(inits: Tensor[], location: string): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let offset = 0;
  for (const t of inits) {
    const raw = t.rawData as Uint8Array;
    if (raw.byteLength < 1024) continue;
    const pad = (64 - (offset % 64)) % 64;
    if (pad) pieces.push(new Uint8Array(pad));
    offset += pad;
    pieces.push(raw);
    t.rawData = undefined;
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.byteLength) },
    ];
    offset += raw.byteLength;
  }
  return pieces;
}
