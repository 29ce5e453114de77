// gpt2 merge: a base model with a LoRA adapter folded in (peft's merge_and_unload), written as a
// plain HF model folder that every tool loads without peft; written aside and renamed into place.
import { configToJson, GPT2Error, paramsToSafetensors } from '@gpt2/core';
import { readModel } from '../model-source.js';
import { Reporter } from '../report.js';
import { checkOutDir, SaveError, writeDirAside } from '../run-dir.js';

export interface MergeFlags {
  model?: string;
  adapter: string;
  out: string;
  force?: boolean;
  json?: boolean;
}

export async function runMerge(f: MergeFlags): Promise<void> {
  checkOutDir(f.out, f.force);
  const report = new Reporter(Boolean(f.json));
  const { config, params, tokenizer, base } = await readModel(f.model, report, f.adapter);
  const files = {
    'config.json': JSON.stringify(configToJson(config), null, 2) + '\n',
    'model.safetensors': paramsToSafetensors(config, params),
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
