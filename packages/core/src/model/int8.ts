// Weight-only int8: the matrices of every linear layer (attention, MLP and the tied LM head) as
// int8 with one float scale per output row, for generation and evaluation. Activations, the
// accumulation, embeddings, layernorms and biases stay fp32.
//
// Why one scale per output row rather than per block of 32 inputs: a dot product then needs one
// multiply by its row's scale at the end, so the inner loop of every backend's kernel is its fp32
// loop with a conversion from int8 (the block form adds a multiply-add per 32 weights); and on
// GPT-2's weights, which have no large outliers (the outliers of LLM.int8() are in activations,
// which stay fp32), it already costs well under 1% of eval loss (README, "int8 weights").
// It is also the per-channel form onnxruntime's quantize_dynamic and our q8 ONNX export use.
import type { GPT2Config } from './config.js';
import { ALIGN, paramLayout, type ParamName } from './params.js';

/** Weight formats a GPT2 can hold: fp32, or int8 matrices (generation and evaluation only). */
export type WeightFormat = 'fp32' | 'int8';

/** Where matmulInt8Forward exists (for messages). */
export const INT8_BACKENDS = 'the cpu, wasm, webgpu and reference backends';

/** The linear layers' weights held as int8 under 'int8' (the embedding keeps wte in fp32 as well). */
export const INT8_MATRICES = ['qkvw', 'attprojw', 'fcw', 'fcprojw'] as const satisfies readonly ParamName[];
export type Int8Matrix = (typeof INT8_MATRICES)[number] | 'wte';

/** Bytes of one row of an int8 matrix with IN columns: padded to whole i32 words. */
export const int8RowBytes = (IN: number): number => Math.ceil(IN / 4) * 4;

/**
 * Symmetric int8 with one scale per row of w (R rows of Cn): scale = max|row| / 127 (1 for an
 * all-zero row), q = round(w / scale), so w ~ q * scale. `rowBytes` pads each row of q (the
 * kernels' layout; default Cn, unpadded).
 */
export function quantizeRows(w: Float32Array, R: number, Cn: number, rowBytes = Cn): { q: Int8Array; scale: Float32Array } {
  const scale = new Float32Array(R);
  const q = new Int8Array(R * rowBytes);
  for (let r = 0; r < R; r++) {
    const row = w.subarray(r * Cn, (r + 1) * Cn);
    let max = 0;
    for (let c = 0; c < Cn; c++) max = Math.max(max, Math.abs(row[c]));
    scale[r] = max / 127 || 1;
    const s = scale[r]; // rounded to float32 before dividing, since the kernels multiply by the float32
    for (let c = 0; c < Cn; c++) q[r * rowBytes + c] = Math.round(row[c] / s);
  }
  return { q, scale };
}

/** Where each int8 matrix lies in the two flat buffers (i32 words of packed int8, and f32 scales). */
export interface Int8Layout {
  /** per matrix name: one entry per layer (wte: one) */
  matrices: Record<Int8Matrix, { word: number; words: number; scale: number; OUT: number; IN: number }[]>;
  words: number;
  scales: number;
}

const up = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** The int8 buffers' layout for a config: every matrix starts at a multiple of ALIGN (256 bytes), as the fp32 tensors do. */
export function int8Layout(cfg: GPT2Config): Int8Layout {
  const { tensors } = paramLayout(cfg);
  const matrices = {} as Int8Layout['matrices'];
  let words = 0, scales = 0;
  for (const name of [...INT8_MATRICES, 'wte'] as const) {
    const [OUT, IN] = tensors[name].spec.shape(cfg);
    const count = tensors[name].spec.layered ? cfg.nLayer : 1;
    const w = (OUT * int8RowBytes(IN)) / 4;
    matrices[name] = Array.from({ length: count }, () => {
      const m = { word: words, words: w, scale: scales, OUT, IN };
      words += up(w);
      scales += up(OUT);
      return m;
    });
  }
  return { matrices, words, scales };
}

/** The fp32 weights int8 stands for, q * scale (for references and tests). */
export function dequantizeRows(q: Int8Array, scale: Float32Array, R: number, Cn: number, rowBytes = Cn): Float32Array {
  const w = new Float32Array(R * Cn);
  for (let r = 0; r < R; r++) for (let c = 0; c < Cn; c++) w[r * Cn + c] = q[r * rowBytes + c] * scale[r];
  return w;
}
