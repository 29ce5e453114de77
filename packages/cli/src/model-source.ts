// Where a model comes from: a local HF-format directory, a hub id (through the HF cache), or a
// random initialisation of a named size (--init gpt2 | gpt2-medium | ... | CONFIG.json).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ADAPTER_CONFIG, GPT2, GPT2Error, mergeLora, parseConfig, presetConfig, type Adapter, type Backend, type GPT2Config, type Tokenizer, type WeightFormat } from '@gpt2/core';
import { gpt2Tokenizer, isAdapterDir, loadAdapterDir, loadModelDir, loadTokenizerDir } from '@gpt2/core/node';
import { downloadModel, hubOptionsFromEnv } from './hub.js';
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
 * Reads a model and its tokenizer from a directory or the hub, before any backend starts. With a
 * LoRA adapter (or an adapter folder given as the model) the base is --model, else the one the
 * adapter records, and `params` are the base with the adapter merged in (peft's merge_and_unload).
 */
export async function readModel(model: string | undefined, report?: Reporter, adapter?: string) {
  if (model && !adapter && existsSync(model) && isAdapterDir(model)) [adapter, model] = [model, undefined];
  const base = model ?? (adapter ? adapterBase(adapter) : 'gpt2');
  const dir = await resolveModelDir(base, report);
  const { config, params } = await loadModelDir(dir);
  const tokenizer = await tokenizerFor(dir, config, report);
  if (!adapter) return { config, params, tokenizer, dir, base };
  const a: Adapter = await loadAdapterDir(adapter, config);
  report?.line(`adapter: ${adapter} (LoRA r=${a.config.r}, alpha ${a.config.alpha} on ${a.config.targets.join(', ')}) merged into ${base}`);
  return { config, params: mergeLora(config, params, a.config, a.params), tokenizer, dir, base };
}

/** The weight format --quantize asks for; int8 computes in fp32, so it refuses a reduced --precision. */
export function weightFormat(f: { quantize?: string; precision?: string }): WeightFormat {
  if (!f.quantize) return 'fp32';
  if (f.precision && f.precision !== 'fp32') throw new GPT2Error(`--quantize int8 keeps fp32 arithmetic (int8 weights, fp32 activations); drop --precision ${f.precision}.`);
  return 'int8';
}

export function instantiate(backend: Backend, m: Awaited<ReturnType<typeof readModel>>, weights: WeightFormat = 'fp32'): LoadedModel {
  return { model: new GPT2(backend, m.config, m.params, { weights }), tokenizer: m.tokenizer, dir: m.dir };
}

/** A config from a preset name or a config.json path. */
export function initConfig(init: string): GPT2Config {
  if (init.endsWith('.json') || existsSync(init)) {
    if (!existsSync(init)) throw new GPT2Error(`${init} does not exist; give a preset (gpt2, gpt2-medium, ...) or a config.json.`);
    return parseConfig(readFileSync(init, 'utf8'), init);
  }
  return presetConfig(init);
}
