// gpt2 eval: mean loss, perplexity and next-token accuracy of a text under a model (HF's labels=ids loss when the text
// fits in the context, its strided-window recipe when it does not); with --task hellaswag, multiple-choice accuracy
// on HellaSwag's .jsonl items as llm.c's hellaswag.py scores them.
import { GPT2Error, parseChoiceItems, perplexity, scoreChoices, type ChoiceItem, type GPT2, type Precision, type Tokenizer } from '@gpt2/core';
import { openBackend } from '../backends.js';
import { expandPaths, readUtf8 } from '../corpus.js';
import { checkGenerationMemory, instantiate, readModel, weightFormat } from '../model-source.js';
import { Reporter } from '../report.js';

export async function runEval(f: { model?: string; adapter?: string; data: string; backend: string; threads?: number; precision?: Precision; quantize?: 'int8'; stride?: number; task?: 'text' | 'hellaswag'; limit?: number; json?: boolean }): Promise<void> {
  const report = new Reporter(Boolean(f.json));
  const weights = weightFormat(f);
  if (!f.model && !f.adapter) throw new GPT2Error('Give the model to evaluate with --model (a folder or hub id), or a LoRA adapter with --adapter.');
  const read = await readModel(f.model, report, f.adapter);
  const { backend } = await openBackend(f);
  checkGenerationMemory(backend, read.config, weights);
  const { model, tokenizer } = await instantiate(backend, read, weights);
  if (f.task === 'hellaswag') return hellaswag(f.data, model, tokenizer, report, f.limit, Boolean(f.json), weights, backend.name);
  const files = await expandPaths([f.data]);
  let text = '';
  for (const file of files) text += await readUtf8(file);
  const ids = tokenizer.encode(text, { specials: true });
  const r = await perplexity(model, ids, f.stride);
  if (f.json) process.stdout.write(JSON.stringify({ loss: r.loss, perplexity: r.perplexity, accuracy: r.accuracy, tokens: r.tokens, weights }) + '\n');
  else process.stdout.write(`loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(3)}  accuracy ${(100 * r.accuracy).toFixed(2)}%  (${r.tokens} tokens, ${backend.name}${weights === 'int8' ? ', int8 weights' : ''})\n`);
}

/** HellaSwag's items from FILE (its .jsonl), the first `limit` of them; a missing or unreadable file in one sentence. */
export async function readChoiceFile(file: string, limit?: number): Promise<ChoiceItem[]> {
  const text = await readUtf8(file, "give HellaSwag's .jsonl file", "give HellaSwag's .jsonl file (e.g. hellaswag_val.jsonl)");
  return parseChoiceItems(text, file).slice(0, limit);
}

async function hellaswag(file: string, model: GPT2, tokenizer: Tokenizer, report: Reporter, limit: number | undefined, json: boolean, weights: string, backendName: string): Promise<void> {
  const items = await readChoiceFile(file, limit);
  const progress = report.items('hellaswag', items.length);
  let counted = 0, right = 0; // acc_norm so far, counted as the scores come
  const r = await scoreChoices(model, tokenizer, items, {
    onProgress: (done, _total, scores) => {
      for (; counted < done; counted++) right += scores[counted].predNorm === items[counted].label ? 1 : 0;
      progress(done, `acc_norm ${(right / done).toFixed(4)}`);
    },
  });
  if (json) process.stdout.write(JSON.stringify({ task: 'hellaswag', n: r.n, acc: r.acc, acc_norm: r.accNorm, weights }) + '\n');
  else process.stdout.write(`hellaswag: acc ${r.acc.toFixed(4)}  acc_norm ${r.accNorm.toFixed(4)}  (${r.n} items, ${backendName}${weights === 'int8' ? ', int8 weights' : ''})\n`);
}
