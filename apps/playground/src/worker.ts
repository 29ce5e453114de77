// The model worker: holds the backend, model and tokenizer, and runs generation and
// fine-tuning off the page's thread. A 'stop' message ends either between two tokens or steps.
import {
  adapterConfigJson, adapterToSafetensors, checkLoraConfig, configToJson, generateStream, GPT2, GPT2Error, initLora, mergeLora, paramsFromSafetensors, collect, flatTensors, paramTensorsToWrite, safetensorsFile,
  parseConfig, parseSafetensors, splitTokens, Tokenizer, Trainer, transformersJsFiles, type Backend, type LoraConfig, type WeightFormat,
} from '@gpt2/core';
import { createWasmBackend } from '@gpt2/backend-wasm';
import { createWebGPUBackend } from '@gpt2/backend-webgpu';
import { zipSync } from 'fflate';
import type { BackendChoice, ExportFormat, FromWorker, ModelFiles, ToWorker } from './protocol.js';

const post = (m: FromWorker, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);

let backend: Backend | undefined;
let backendChoice: BackendChoice | undefined;
let model: GPT2 | undefined;
let tok: Tokenizer | undefined;
let stopRequested = false;

/** Lets queued messages (a 'stop') run: a macrotask, since awaiting resolved promises never yields to them. */
const yieldToMessages = () => new Promise<void>((r) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = () => r();
  ch.port2.postMessage(0);
});

async function openBackend(choice: BackendChoice): Promise<Backend> {
  const reasons: string[] = [];
  if (choice !== 'wasm') {
    try {
      const b = await createWebGPUBackend({ rejectSoftware: choice === 'auto', precision: choice === 'webgpu-f16' ? 'f16' : 'fp32' });
      post({ type: 'backend', name: 'webgpu', why: choice === 'auto' ? 'a WebGPU adapter is available' : 'chosen', details: b.describe() });
      return b;
    } catch (err) {
      if (choice !== 'auto') throw err;
      reasons.push(`WebGPU unavailable: ${(err as Error).message}`);
    }
  }
  const b = await createWasmBackend();
  post({ type: 'backend', name: 'wasm', why: reasons.join(' ') || 'chosen', details: b.describe() });
  return b;
}

function load(files: ModelFiles, weights: WeightFormat): void {
  const dec = new TextDecoder();
  const config = parseConfig(dec.decode(files.config), 'config.json');
  const params = paramsFromSafetensors(config, parseSafetensors(new Uint8Array(files.model), 'model.safetensors'));
  tok = Tokenizer.fromFiles(dec.decode(files.vocab), dec.decode(files.merges), 'vocab.json');
  if (tok.vocabSize > config.vocabSize) throw new GPT2Error(`The tokenizer has ${tok.vocabSize} tokens but the model only ${config.vocabSize}; the files do not belong together.`);
  model?.dispose();
  model = new GPT2(backend!, config, params, { weights });
  post({ type: 'loaded', params: model.numParams, vocab: config.vocabSize, context: config.nPositions, layers: config.nLayer, weights });
}

/** The loaded model, with its fp32 weights (fine-tuning and downloads need them). */
function fp32Model(): { model: GPT2; tok: Tokenizer } {
  if (!model || !tok) throw new GPT2Error('Load a model first.');
  if (model.weights === 'int8') throw new GPT2Error('The model was loaded with int8 weights, which only generate; load it with fp32 weights to fine-tune or download it.');
  return { model, tok };
}

async function generate(prompt: string, options: Extract<ToWorker, { type: 'generate' }>['options']): Promise<void> {
  if (!model || !tok) throw new GPT2Error('Load a model first.');
  const ids = tok.encode(prompt, { specials: true });
  let tokens = 0;
  const t0 = performance.now();
  for await (const e of generateStream(model, tok, ids, { ...options, onWarning: (message) => post({ type: 'warning', message }) })) {
    post({ type: 'text', sample: e.sample, text: e.text, done: e.done, tokens: e.tokens });
    if (e.tokens) tokens += e.tokens.length;
    await yieldToMessages();
    if (stopRequested) break;
  }
  post({ type: 'generated', tokensPerSecond: tokens / ((performance.now() - t0) / 1000), stopped: stopRequested });
}

async function finetune(m: Extract<ToWorker, { type: 'finetune' }>): Promise<void> {
  const { tok } = fp32Model();
  const model = await trainingModel(m.lora);
  if (m.text.trim() === '') throw new GPT2Error('Paste or drop some text to fine-tune on.');
  const ids = tok.encode(m.text, { specials: true });
  const block = Math.min(m.blockSize, model.config.nPositions, ids.length - 1);
  if (block < 1) throw new GPT2Error('The text is too short to train on.');
  if (block < m.blockSize) post({ type: 'warning', message: `Training on blocks of ${block} tokens (the text or the context is shorter than ${m.blockSize}).` });
  const { train, val } = splitTokens(ids, m.valSplit, block);
  if (m.valSplit > 0 && !val) post({ type: 'warning', message: 'The text is too short to hold out a validation part; training without one.' });
  const evaluate = async (step: number) => {
    if (!val) return;
    const { loss, accuracy } = await trainer.evaluate(val, 4);
    post({ type: 'eval', step, loss, accuracy });
  };
  const trainer = new Trainer(model, train, {
    batchSize: m.batchSize, blockSize: block, gradAccum: 1, steps: m.steps, lr: m.lr, warmup: 0, schedule: 'constant',
    weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, clip: 1, seed: 0,
  });
  await evaluate(0);
  while (trainer.step < m.steps && !stopRequested) {
    const r = await trainer.trainStep();
    post({ type: 'loss', step: r.step, loss: r.loss, tokensPerSecond: (r.tokens / r.ms) * 1000 });
    if (r.step % m.evalEvery === 0 || r.step === m.steps) await evaluate(r.step);
    if (m.sampleEvery > 0 && r.step % m.sampleEvery === 0) {
      let text = '';
      for await (const e of generateStream(model, tok, tok.encode('\n'), { temperature: 0.8, topK: 40, maxNewTokens: 40, seed: r.step })) text += e.text;
      post({ type: 'sample', step: r.step, text });
    }
    await yieldToMessages();
  }
  post({ type: 'trained', steps: trainer.step, stopped: stopRequested, lora: !!model.lora });
}

/** The loaded weights with any adapters folded in (peft's merge_and_unload). */
async function mergedParams(model: GPT2): Promise<Float32Array> {
  const params = await model.readParams();
  return model.lora ? mergeLora(model.config, params, model.lora.config, await model.readAdapter()) : params;
}

/**
 * The model the next fine-tuning trains: with `lora`, adapters on the frozen weights (kept when
 * the same rank and targets train on, so training continues), else all weights. A model whose
 * adapters would change is rebuilt on its merged weights, so nothing trained is lost.
 */
async function trainingModel(lora: { r: number; targets: LoraConfig['targets'] } | undefined): Promise<GPT2> {
  const { model: m } = fp32Model();
  const has = m.lora?.config;
  if (lora ? has && has.r === lora.r && has.targets.join() === lora.targets.join() : !has) return m;
  const config = m.config, params = await mergedParams(m);
  const lc: LoraConfig | undefined = lora && { r: lora.r, alpha: 2 * lora.r, dropout: 0, targets: lora.targets };
  if (lc) checkLoraConfig(config, lc); // before the loaded model goes
  m.dispose();
  model = undefined;
  model = new GPT2(backend!, config, params, { lora: lc && { config: lc, params: initLora(config, lc, 0) } });
  post({ type: 'adapters', trained: model.trainableParams, total: model.numParams, r: lc?.r ?? null });
  return model;
}

/** The model as a zip: HF files, the folder transformers.js loads (ONNX fp32 and q8, stored uncompressed: weights barely deflate), or the LoRA adapter as peft saves it. */
async function exportModel(format: ExportFormat): Promise<void> {
  const { model, tok } = fp32Model();
  const enc = new TextEncoder();
  if (format === 'adapter') {
    if (!model.lora) throw new GPT2Error('There is no adapter to download: fine-tune with LoRA first.');
    const zip = zipSync({
      'adapter_config.json': enc.encode(adapterConfigJson(model.lora.config, null)),
      'adapter_model.safetensors': adapterToSafetensors(model.config, model.lora.config, await model.readAdapter()),
    });
    return post({ type: 'exported', format, zip: zip.buffer as ArrayBuffer }, [zip.buffer as ArrayBuffer]);
  }
  const params = await mergedParams(model);
  const bytes = (d: string | Uint8Array | Uint8Array[]) => (typeof d === 'string' ? enc.encode(d) : Array.isArray(d) ? concat(d) : d);
  const zip = format === 'hf'
    ? zipSync({
      'config.json': enc.encode(JSON.stringify(configToJson(model.config), null, 2) + '\n'),
      'model.safetensors': await collect(safetensorsFile(paramTensorsToWrite(model.config, flatTensors(model.config, params)))),
      'vocab.json': enc.encode(tok.vocabJson()),
      'merges.txt': enc.encode(tok.mergesTxt()),
    })
    : zipSync(Object.fromEntries(Object.entries(transformersJsFiles(model.config, params, tok, { quantize: 'q8' })).map(([name, d]) => [name, bytes(d)])), { level: 0 });
  post({ type: 'exported', format, zip: zip.buffer as ArrayBuffer }, [zip.buffer as ArrayBuffer]);
}

function concat(pieces: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

let busy: Promise<void> = Promise.resolve();
self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === 'stop') {
    stopRequested = true;
    return;
  }
  busy = busy.then(async () => {
    stopRequested = false;
    try {
      if (m.type === 'load') {
        if (!backend || backendChoice !== m.backend) {
          model?.dispose();
          model = undefined;
          backend?.dispose();
          backend = await openBackend(m.backend);
          backendChoice = m.backend;
        }
        load(m.files, m.weights);
      } else if (m.type === 'generate') await generate(m.prompt, m.options);
      else if (m.type === 'finetune') await finetune(m);
      else if (m.type === 'export') await exportModel(m.format);
    } catch (err) {
      post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  });
};
