// The ONNX export checked by the clients that load it, never by our own output alone:
// onnxruntime-node against the fixtures' float64 references, and transformers.js loading the
// folder as a gpt2 causal LM (greedy decoding, its logits, its tokenizer).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import * as hf from '@huggingface/transformers';
import { assertClose } from '../conformance/compare.js';
import { fixturesDir, loadFixture, type Fixture } from '../conformance/fixtures.js';
import { createReferenceBackend } from '../backends/reference/index.js';
import { GPT2 } from '../model/gpt2.js';
import type { GPT2Config } from '../model/config.js';
import { gpt2Tokenizer } from '../node.js';
import { generate } from '../sample/generate.js';
import { EDGE_CASES } from '../tokenizer/edge-cases.js';
import { trainTokenizer } from '../tokenizer/train.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { transformersJsFiles, type ExportFiles } from './transformers-js.js';

hf.env.allowRemoteModels = false; // everything below is offline

const root = mkdtempSync(join(tmpdir(), 'gpt2-onnx-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function writeFolder(name: string, files: ExportFiles): string {
  const dir = join(root, name);
  for (const [path, data] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), Array.isArray(data) ? Buffer.concat(data) : data);
  }
  return dir;
}

const i64 = (ids: ArrayLike<number>, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(Array.from(ids), BigInt), dims);

/**
 * One call of the exported graph on B rows of S new tokens after `past` positions (masked where
 * `mask` is 0), as transformers.js calls it: positions count the unmasked tokens.
 */
async function step(s: ort.InferenceSession, cfg: GPT2Config, ids: number[][], past: Record<string, ort.Tensor> | null, mask: number[][]) {
  const B = ids.length, S = ids[0].length, NH = cfg.nHead, HS = cfg.nEmbd / NH;
  const positions = mask.map((row) => row.map((_, j) => row.slice(0, j + 1).reduce((a, b) => a + b, 0) - 1).slice(-S).map((p) => Math.max(p, 0)));
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(ids.flat(), [B, S]),
    attention_mask: i64(mask.flat(), [B, mask[0].length]),
    position_ids: i64(positions.flat(), [B, S]),
  };
  for (let l = 0; l < cfg.nLayer; l++) {
    for (const kind of ['key', 'value']) {
      feeds[`past_key_values.${l}.${kind}`] = past?.[`present.${l}.${kind}`] ?? new ort.Tensor('float32', new Float32Array(0), [B, NH, 0, HS]);
    }
  }
  return s.run(feeds);
}

const rows = (flat: ArrayLike<number>, B: number, T: number) => Array.from({ length: B }, (_, b) => Array.from(flat).slice(b * T, (b + 1) * T));
const ones = (B: number, T: number) => Array.from({ length: B }, () => new Array<number>(T).fill(1));

/** The rows [from, to) of each batch row's logits, [B, T, V] -> [B, to - from, V]. */
function slicePositions(logits: ArrayLike<number>, B: number, T: number, V: number, from: number, to: number): Float32Array {
  const all = Float32Array.from(logits), out = new Float32Array(B * (to - from) * V);
  for (let b = 0; b < B; b++) out.set(all.subarray((b * T + from) * V, (b * T + to) * V), b * (to - from) * V);
  return out;
}

describe.each(['gpt2-tiny', 'gpt2-odd'])('%s exported to ONNX, run by onnxruntime-node', (name) => {
  let f: Fixture;
  let fp32: ort.InferenceSession, q8: ort.InferenceSession;
  beforeAll(async () => {
    f = loadFixture(name);
    const files = transformersJsFiles(f.config, f.params, await gpt2TokenizerOrTiny(f), { quantize: 'q8' });
    fp32 = await ort.InferenceSession.create(files['onnx/model.onnx'] as Uint8Array);
    q8 = await ort.InferenceSession.create(files['onnx/model_quantized.onnx'] as Uint8Array);
  });

  it('has the inputs and outputs transformers.js feeds and reads', () => {
    const kv = (prefix: string) => Array.from({ length: f.config.nLayer }, (_, l) => [`${prefix}.${l}.key`, `${prefix}.${l}.value`]).flat();
    expect(fp32.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids', ...kv('past_key_values')]);
    expect(fp32.outputNames).toEqual(['logits', ...kv('present')]);
    expect(q8.inputNames).toEqual(fp32.inputNames);
  });

  it('gives the float64 reference logits within the fp32 tolerance', async () => {
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    const out = await step(fp32, f.config, rows(f.ref.int32('inputs'), B, T), null, ones(B, T));
    expect(out.logits.dims).toEqual([B, T, f.config.vocabSize]);
    assertClose(`${name} onnxruntime logits`, out.logits.data as Float32Array, f.ref.float32('logits'), 1e-4);
  });

  it('decodes through past_key_values to the logits of the whole sequence', async () => {
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    const ids = rows(f.ref.int32('inputs'), B, T), V = f.config.vocabSize;
    const whole = (await step(fp32, f.config, ids, null, ones(B, T))).logits.data as Float32Array;
    const split = Math.floor(T / 2);
    let out = await step(fp32, f.config, ids.map((r) => r.slice(0, split)), null, ones(B, split));
    for (let t = split; t < T; t++) {
      out = await step(fp32, f.config, ids.map((r) => [r[t]]), out, ones(B, t + 1));
      expect(out['present.0.key'].dims[2]).toBe(t + 1);
      assertClose(`${name} logits at position ${t} through the cache`, out.logits.data as Float32Array, slicePositions(whole, B, T, V, t, t + 1), 1e-5);
    }
  });

  it('masks left padding: a padded row gives the unpadded logits', async () => {
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    const ids = rows(f.ref.int32('inputs'), B, T), V = f.config.vocabSize, pad = 3;
    const alone = (await step(fp32, f.config, [ids[0].slice(0, T - pad)], null, ones(1, T - pad))).logits.data as Float32Array;
    const padded = [[0, 0, 0, ...ids[0].slice(0, T - pad)], ids[1]];
    const mask = [[0, 0, 0, ...new Array<number>(T - pad).fill(1)], new Array<number>(T).fill(1)];
    const out = (await step(fp32, f.config, padded, null, mask)).logits.data as Float32Array;
    assertClose(`${name} left-padded row`, slicePositions(out, 2, T, V, pad, T).subarray(0, (T - pad) * V), alone, 1e-5);
    expect(Array.from(out).every(Number.isFinite)).toBe(true); // fully masked rows are uniform, not NaN
  });

  it('q8: int8 weights stay close to fp32', async () => {
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    const out = await step(q8, f.config, rows(f.ref.int32('inputs'), B, T), null, ones(B, T));
    const ref = f.ref.float32('logits');
    const rms = Math.sqrt(ref.reduce((a, x) => a + x * x, 0) / ref.length);
    const err = Math.sqrt((out.logits.data as Float32Array).reduce((a, x, i) => a + (x - ref[i]) ** 2, 0) / ref.length);
    // int8 per-column weights: ~1% relative error in the logits, where onnxruntime multiplies u8 x s8
    // exactly (VNNI); on AVX2 without it, its u8s8 kernel's pairwise int16 sums saturate (onnxruntime's
    // quantization docs: "reduce_range" exists for this), which measured 6.7% here on one fixture
    expect(err / rms).toBeLessThan(U8S8_EXACT ? 0.05 : 0.1);
  });
});

/** Whether this CPU has VNNI, with which onnxruntime's u8 x s8 integer GEMM cannot saturate. */
const U8S8_EXACT = (() => {
  try {
    return /\b(avx512_vnni|avx_vnni|amx_int8)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return true; // not Linux: hold the tight bound
  }
})();

/** gpt2-odd has no tokenizer files and a 997-token vocabulary: a byte-level BPE trained here stands in. */
async function gpt2TokenizerOrTiny(f: Fixture): Promise<Tokenizer> {
  if (f.config.vocabSize === 50257) return gpt2Tokenizer();
  return trainTokenizer([shakespeare().slice(0, 20000)], { vocabSize: f.config.vocabSize });
}

const shakespeare = () => readFileSync(join(fixturesDir(), '../examples/shakespeare.txt'), 'utf8');

describe('transformers.js loads the export of gpt2-tiny', () => {
  let f: Fixture, ours: Tokenizer, dir: string;
  beforeAll(async () => {
    f = loadFixture('gpt2-tiny');
    ours = await gpt2Tokenizer();
    dir = writeFolder('gpt2-tiny', transformersJsFiles(f.config, f.params, ours));
  });

  it('greedy generation of the prompt equals the fixture’s 24 tokens', async () => {
    const model = await hf.AutoModelForCausalLM.from_pretrained(dir, { local_files_only: true, dtype: 'fp32' });
    const tk = await hf.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
    const prompt = Array.from(f.ref.int32('greedy.prompt'));
    expect(tk.encode('The meaning of life is')).toEqual(prompt);
    const out = (await model.generate({ input_ids: new hf.Tensor('int64', BigInt64Array.from(prompt, BigInt), [1, prompt.length]), max_new_tokens: 24, do_sample: false })) as hf.Tensor;
    expect(Array.from(out.data as BigInt64Array, Number).slice(prompt.length)).toEqual(Array.from(f.ref.int32('greedy.tokens')));
    // and its forward pass, with its own attention mask and positions, gives the reference logits
    const [B, T] = f.ref.tensors.get('inputs')!.shape;
    const { logits } = await model({ input_ids: new hf.Tensor('int64', BigInt64Array.from(f.ref.int32('inputs'), BigInt), [B, T]), attention_mask: hf.ones([B, T]) });
    assertClose('transformers.js logits', logits.data as Float32Array, f.ref.float32('logits'), 1e-4);
    await model.dispose();
  });

  it('its tokenizer encodes and decodes the tokenizer test cases exactly as ours does', async () => {
    const tk = await hf.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
    for (const s of [...EDGE_CASES, shakespeare().slice(0, 5000)]) {
      const ids = Array.from(ours.encode(s, { specials: true }));
      expect(tk.encode(s, { add_special_tokens: false }), JSON.stringify(s).slice(0, 60)).toEqual(ids);
      if (ids.length) expect(tk.decode(ids, { skip_special_tokens: false })).toBe(ours.decode(ids));
    }
  });
});

describe('a GPT-2 trained from scratch with its own tokenizer', () => {
  const cfg: GPT2Config = { vocabSize: 384, nPositions: 32, nEmbd: 32, nLayer: 2, nHead: 2, nInner: 128, bosTokenId: 383, eosTokenId: 383 };
  let tok: Tokenizer, model: GPT2, params: Float32Array, dir: string;
  beforeAll(async () => {
    const text = shakespeare().slice(0, 40000);
    tok = trainTokenizer([text], { vocabSize: cfg.vocabSize });
    model = new GPT2(createReferenceBackend(), cfg, GPT2.initParams(cfg, 3));
    const ids = tok.encode(text), B = 4, T = 32;
    for (let s = 0; s < 30; s++) { // a short real run: the weights leave their initialisation
      const at = (s * 997) % (ids.length - B * T - 1);
      const x = ids.slice(at, at + B * T), y = ids.slice(at + 1, at + B * T + 1);
      model.zeroGrad();
      await model.forwardBackward(x, B, T, y);
      await model.update({ lr: 3e-3, weightDecay: 0, clip: 1 });
    }
    params = await model.readParams();
    dir = writeFolder('scratch', transformersJsFiles(cfg, params, tok, { quantize: 'q8', externalDataAbove: 0 }));
  });

  it('onnxruntime-node gives our logits, also with the weights in external data', async () => {
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))['transformers.js_config']).toEqual({ use_external_data_format: { 'model.onnx': 1, 'model_quantized.onnx': 1 } });
    const ids = tok.encode('To be, or not to be, that is the question:').slice(0, 16);
    await model.forward(ids, 1, ids.length);
    const want = await model.logits();
    const s = await ort.InferenceSession.create(join(dir, 'onnx/model.onnx'));
    const out = await step(s, cfg, [Array.from(ids)], null, ones(1, ids.length));
    assertClose('from-scratch onnxruntime logits', out.logits.data as Float32Array, want, 1e-4);
  });

  it('transformers.js generates what we generate, and tokenizes as we do', async () => {
    const generator = await hf.pipeline('text-generation', dir, { local_files_only: true, dtype: 'fp32' });
    const prompt = 'ROMEO:\nWhat light';
    const [result] = (await generator(prompt, { max_new_tokens: 20, do_sample: false })) as { generated_text: string }[];
    const { samples } = await generate(model, tok, tok.encode(prompt), { maxNewTokens: 20, temperature: 0, stopAtEos: false });
    expect(result.generated_text).toBe(prompt + samples[0].text);
    for (const s of [...EDGE_CASES.slice(0, 40), shakespeare().slice(50000, 53000)]) {
      expect(generator.tokenizer.encode(s, { add_special_tokens: false })).toEqual(Array.from(tok.encode(s, { specials: true })));
    }
    await generator.dispose();
  });
});
