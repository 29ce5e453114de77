// ONNX Runtime (onnxruntime-node, the engine transformers.js runs on in Node) decoding our
// ONNX export of a model: the peer `gpt2 bench --task generate --backend onnxruntime` times.
import { GPT2Error, gpt2OnnxModel, paramsToTensors, type GPT2Config } from '@gpt2/core';

type Ort = typeof import('onnxruntime-node');
type Tensor = import('onnxruntime-node').Tensor;

async function loadOrt(): Promise<Ort> {
  try {
    return await import('onnxruntime-node');
  } catch (err) {
    throw new GPT2Error(`onnxruntime-node could not be loaded (${(err as Error).message.split('\n')[0]}); it is the benchmark's peer, installed by pnpm install in a checkout (the release leaves it out).`);
  }
}

/** A KV-cache decoder with our KVCache's feed(): T new tokens of B rows in, the last position's logits [B, V] out. */
export interface OnnxDecoder {
  feed(tokens: Int32Array, T: number): Promise<Float32Array>;
}

/** `quantize`: the q8 export (int8 matmul weights) instead of fp32. */
export async function onnxPeer(config: GPT2Config, params: Float32Array, threads?: number, quantize = false) {
  const ort = await loadOrt();
  const { model } = gpt2OnnxModel(config, paramsToTensors(config, params), { quantize });
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: threads ?? 0, graphOptimizationLevel: 'all' });
  const { nHead: NH, nEmbd: C, nLayer: L, vocabSize: V } = config;
  const i64 = (n: number, f: (i: number) => number, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(f(i))), dims);
  return {
    name: 'onnxruntime',
    describe: () => `onnxruntime-node ${ort.env.versions.common}, cpu execution provider, ${threads ?? 'all'} threads`,
    createCache(B: number): OnnxDecoder {
      let past: Record<string, Tensor> = {};
      for (let l = 0; l < L; l++) for (const k of ['key', 'value']) past[`past_key_values.${l}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [B, NH, 0, C / NH]);
      let P = 0;
      return {
        async feed(tokens: Int32Array, T: number) {
          const out = await session.run({
            input_ids: i64(B * T, (i) => tokens[i], [B, T]),
            attention_mask: i64(B * (P + T), () => 1, [B, P + T]),
            position_ids: i64(B * T, (i) => P + (i % T), [B, T]),
            ...past,
          });
          P += T;
          past = {};
          for (let l = 0; l < L; l++) for (const k of ['key', 'value']) past[`past_key_values.${l}.${k}`] = out[`present.${l}.${k}`];
          const logits = out.logits.data as Float32Array, last = new Float32Array(B * V);
          for (let b = 0; b < B; b++) last.set(logits.subarray((b * T + T - 1) * V, (b * T + T) * V), b * V);
          return last;
        },
      };
    },
    dispose: () => session.release(),
  };
}
