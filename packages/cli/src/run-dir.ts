// A training run's directory: run.json (what it ran with), metrics.jsonl, loss.svg, and
// checkpoint-NNNNNNNN/ folders. A checkpoint is an HF model directory (config.json,
// model.safetensors, vocab.json, merges.txt) plus optimizer.safetensors (AdamW m, v, step) and
// trainer_state.json (step, data RNG): everything needed to continue exactly. Each is written
// under a temporary name and renamed into place, so an interrupted save never replaces a good one.
// One run per folder: a training process holds run.lock (pid, host, start) while it runs.
// best/ holds the model of the best evaluation (lowest validation loss), beside the last N
// checkpoints and never removed by --keep.
import { createReadStream, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statfsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { appendFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapterConfigJson, adapterToSafetensors, configToJson, GPT2Error, modelWeightFiles, openSafetensors, paramTensorsToWrite, safetensorsFile,
  type Evaluation, type GPT2, type GPT2Config, type SafeTensorsFile, type StreamedFile, type TensorStore, type Tokenizer, type TrainerState,
} from '@gpt2/core';
import { fileSource, isAdapterDir, loadTokenizerDir, openModelDir, writeFileAtomic } from '@gpt2/core/node';

const CKPT = /^checkpoint-(\d+)$/;

/** A save that could not be made (no space, a read-only folder, a quota): nothing of it is left. */
export class SaveError extends GPT2Error {}

const mb = (bytes: number) => (bytes >= 1e5 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} KB`);
const freeBytes = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/**
 * Writes an HF-format model directory (plus optional extra files) atomically: built aside, then
 * renamed over. A model with LoRA adapters is written as a peft adapter folder instead (adapter
 * files and the tokenizer; `base` is the base model it records).
 */
export async function writeModelDir(
  dir: string, model: GPT2, tok: Tokenizer, extra: Record<string, FileData> = {}, base: string | null = null, maxShardSize?: string,
): Promise<void> {
  const weights: Record<string, FileData> = model.lora
    ? {
        [ADAPTER_CONFIG]: adapterConfigJson(model.lora.config, base),
        [ADAPTER_WEIGHTS]: adapterToSafetensors(model.config, model.lora.config, await model.readAdapter()),
      }
    : {
        'config.json': JSON.stringify(configToJson(model.config), null, 2) + '\n',
        // each tensor read from the device as the file gets to it: saving holds one tensor, not the model
        ...modelWeightFiles(paramTensorsToWrite(model.config, (name, layer) => model.readTensor(name, layer)), maxShardSize),
      };
  const files: Record<string, FileData> = {
    ...weights,
    'vocab.json': tok.vocabJson(),
    'merges.txt': tok.mergesTxt(),
    ...extra,
  };
  await writeDirAside(dir, files);
}

/** An --out folder a command creates: refused if it is a file, or holds anything and --force is not given. */
export function checkOutDir(out: string, force?: boolean): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new GPT2Error(`${out} is a file; --out names the folder to create.`);
  if (readdirSync(out).length > 0 && !force) throw new GPT2Error(`${out} exists and is not empty; choose another --out, or pass --force to replace it.`);
}

/** A file's contents: text, bytes, bytes in pieces written one after another, or a file streamed as it is written. */
export type FileData = string | Uint8Array | Uint8Array[] | StreamedFile;

const isStreamed = (d: FileData): d is StreamedFile => typeof d === 'object' && 'chunks' in d;

export const byteSize = (d: FileData): number =>
  typeof d === 'string' ? Buffer.byteLength(d) : Array.isArray(d) ? d.reduce((n, p) => n + p.byteLength, 0) : isStreamed(d) ? d.size : d.byteLength;

/** An existing file as FileData, copied a chunk at a time (best/ into model/). */
export function fileCopy(path: string): StreamedFile {
  return {
    size: statSync(path).size,
    async *chunks() {
      for await (const c of createReadStream(path, { highWaterMark: 16 << 20 })) yield c as Buffer;
    },
  };
}

/** Writes one file as PATH.tmp-PID, then renames it over path; the free space is checked first, as writeDirAside does. */
export async function writeFileAside(path: string, data: FileData): Promise<void> {
  const needed = byteSize(data);
  await mkdir(dirname(path), { recursive: true });
  const free = freeBytes(dirname(path));
  if (needed > free) throw new SaveError(`Not enough space to write ${path}: it needs ${mb(needed)} and ${dirname(path)} has ${mb(free)} free`);
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, Array.isArray(data) ? data.values() : isStreamed(data) ? data.chunks() : data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    const e = err as NodeJS.ErrnoException;
    throw new SaveError(`Writing ${path} failed (${e.code ?? e.message}): it needs ${mb(needed)} and ${dirname(path)} has ${mb(freeBytes(dirname(path)))} free`);
  }
}

/**
 * Writes files (paths relative to dir) into DIR.tmp-PID, then renames it over dir. Checks the free space first; a write
 * that fails anyway removes the temporary folder. Either ends in a SaveError saying what was
 * written, what it needed and what is free.
 */
export async function writeDirAside(dir: string, files: Record<string, FileData>): Promise<void> {
  const needed = Object.values(files).reduce((n, d) => n + byteSize(d), 0);
  await mkdir(dirname(dir), { recursive: true });
  const free = freeBytes(dirname(dir));
  if (needed > free) throw new SaveError(`Not enough space to write ${dir}: it needs ${mb(needed)} and ${dirname(dir)} has ${mb(free)} free`);
  const tmp = `${dir}.tmp-${process.pid}`;
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    for (const [name, data] of Object.entries(files)) {
      await mkdir(dirname(join(tmp, name)), { recursive: true });
      await writeFile(join(tmp, name), Array.isArray(data) ? data.values() : isStreamed(data) ? data.chunks() : data); // an array: its pieces in order
    }
    const old = `${dir}.old-${process.pid}`;
    if (existsSync(dir)) await rename(dir, old);
    await rename(tmp, dir);
    await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    const e = err as NodeJS.ErrnoException;
    throw new SaveError(`Writing ${dir} failed (${e.code ?? e.message}): it needs ${mb(needed)} and ${dirname(dir)} has ${mb(freeBytes(dirname(dir)))} free`);
  }
}

const RUN_FILES = ['run.json', 'metrics.jsonl', 'loss.svg', 'model', 'best'];

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a zombie (killed but not yet reaped: an mpirun rank once mpirun has gone) holds nothing
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (macOS)
  }
}

export class RunDir {
  /** Under LoRA: the base model the adapters record (adapter_config.json's base_model_name_or_path). */
  adapterBase: string | null = null;
  /** Weights past this size are written as shards (--max-shard-size). */
  maxShardSize?: string;

  constructor(readonly dir: string) {}

  /** Whether the folder already holds a run: its run.json, metrics, loss curve, model or checkpoints. */
  holdsRun(): boolean {
    return RUN_FILES.some((f) => existsSync(join(this.dir, f))) || this.checkpoints().length > 0;
  }

  /**
   * Takes the folder's lock for this process until it exits (run.lock, created whole with link(2),
   * so a reader never sees half of it). A lock whose process is gone is taken over; the returned
   * line says so. A live holder ends this run in one sentence.
   */
  lock(): string | undefined {
    mkdirSync(this.dir, { recursive: true });
    const path = join(this.dir, 'run.lock'), mine = `${path}.${process.pid}`;
    const me: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
    writeFileSync(mine, JSON.stringify(me) + '\n');
    let note: string | undefined;
    try {
      for (;;) {
        try {
          linkSync(mine, path);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        let held: LockInfo | undefined;
        try {
          held = JSON.parse(readFileSync(path, 'utf8')) as LockInfo;
        } catch {
          held = undefined; // unreadable: not written by us; taken over
        }
        if (held && held.host !== me.host) {
          throw new GPT2Error(`${this.dir} is in use by process ${held.pid} on ${held.host} (since ${held.started}); if that process is gone, delete ${path} and run this again.`);
        }
        if (held && alive(held.pid)) {
          throw new GPT2Error(`${this.dir} is in use by process ${held.pid} (training since ${held.started}); wait for it to finish or stop it, then run this again.`);
        }
        note = `note: took over ${path} from process ${held?.pid ?? '(unknown)'}, which is gone`;
        unlinkSync(path);
      }
    } finally {
      unlinkSync(mine);
    }
    process.on('exit', () => {
      try {
        if ((JSON.parse(readFileSync(path, 'utf8')) as LockInfo).pid === process.pid) unlinkSync(path);
      } catch {
        // already gone
      }
    });
    return note;
  }

  /** Removes the temporary folders of saves whose process is gone (a crash or kill mid-save); returns their names. */
  async removeStale(): Promise<string[]> {
    const stale = existsSync(this.dir) ? readdirSync(this.dir).filter((d) => {
      const m = /\.(?:tmp|old)-(\d+)$/.exec(d);
      return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
    }) : [];
    for (const d of stale) await rm(join(this.dir, d), { recursive: true, force: true });
    return stale;
  }

  /** Removes an old run's files (--overwrite), leaving anything else in the folder alone. */
  async clear(): Promise<void> {
    for (const p of [...RUN_FILES.map((f) => join(this.dir, f)), ...this.checkpoints()]) await rm(p, { recursive: true, force: true });
  }

  /** Writes run.json (a new run's folder holds no old run: runTraining refuses one, or --overwrite cleared it). */
  async init(runInfo: object): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(join(this.dir, 'run.json'), JSON.stringify(runInfo, null, 2) + '\n');
  }

  async metric(m: object): Promise<void> {
    const path = join(this.dir, 'metrics.jsonl');
    try {
      await appendFile(path, JSON.stringify(m) + '\n');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new SaveError(`Writing ${path} failed (${e.code ?? e.message}) with ${mb(freeBytes(this.dir))} free on its disk`);
    }
  }

  /** On resume: drops the metrics of steps past the checkpoint (a run killed after it logged them), so no step appears twice. */
  async forgetMetricsAfter(step: number): Promise<void> {
    const kept = (await this.readMetrics()).filter((m) => m.step <= step);
    await writeFileAtomic(join(this.dir, 'metrics.jsonl'), kept.map((m) => JSON.stringify(m) + '\n').join(''));
  }

  async readMetrics(): Promise<Record<string, number>[]> {
    const p = join(this.dir, 'metrics.jsonl');
    if (!existsSync(p)) return [];
    return (await readFile(p, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }

  checkpoints(): string[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir).filter((d) => CKPT.test(d)).sort().map((d) => join(this.dir, d));
  }

  /** best/: the model of the evaluation with the lowest validation loss so far, with best.json saying which. */
  async saveBest(model: GPT2, tok: Tokenizer, e: Evaluation): Promise<void> {
    await writeModelDir(join(this.dir, 'best'), model, tok, { 'best.json': JSON.stringify(e) + '\n' }, this.adapterBase, this.maxShardSize);
  }

  /** model/ as a copy of best/'s model files (--final best). */
  async copyBestTo(dir: string): Promise<void> {
    const files: Record<string, FileData> = {};
    for (const f of readdirSync(join(this.dir, 'best'))) if (f !== 'best.json') files[f] = fileCopy(join(this.dir, 'best', f));
    await writeDirAside(dir, files);
  }

  /** Adds fields to run.json (the best evaluation, what model/ holds, an early stop). */
  async record(fields: object): Promise<void> {
    const path = join(this.dir, 'run.json');
    const info = JSON.parse(await readFile(path, 'utf8')) as object;
    await writeFileAtomic(path, JSON.stringify({ ...info, ...fields }, null, 2) + '\n');
  }

  /** model/: the final weights. */
  async saveModel(model: GPT2, tok: Tokenizer): Promise<void> {
    await writeModelDir(join(this.dir, 'model'), model, tok, {}, this.adapterBase, this.maxShardSize);
  }

  /** A file of the run (loss.svg), written aside and renamed. */
  async writeFile(name: string, data: string): Promise<void> {
    await writeFileAtomic(join(this.dir, name), data);
  }

  checkpointDir(step: number): string {
    return join(this.dir, `checkpoint-${String(step).padStart(8, '0')}`);
  }

  /** Saves a checkpoint for `state.step` and keeps only the newest `keep`. */
  async saveCheckpoint(model: GPT2, tok: Tokenizer, state: TrainerState, keep: number): Promise<string> {
    const dir = this.checkpointDir(state.step);
    const extra: Record<string, FileData> = { 'trainer_state.json': JSON.stringify(state) + '\n' };
    if (model.hasOptimizerState) {
      // the moments a piece at a time from the device, as two flat tensors in the layout's order
      const n = model.optimizerLength;
      extra['optimizer.safetensors'] = safetensorsFile(
        [{ name: 'adamw.m', shape: [n], dtype: 'F32', data: () => model.optimizerChunks('m') }, { name: 'adamw.v', shape: [n], dtype: 'F32', data: () => model.optimizerChunks('v') }],
        { step: String(model.step), layout: 'gpt2.ts PARAM_SPECS flat order' },
      );
    }
    await writeModelDir(dir, model, tok, extra, this.adapterBase, this.maxShardSize);
    const all = this.checkpoints();
    for (const old of all.slice(0, Math.max(0, all.length - keep))) await rm(old, { recursive: true, force: true });
    return dir;
  }
}

/**
 * The run folder on ranks other than 0 of a data-parallel job: rank 0 writes everything; these write
 * nothing, and take part only in what saving needs of them (ZeRO-1's moments, gathered to rank 0).
 */
export class FollowerRunDir extends RunDir {
  override lock(): undefined {
    return undefined;
  }
  override async removeStale(): Promise<string[]> {
    return [];
  }
  override async clear(): Promise<void> {}
  override async init(): Promise<void> {}
  override async metric(): Promise<void> {}
  override async forgetMetricsAfter(): Promise<void> {}
  override async readMetrics(): Promise<Record<string, number>[]> {
    return [];
  }
  override async saveBest(): Promise<void> {}
  override async copyBestTo(): Promise<void> {}
  override async record(): Promise<void> {}
  override async saveModel(): Promise<void> {}
  override async writeFile(): Promise<void> {}
  override async saveCheckpoint(model: GPT2, _tok: Tokenizer, state: TrainerState): Promise<string> {
    if (model.optimizerState?.hasState) for (const which of ['m', 'v'] as const) for await (const _ of model.optimizerChunks(which));
    return this.checkpointDir(state.step);
  }
}

export interface Checkpoint {
  /** A LoRA checkpoint holds adapters, not weights: the base model they record (and no config or store). */
  adapterBase?: string;
  config?: GPT2Config;
  /** The weights, opened for reading tensor by tensor. */
  store?: TensorStore;
  tokenizer: Tokenizer;
  /** optimizer.safetensors, opened: AdamW's moments are read a piece at a time into the model (loadOptimizer). */
  optimizer?: { file: SafeTensorsFile; step: number };
  state: TrainerState;
}

/** A checkpoint directory, or the newest checkpoint of a run directory. */
export function findCheckpoint(path: string): string {
  if (!existsSync(path)) throw new GPT2Error(`Nothing to resume at ${path}; pass a run directory or one of its checkpoint-* folders.`);
  if (existsSync(join(path, 'trainer_state.json'))) return path;
  const latest = new RunDir(path).checkpoints().at(-1);
  if (!latest) throw new GPT2Error(`${path} holds no checkpoint-* folder to resume from.`);
  return latest;
}

export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const lora = isAdapterDir(dir);
  const { config, store } = lora ? {} : await openModelDir(dir);
  const state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  let optimizer;
  const optPath = join(dir, 'optimizer.safetensors');
  if (existsSync(optPath)) {
    const file = await openSafetensors(await fileSource(optPath));
    optimizer = { file, step: Number(file.metadata.step) };
  }
  const adapterBase = lora ? (JSON.parse(await readFile(join(dir, ADAPTER_CONFIG), 'utf8')) as { base_model_name_or_path: string }).base_model_name_or_path : undefined;
  return { adapterBase, config, store, tokenizer: await loadTokenizerDir(dir), optimizer, state };
}

/** A checkpoint's AdamW moments into the model, a piece at a time, after checking they belong to it. */
export async function loadOptimizer(model: GPT2, opt: NonNullable<Checkpoint['optimizer']>): Promise<void> {
  const [m, v] = ['adamw.m', 'adamw.v'].map((name) => {
    const t = opt.file.tensors.get(name);
    if (!t) throw new GPT2Error(`${opt.file.source} has no '${name}'; the checkpoint is damaged.`);
    return t.shape.reduce((a, d) => a * d, 1);
  });
  if (m !== v) throw new GPT2Error(`${opt.file.source} holds ${m} values of adamw.m but ${v} of adamw.v; the checkpoint is damaged.`);
  await model.loadOptimizerChunks(m, async (which, offset, count) => opt.file.float32(`adamw.${which}`, [offset, count]), opt.step);
}
