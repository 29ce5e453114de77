// gpt2 merge: a base model with a LoRA adapter folded in (peft's merge_and_unload), written as a
// plain HF model folder that every tool loads without peft; written aside and renamed into place.
import { configToJson, GPT2Error, modelWeightFiles, paramTensorsToWrite } from '@gpt2/core';
import { modelTensorReader, readModel } from '../model-source.js';
import { Reporter } from '../report.js';
import { checkOutDir, SaveError, writeDirAside } from '../run-dir.js';

export interface MergeFlags {
  model?: string;
  adapter: string;
  out: string;
  maxShardSize?: string;
  force?: boolean;
  json?: boolean;
}

export async function runMerge(f: MergeFlags): Promise<void> {
  checkOutDir(f.out, f.force);
  const report = new Reporter(Boolean(f.json));
  const read = await readModel(f.model, report, f.adapter);
  const { config, tokenizer, base } = read;
  const files = {
    'config.json': JSON.stringify(configToJson(config), null, 2) + '\n',
    // each merged tensor is read, merged and written in turn: the model is never held whole
    ...modelWeightFiles(paramTensorsToWrite(config, modelTensorReader(read)), f.maxShardSize),
    'vocab.json': tokenizer.vocabJson(),
    'merges.txt': tokenizer.mergesTxt(),
  };
  try {
    await writeDirAside(f.out, files);
  } catch (err) {
    if (err instanceof SaveError) throw new GPT2Error(`${err.message}; nothing was written: free some space or choose another --out.`);
    throw err;
  }
  if (f.json) process.stdout.write(JSON.stringify({ out: f.out, base, adapter: f.adapter }) + '\n');
  else process.stdout.write(`wrote ${f.out}: ${base} with ${f.adapter} merged in, a plain HF GPT-2 folder (gpt2 generate --model ${f.out})\n`);
}
