// A training run's directory: run.json (what it ran with), metrics.jsonl, loss.svg, and
// checkpoint-NNNNNNNN/ folders. A checkpoint is an HF model directory (config.json,
// model.safetensors, vocab.json, merges.txt) plus optimizer.safetensors (AdamW m, v, step) and
// trainer_state.json (step, data RNG): everything needed to continue exactly. Each is written
// under a temporary name and renamed into place, so an interrupted save never replaces a good one.
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { configToJson, GPT2Error, paramsToSafetensors, parseSafetensors, serializeSafetensors, type GPT2, type GPT2Config, type Tokenizer, type TrainerState } from '@gpt2/core';
import { loadModelDir, loadTokenizerDir, writeFileAtomic } from '@gpt2/core/node';

const CKPT = /^checkpoint-(\d+)$/;

/** Writes an HF-format model directory (plus optional extra files) atomically: built aside, then renamed over. */
export async function writeModelDir(dir: string, model: GPT2, tok: Tokenizer, extra: Record<string, string | Uint8Array> = {}): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const files: Record<string, string | Uint8Array> = {
    'config.json': JSON.stringify(configToJson(model.config), null, 2) + '\n',
    'model.safetensors': paramsToSafetensors(model.config, await model.readParams()),
    'vocab.json': tok.vocabJson(),
    'merges.txt': tok.mergesTxt(),
    ...extra,
  };
  for (const [name, data] of Object.entries(files)) await writeFile(join(tmp, name), data);
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) await rename(dir, old);
  await rename(tmp, dir);
  await rm(old, { recursive: true, force: true });
}

export class RunDir {
  constructor(readonly dir: string) {}

  async init(runInfo: object, resumed: boolean): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    if (!resumed) await rm(join(this.dir, 'metrics.jsonl'), { force: true });
    await writeFileAtomic(join(this.dir, 'run.json'), JSON.stringify(runInfo, null, 2) + '\n');
  }

  async metric(m: object): Promise<void> {
    await appendFile(join(this.dir, 'metrics.jsonl'), JSON.stringify(m) + '\n');
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

  /** Saves a checkpoint for `state.step` and keeps only the newest `keep`. */
  async saveCheckpoint(model: GPT2, tok: Tokenizer, state: TrainerState, keep: number): Promise<string> {
    const dir = join(this.dir, `checkpoint-${String(state.step).padStart(8, '0')}`);
    const opt = await model.readOptimizerState();
    const extra: Record<string, string | Uint8Array> = { 'trainer_state.json': JSON.stringify(state) + '\n' };
    if (opt) {
      extra['optimizer.safetensors'] = serializeSafetensors(
        [{ name: 'adamw.m', shape: [opt.m.length], data: opt.m }, { name: 'adamw.v', shape: [opt.v.length], data: opt.v }],
        { step: String(opt.step), layout: 'gpt2.ts PARAM_SPECS flat order' },
      );
    }
    await writeModelDir(dir, model, tok, extra);
    const all = this.checkpoints();
    for (const old of all.slice(0, Math.max(0, all.length - keep))) await rm(old, { recursive: true, force: true });
    return dir;
  }
}

export interface Checkpoint {
  config: GPT2Config;
  params: Float32Array;
  tokenizer: Tokenizer;
  optimizer?: { m: Float32Array; v: Float32Array; step: number };
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
  const { config, params } = await loadModelDir(dir);
  const state = JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  let optimizer;
  const optPath = join(dir, 'optimizer.safetensors');
  if (existsSync(optPath)) {
    const st = parseSafetensors(await readFile(optPath), optPath);
    optimizer = { m: st.float32('adamw.m'), v: st.float32('adamw.v'), step: Number(st.metadata.step) };
  }
  return { config, params, tokenizer: await loadTokenizerDir(dir), optimizer, state };
}
