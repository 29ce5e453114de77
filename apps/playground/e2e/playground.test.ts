// End to end in a real browser: Debian's chromium driven by playwright-core, once with WebGPU
// (SwiftShader) and once with WebGPU off (the WebAssembly path). Loads fixtures/gpt2-tiny from
// the local server, generates greedily, fine-tunes a few steps, and saves screenshots.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createReferenceBackend, GPT2, paramsFromSafetensors, parseConfig, parseSafetensors } from '@gpt2/core';
import * as ort from 'onnxruntime-node';
import { unzipSync } from 'fflate';
import { serve } from './server.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const OUT = fileURLToPath(new URL('../test-output/', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const ref = parseSafetensors(readFileSync(join(ROOT, 'fixtures/gpt2-tiny/reference.safetensors')));
const BASE_FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

const skip = existsSync(CHROMIUM) ? undefined : 'Debian chromium is not installed (apt-get install chromium)';
let server: Awaited<ReturnType<typeof serve>>;
beforeAll(async () => {
  if (!skip) server = await serve(join(ROOT, 'apps/playground/dist'), join(ROOT, 'fixtures'));
  mkdirSync(OUT, { recursive: true });
});
afterAll(() => server?.close());

/** onnxruntime-node on the exported graph against the reference backend on the HF download's weights. */
async function expectOnnxRunsTuned(onnxModel: Uint8Array, hfFiles: Record<string, Uint8Array>): Promise<void> {
  const config = parseConfig(new TextDecoder().decode(hfFiles['config.json']));
  const model = new GPT2(createReferenceBackend(), config, paramsFromSafetensors(config, parseSafetensors(hfFiles['model.safetensors'])));
  const ids = ref.int32('inputs').subarray(0, 16);
  await model.forward(ids, 1, 16);
  const want = await model.logits();
  const s = await ort.InferenceSession.create(onnxModel);
  const i64 = (f: (i: number) => number) => new ort.Tensor('int64', BigInt64Array.from({ length: 16 }, (_, i) => BigInt(f(i))), [1, 16]);
  const feeds: Record<string, ort.Tensor> = { input_ids: i64((i) => ids[i]), attention_mask: i64(() => 1), position_ids: i64((i) => i) };
  for (let l = 0; l < config.nLayer; l++) for (const k of ['key', 'value']) feeds[`past_key_values.${l}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [1, config.nHead, 0, config.nEmbd / config.nHead]);
  const got = (await s.run(feeds)).logits.data as Float32Array;
  expect(want.reduce((m, x, i) => Math.max(m, Math.abs(x - got[i])), 0)).toBeLessThan(1e-4);
  await s.release();
}

async function open(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url);
  return { page, errors };
}

async function loadTiny(page: Page, backend: string, weights = 'fp32'): Promise<void> {
  if (!(await page.isVisible('#endpoint'))) await page.click('#model summary'); // the endpoint setting is folded away
  await page.fill('#endpoint', `${server.url}/hub`);
  await page.fill('#source', 'test/gpt2-tiny');
  await page.selectOption('#backend-choice', backend);
  await page.selectOption('#weights-choice', weights);
  await page.evaluate(() => (document.querySelector('#model-info')!.textContent = ''));
  await page.click('#load');
  await page.waitForFunction(() => document.querySelector('#model-info')!.textContent!.includes('parameters'), undefined, { timeout: 120_000 });
}

async function greedy(page: Page): Promise<number[]> {
  await page.fill('#prompt', 'The meaning of life is');
  await page.fill('#temperature', '0');
  await page.fill('#max-new-tokens', '24');
  await page.fill('#nsamples', '1');
  await page.click('#run');
  await page.waitForSelector('#outputs[data-tokens]', { timeout: 300_000 });
  return JSON.parse((await page.getAttribute('#outputs', 'data-tokens'))!)[0];
}

async function finetune(page: Page, steps: number, sampleEvery: number): Promise<number[]> {
  await page.fill('#train-text', readFileSync(join(ROOT, 'examples/shakespeare.txt'), 'utf8').slice(0, 4000));
  await page.fill('#steps', String(steps));
  await page.fill('#batch', '2');
  await page.fill('#block', '32');
  await page.fill('#lr', '0.003');
  await page.fill('#sample-every', String(sampleEvery));
  await page.click('#train');
  await page.waitForFunction(() => /\((done|stopped)\)/.test(document.querySelector('#train-status')!.textContent!), undefined, { timeout: 400_000 });
  return JSON.parse((await page.getAttribute('#chart', 'data-losses'))!);
}

describe.skipIf(skip)(`playground in chromium${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('WebAssembly (WebGPU off): loads, generates the fixture greedy tokens, fine-tunes, renders text as text', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: BASE_FLAGS });
    try {
      const { page, errors } = await open(browser);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
      await loadTiny(page, 'auto');
      const backend = await page.textContent('#backend');
      expect(backend).toMatch(/backend: wasm \(WebGPU unavailable: .*\) · device: WebAssembly SIMD128.*threads: \d/);
      expect(await greedy(page)).toEqual([...ref.int32('greedy.tokens')]);
      await page.screenshot({ path: join(OUT, 'playground-wasm-generate.png'), fullPage: true });
      const losses = await finetune(page, 12, 6);
      expect(losses.length).toBe(12);
      expect(Math.min(...losses.slice(-3))).toBeLessThan(losses[0]);
      // the held-out 10%: validation loss and accuracy at step 0, every 10 steps and at the end, charted
      const evals = JSON.parse((await page.getAttribute('#chart', 'data-evals'))!) as { step: number; loss: number; accuracy: number }[];
      expect(evals.map((e) => e.step)).toEqual([0, 10, 12]);
      expect(evals.every((e) => e.accuracy >= 0 && e.accuracy <= 1 && Number.isFinite(e.loss))).toBe(true);
      expect(evals[2].loss).toBeLessThan(evals[0].loss);
      expect(await page.textContent('#val-status')).toMatch(/^step 12: validation loss \d+\.\d{4} · accuracy \d+\.\d%$/);
      expect(await page.locator('#samples .output').count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(OUT, 'playground-wasm-finetune.png'), fullPage: true });
      // the fine-tuned model downloads as HF-format files, and they hold the trained weights
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const files = unzipSync(new Uint8Array(readFileSync((await download.path())!)));
      expect(Object.keys(files).sort()).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'vocab.json']);
      const tuned = parseSafetensors(files['model.safetensors']);
      const original = parseSafetensors(readFileSync(join(ROOT, 'fixtures/gpt2-tiny/model.safetensors')));
      expect(tuned.float32('transformer.wte.weight')).not.toEqual(original.float32('wte.weight'));
      expect(JSON.parse(new TextDecoder().decode(files['config.json'])).n_embd).toBe(64);
      // and as the folder transformers.js loads: onnxruntime runs the tuned weights to the logits we compute from the HF files
      const [onnxDownload] = await Promise.all([page.waitForEvent('download'), page.click('#download-onnx')]);
      const onnxFiles = unzipSync(new Uint8Array(readFileSync((await onnxDownload.path())!)));
      expect(Object.keys(onnxFiles).sort()).toEqual(['config.json', 'generation_config.json', 'onnx/model.onnx', 'onnx/model_quantized.onnx', 'tokenizer.json', 'tokenizer_config.json']);
      await expectOnnxRunsTuned(onnxFiles['onnx/model.onnx'], files);
      // Stop ends a long generation early
      await page.fill('#temperature', '1');
      await page.fill('#max-new-tokens', '100000');
      await page.click('#run');
      await page.waitForFunction(() => document.querySelector('#outputs .output')!.textContent!.length > 60);
      await page.click('#stop-gen');
      await page.waitForSelector('#outputs[data-tokens]', { timeout: 60_000 });
      expect(await page.textContent('#tps')).toContain('(stopped)');
      // untrusted text stays text
      await page.fill('#prompt', '<img src=x onerror="window.pwned=1">');
      await page.fill('#max-new-tokens', '2');
      await page.click('#run');
      await page.waitForSelector('#outputs[data-tokens]');
      expect(await page.locator('#outputs img').count()).toBe(0);
      expect(await page.textContent('#outputs')).toContain('<img src=x');
      // LoRA: adapters on the frozen (fine-tuned) weights; the adapter downloads as peft files, and the
      // merged download moves the adapted matrices but not the frozen embeddings
      await page.check('#lora');
      await page.fill('#lora-r', '4');
      expect(await finetune(page, 6, 0)).toHaveLength(6);
      expect(await page.textContent('#lora-status')).toMatch(/^LoRA r=4: 8,192 of [\d,]+ parameters trained$/);
      const [adapterDownload] = await Promise.all([page.waitForEvent('download'), page.click('#download-adapter')]);
      const adapter = unzipSync(new Uint8Array(readFileSync((await adapterDownload.path())!)));
      expect(Object.keys(adapter).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
      expect(JSON.parse(new TextDecoder().decode(adapter['adapter_config.json']))).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, fan_in_fan_out: true });
      const adapterSt = parseSafetensors(adapter['adapter_model.safetensors']);
      expect(adapterSt.tensors.get('base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight')!.shape).toEqual([256, 4]);
      expect(adapterSt.float32('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight').some((v) => v !== 0)).toBe(true); // trained from zeros
      const [mergedDownload] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const merged = parseSafetensors(unzipSync(new Uint8Array(readFileSync((await mergedDownload.path())!)))['model.safetensors']);
      expect(merged.float32('transformer.wte.weight')).toEqual(tuned.float32('transformer.wte.weight'));
      expect(merged.float32('transformer.h.0.attn.c_attn.weight')).not.toEqual(tuned.float32('transformer.h.0.attn.c_attn.weight'));
      await page.uncheck('#lora');
      // int8 weights: the same greedy tokens (int8 moves gpt2-tiny's logits by < 0.05, its smallest top-2 gap is 0.19); generation only
      await loadTiny(page, 'wasm', 'int8');
      expect(await page.textContent('#model-info')).toContain('int8 weights (generation only)');
      expect(await greedy(page)).toEqual([...ref.int32('greedy.tokens')]);
      expect(await page.isDisabled('#download')).toBe(true);
      await page.click('#train');
      await page.waitForFunction(() => document.querySelector('#messages')!.textContent!.includes('int8 weights, which only generate'));
      // a malformed model file gives a message, not a frozen tab
      const dir = join(OUT, 'bad-model');
      mkdirSync(dir, { recursive: true });
      for (const f of ['config.json', 'vocab.json', 'merges.txt']) writeFileSync(join(dir, f), readFileSync(join(ROOT, 'fixtures/gpt2-tiny', f)));
      writeFileSync(join(dir, 'model.safetensors'), readFileSync(join(ROOT, 'fixtures/gpt2-tiny/model.safetensors')).subarray(0, 100_000));
      await page.setInputFiles('#files', ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt'].map((f) => join(dir, f)));
      await page.waitForFunction(() => document.querySelector('#messages')!.textContent!.includes('model.safetensors'));
      expect(await page.textContent('#messages')).toMatch(/model\.safetensors is not a valid safetensors file: .*truncated/);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 600_000);

  it('WebGPU (SwiftShader): loads, generates the fixture greedy tokens, fine-tunes, and again with f16 weights', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_FLAGS, ...WEBGPU_FLAGS] });
    try {
      const { page, errors } = await open(browser);
      await loadTiny(page, 'webgpu');
      expect(await page.textContent('#backend')).toMatch(/backend: webgpu \(chosen\)/);
      expect(await greedy(page)).toEqual([...ref.int32('greedy.tokens')]);
      await page.screenshot({ path: join(OUT, 'playground-webgpu-generate.png'), fullPage: true });
      const losses = await finetune(page, 4, 0);
      expect(losses.length).toBe(4);
      expect(losses[3]).toBeLessThan(losses[0]);
      await page.screenshot({ path: join(OUT, 'playground-webgpu-finetune.png'), fullPage: true });
      // reloaded (fresh weights) with f16 weights: the greedy tokens still equal the fixture
      await page.selectOption('#backend-choice', 'webgpu-f16');
      await page.click('#load');
      await page.waitForFunction(() => document.querySelector('#backend')!.textContent!.includes('f16 weights'), undefined, { timeout: 120_000 });
      expect(await greedy(page)).toEqual([...ref.int32('greedy.tokens')]);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 900_000);
});
