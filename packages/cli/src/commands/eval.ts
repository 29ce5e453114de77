// gpt2 eval: mean loss, perplexity and next-token accuracy of a text under a model (HF's labels=ids loss when the text
// fits in the context, its strided-window recipe when it does not).
import { readFile } from 'node:fs/promises';
import { GPT2Error, perplexity, type Precision } from '@gpt2/core';
import { openBackend } from '../backends.js';
import { expandPaths } from '../corpus.js';
import { checkGenerationMemory, instantiate, readModel, weightFormat } from '../model-source.js';
import { Reporter } from '../report.js';

export async function runEval(f: { model?: string; adapter?: string; data: string; backend: string; threads?: number; precision?: Precision; quantize?: 'int8'; stride?: number; json?: boolean }): Promise<void> {
  const report = new Reporter(Boolean(f.json));
  const weights = weightFormat(f);
  if (!f.model && !f.adapter) throw new GPT2Error('Give the model to evaluate with --model (a folder or hub id), or a LoRA adapter with --adapter.');
  const read = await readModel(f.model, report, f.adapter);
  const { backend } = await openBackend(f);
  checkGenerationMemory(backend, read.config, weights);
  const { model, tokenizer } = await instantiate(backend, read, weights);
  const files = await expandPaths([f.data]);
  let text = '';
  for (const file of files) {
    try {
      text += new TextDecoder('utf-8', { fatal: true }).decode(await readFile(file));
    } catch (err) {
      if (err instanceof TypeError) throw new GPT2Error(`${file} is not UTF-8 text; convert it first.`);
      throw err;
    }
  }
  const ids = tokenizer.encode(text, { specials: true });
  const r = await perplexity(model, ids, f.stride);
  if (f.json) process.stdout.write(JSON.stringify({ loss: r.loss, perplexity: r.perplexity, accuracy: r.accuracy, tokens: r.tokens, weights }) + '\n');
  else process.stdout.write(`loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(3)}  accuracy ${(100 * r.accuracy).toFixed(2)}%  (${r.tokens} tokens, ${backend.name}${weights === 'int8' ? ', int8 weights' : ''})\n`);
}
