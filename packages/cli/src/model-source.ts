// Where a model comes from: a local HF-format directory, a hub id (through the HF cache), or a
// random initialisation of a named size (--init gpt2 | gpt2-medium | ... | CONFIG.json).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';
import {
  ADAPTER_CONFIG, checkpointIoMemory, describeMemory, generationMemory, GPT2, GPT2Error, LORA_TARGETS, mergeLoraTensor, trainingMemory, type MemoryPlan, paramLayout, paramReader, paramsFrom, parseConfig, presetConfig, tensorsFrom,
  type Adapter, type Backend, type GPT2Config, type LoraConfig, type ParamName, type Tokenizer, type WeightFormat,
} from '@gpt2/core';
import { gpt2Tokenizer, isAdapterDir, loadAdapterDir, loadTokenizerDir, openModelDir } from '@gpt2/core/node';
import { downloadModel, hubOptionsFromEnv } from './hub.js';
import type { BackendFlags } from './backends.js';
import type { Reporter } from './report.js';

/** A local directory path, or the snapshot directory of a hub id (downloaded if needed). */
export async function resolveModelDir(model: string, report?: Reporter): Promise<string> {
  if (existsSync(model)) {
    if (!statSync(model).isDirectory()) throw new GPT2Error(`${model} is a file; pass the directory that holds config.json and model.safetensors.`);
    return model;
  }
  if (model.startsWith('.') || model.startsWith('/') || model.split('/').length > 2) {
    throw new GPT2Error(`Model directory ${model} does not exist; pass a folder with config.json and model.safetensors, or a hub id.`);
  }
  const o = hubOptionsFromEnv();
  const progress = report?.bytes(`downloading ${model}`);
  o.onProgress = (file, done, total) => progress?.(file, done, total);
  try {
    return await downloadModel(model, o);
  } finally {
    report?.endBytes();
  }
}

/** The tokenizer files of a directory, or GPT-2's stock tokenizer when it has none and the vocabulary is GPT-2's. */
export async function tokenizerFor(dir: string | undefined, config: GPT2Config, report?: Reporter): Promise<Tokenizer> {
  const has = dir && (existsSync(join(dir, 'tokenizer.json')) || (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))));
  const tok = has ? await loadTokenizerDir(dir!) : undefined;
  if (tok) {
    if (tok.vocabSize > config.vocabSize) {
      throw new GPT2Error(`The tokenizer in ${dir} has ${tok.vocabSize} tokens but the model only ${config.vocabSize}; they do not belong together.`);
    }
    return tok;
  }
  if (config.vocabSize === 50257) {
    if (dir) report?.warn(`${dir} has no tokenizer files; using GPT-2's stock tokenizer.`);
    return gpt2Tokenizer();
  }
  throw new GPT2Error(`${dir ?? 'The model'} has no vocab.json + merges.txt (or tokenizer.json) and its vocabulary is not GPT-2's; add the tokenizer files.`);
}

/** The model a sampling command runs (generate, serve) and the backend it runs on. */
export interface ModelFlags extends BackendFlags {
  model?: string;
  adapter?: string;
  quantize?: 'int8';
}

export interface LoadedModel {
  model: GPT2;
  tokenizer: Tokenizer;
  dir?: string;
}

/** The base model a peft adapter folder records (base_model_name_or_path). */
export function adapterBase(adapterDir: string): string {
  const path = join(adapterDir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw new GPT2Error(`${adapterDir} holds no ${ADAPTER_CONFIG}; pass the folder a LoRA fine-tune saved (its model/, best/ or a checkpoint).`);
  let base: unknown;
  try {
    base = (JSON.parse(readFileSync(path, 'utf8')) as { base_model_name_or_path?: unknown }).base_model_name_or_path;
  } catch {
    throw new GPT2Error(`${path} is not valid JSON; re-save the adapter.`);
  }
  if (typeof base !== 'string' || base === '') throw new GPT2Error(`The adapter in ${adapterDir} does not record its base model; pass it with --model.`);
  return base;
}

/**
 * Opens a model and reads its tokenizer from a directory or the hub, before any backend starts:
 * config.json and the weight files' headers are read and checked, the weights themselves later,
 * one tensor at a time (modelTensors). With a LoRA adapter (or an adapter folder given as the
 * model) the base is --model, else the one the adapter records, and each adapted weight gets the
 * adapter folded in as it is read (peft's merge_and_unload).
 */
export async function readModel(model: string | undefined, report?: Reporter, adapter?: string) {
  if (model && !adapter && existsSync(model) && isAdapterDir(model)) [adapter, model] = [model, undefined];
  const base = model ?? (adapter ? adapterBase(adapter) : 'gpt2');
  const dir = await resolveModelDir(base, report);
  const { config, store } = await openModelDir(dir);
  const tokenizer = await tokenizerFor(dir, config, report);
  if (!adapter) return { config, store, tokenizer, dir, base };
  const a: Adapter = await loadAdapterDir(adapter, config);
  report?.line(`adapter: ${adapter} (LoRA r=${a.config.r}, alpha ${a.config.alpha} on ${a.config.targets.join(', ')}) merged into ${base}`);
  return { config, store, tokenizer, dir, base, adapter: a };
}

export type ReadModel = Awaited<ReturnType<typeof readModel>>;

/** One parameter tensor of a read model at a time (the adapter folded in where it adapts). */
export function modelTensorReader(m: ReadModel): (name: ParamName, layer: number) => Promise<Float32Array> {
  const read = paramReader(m.config, m.store);
  const a = m.adapter;
  return a ? async (name, layer) => mergeLoraTensor(m.config, a.config, a.params, name, layer, await read(name, layer)) : read;
}

/** The whole model in one flat buffer (the ONNX export, which builds the graph in memory). */
export const readParams = (m: ReadModel): Promise<Float32Array> => paramsFrom(m.config, tensorsFrom(m.config, modelTensorReader(m)));

/** The weight format --quantize asks for; int8 computes in fp32, so it refuses a reduced --precision. */
export function weightFormat(f: { quantize?: string; precision?: string }): WeightFormat {
  if (!f.quantize) return 'fp32';
  if (f.precision && f.precision !== 'fp32') throw new GPT2Error(`--quantize int8 keeps fp32 arithmetic (int8 weights, fp32 activations); drop --precision ${f.precision}.`);
  return 'int8';
}

/** The model on a backend, its weights uploaded (or quantized) one tensor at a time as they are read. */
export async function instantiate(backend: Backend, m: ReadModel, weights: WeightFormat = 'fp32', lora?: { config: LoraConfig; params: Float32Array; seed?: number }): Promise<LoadedModel> {
  const model = await GPT2.load(backend, m.config, tensorsFrom(m.config, modelTensorReader(m)), { weights, lora });
  return { model, tokenizer: m.tokenizer, dir: m.dir };
}

/** What a backend can hold: the machine's available memory for cpu (and reference), WebAssembly's 4 GiB for wasm; unknown for GPUs. */
function memoryLimit(backend: Backend): { bytes: number; says: string } | undefined {
  if (backend.name === 'cpu' || backend.name === 'reference') return { bytes: freemem(), says: `this machine has ${gib(freemem())} available` };
  if (backend.name === 'wasm') return { bytes: 4 * 2 ** 30, says: `WebAssembly's memory stops at 4 GiB` };
  return undefined;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Refuses, before anything is allocated, a model that cannot fit: `plan` (memory.ts) plus one
 * tensor of checkpoint I/O against what the backend can hold. `what` names the work, `advice` says
 * what fits instead.
 */
export function checkMemory(backend: Backend, config: GPT2Config, plan: MemoryPlan, what: string, advice: string, weights: WeightFormat = 'fp32'): void {
  const limit = memoryLimit(backend);
  const io = checkpointIoMemory(config, weights);
  if (!limit || plan.total + io <= limit.bytes) return;
  throw new GPT2Error(`${what} needs about ${describeMemory(plan)} and ${gib(io)} to read or save the weights a tensor at a time, but ${limit.says}; ${advice}.`);
}

/** The check before a full fine-tune or LoRA run of B x T: past the limit, it points to LoRA (and what that needs). */
export function checkTrainingMemory(backend: Backend, config: GPT2Config, B: number, T: number, lora?: LoraConfig, scratch = false, zeroRanks?: number): void {
  const bf16Copies = backend.bf16Copies;
  const loraPlan = trainingMemory(config, B, T, { lora: { r: 8, alpha: 16, dropout: 0, targets: [...LORA_TARGETS] }, bf16Copies });
  const advice = lora || scratch
    ? `lower --batch-size or --block-size, or use a smaller model`
    : `train LoRA adapters instead (--lora-r 8 needs about ${gib(loraPlan.total + checkpointIoMemory(config))}), lower --batch-size or --block-size, or use a smaller model`;
  checkMemory(backend, config, trainingMemory(config, B, T, { lora, zeroRanks, bf16Copies }), `${lora ? 'LoRA fine-tuning' : 'Training all the weights of'} this ${paramLayout(config).count.toLocaleString('en')}-parameter model at batch ${B} x ${T}`, advice);
}

/** The check before generating or evaluating: the weights and a cache for one sequence of the whole context. */
export function checkGenerationMemory(backend: Backend, config: GPT2Config, weights: WeightFormat): void {
  const advice = weights === 'fp32' ? 'load it with --quantize int8 (a quarter of the weight bytes), or use the cpu backend or a smaller model' : 'use the cpu backend or a smaller model';
  checkMemory(backend, config, generationMemory(config, 1, config.nPositions, weights, backend.bf16Copies), `Running this ${paramLayout(config).count.toLocaleString('en')}-parameter model${weights === 'int8' ? ' with int8 weights' : ''}`, advice, weights);
}

/** A config from a preset name or a config.json path. */
export function initConfig(init: string): GPT2Config {
  if (init.endsWith('.json') || existsSync(init)) {
    if (!existsSync(init)) throw new GPT2Error(`${init} does not exist; give a preset (gpt2, gpt2-medium, ...) or a config.json.`);
    return parseConfig(readFileSync(init, 'utf8'), init);
  }
  return presetConfig(init);
}
