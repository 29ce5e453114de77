// gpt2 export as a user runs it: the folder it writes is loaded by onnxruntime-node (logits against
// the float64 fixture), a folder is never half-written or silently replaced, and bad input ends in
// one sentence. The graph itself is tested against transformers.js in core (export/).
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { parseSafetensors } from '@gpt2/core';
import { FIXTURES, gpt2 } from './test/cli.js';

const tiny = join(FIXTURES, 'gpt2-tiny');
const root = mkdtempSync(join(tmpdir(), 'gpt2-export-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('gpt2 export --format onnx', () => {
  it('writes the transformers.js folder, whose model onnxruntime runs to the reference logits', async () => {
    const out = join(root, 'tiny');
    const r = await gpt2(['export', '--model', tiny, '--out', out, '--quantize', 'q8', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const files = JSON.parse(r.stdout).files as Record<string, number>;
    expect(Object.keys(files).sort()).toEqual(['config.json', 'generation_config.json', 'onnx/model.onnx', 'onnx/model_quantized.onnx', 'tokenizer.json', 'tokenizer_config.json']);
    expect(files['onnx/model_quantized.onnx']).toBeLessThan(files['onnx/model.onnx'] / 3);
    expect(readdirSync(root)).toEqual(['tiny']); // nothing left aside

    const ref = parseSafetensors(readFileSync(join(tiny, 'reference.safetensors')));
    const [B, T] = ref.tensors.get('inputs')!.shape;
    const s = await ort.InferenceSession.create(join(out, 'onnx/model.onnx'));
    const i64 = (f: (i: number) => number) => new ort.Tensor('int64', BigInt64Array.from({ length: B * T }, (_, i) => BigInt(f(i))), [B, T]);
    const inputs = ref.int32('inputs');
    const feeds: Record<string, ort.Tensor> = { input_ids: i64((i) => inputs[i]), attention_mask: i64(() => 1), position_ids: i64((i) => i % T) };
    for (let l = 0; l < 2; l++) for (const k of ['key', 'value']) feeds[`past_key_values.${l}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [B, 4, 0, 16]);
    const logits = (await s.run(feeds)).logits.data as Float32Array, want = ref.float32('logits');
    expect(want.reduce((m, x, i) => Math.max(m, Math.abs(x - logits[i])), 0)).toBeLessThan(1e-4);
    await s.release();
  });

  it('refuses a non-empty --out without --force, and --force replaces it whole', async () => {
    const out = join(root, 'occupied');
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'keep me');
    const refused = await gpt2(['export', '--model', tiny, '--out', out]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`error: ${out} exists and is not empty; choose another --out, or pass --force to replace it.\n`);
    expect(readdirSync(out)).toEqual(['notes.txt']);
    const forced = await gpt2(['export', '--model', tiny, '--out', out, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(existsSync(join(out, 'notes.txt'))).toBe(false);
    expect(existsSync(join(out, 'onnx/model.onnx'))).toBe(true);
  });

  it('bad input ends in one sentence: an unsupported config, a model without a tokenizer, another format', async () => {
    const relu = join(root, 'relu');
    cpSync(tiny, relu, { recursive: true });
    writeFileSync(join(relu, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(tiny, 'config.json'), 'utf8')), activation_function: 'relu' }));
    for (const [args, code, pattern] of [
      [['--model', relu], 1, /^error: .*config\.json: activation_function 'relu' is not supported \(only gelu_new\); gpt2\.ts runs GPT-2-shaped models only\.\n$/],
      [['--model', join(FIXTURES, 'gpt2-odd')], 1, /^error: .* has no vocab\.json \+ merges\.txt \(or tokenizer\.json\) and its vocabulary is not GPT-2's; add the tokenizer files\.\n$/],
      [['--model', tiny, '--format', 'tflite'], 2, /argument 'tflite' is invalid\. Allowed choices are onnx, gguf\./],
    ] as const) {
      const r = await gpt2(['export', ...args, '--out', join(root, 'never')]);
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(pattern);
      expect(existsSync(join(root, 'never'))).toBe(false);
    }
  });

  it('bench --backend onnxruntime times ONNX Runtime on the export; only for generate', async () => {
    const g = await gpt2(['bench', '--task', 'generate', '--backend', 'onnxruntime', '--init', join(FIXTURES, 'gpt2-odd/config.json'), '--batch', '2', '--prompt-tokens', '8', '--new-tokens', '8', '--json']);
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout)).toMatchObject({ task: 'generate', backend: 'onnxruntime', batch: 2, tokensPerSecond: expect.any(Number) });
    const t = await gpt2(['bench', '--task', 'train', '--backend', 'onnxruntime']);
    expect(t.code).toBe(1);
    expect(t.stderr).toBe('error: --backend onnxruntime is a peer for --task generate only (it runs our ONNX export), not train.\n');
  });
});

describe('gpt2 export --format gguf', () => {
  it('writes one .gguf (F32, or the matrices as Q8_0) aside and renames it into place; refuses what makes no sense in one sentence', async () => {
    const out = join(root, 'tiny.gguf'), q8 = join(root, 'tiny-q8.gguf');
    const r = await gpt2(['export', '--model', tiny, '--format', 'gguf', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const bytes = readFileSync(out);
    expect(JSON.parse(r.stdout)).toEqual({ out, bytes: bytes.length, quantize: 'f32' });
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('GGUF');
    expect((await gpt2(['export', '--model', tiny, '--format', 'gguf', '--quantize', 'q8_0', '--out', q8])).code).toBe(0);
    expect(readFileSync(q8).length).toBeLessThan(bytes.length / 3);
    expect(readdirSync(root).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const again = await gpt2(['export', '--model', tiny, '--format', 'gguf', '--out', out]);
    expect([again.code, again.stderr.trim()]).toEqual([1, `error: ${out} exists; choose another --out, or pass --force to replace it.`]);
    const q8onnx = await gpt2(['export', '--model', tiny, '--format', 'gguf', '--quantize', 'q8', '--out', join(root, 'x.gguf')]);
    expect(q8onnx.stderr.trim()).toBe("error: GGUF's int8 type is --quantize q8_0 (q8 is the ONNX export's).");
    const folder = await gpt2(['export', '--model', tiny, '--format', 'gguf', '--out', root]);
    expect(folder.stderr.trim()).toBe(`error: ${root} is a folder; --out names the .gguf file to write.`);
    const onnxQ8_0 = await gpt2(['export', '--model', tiny, '--quantize', 'q8_0', '--out', join(root, 'onnx-dir')]);
    expect(onnxQ8_0.stderr.trim()).toBe("error: --quantize q8_0 is GGUF's (--format gguf); the ONNX export's int8 is --quantize q8.");
  });
});
