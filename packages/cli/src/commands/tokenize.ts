// gpt2 tokenize: the ids of a text under a model's tokenizer.
import { readFile } from 'node:fs/promises';
import { GPT2Error, parseConfig } from '@gpt2/core';
import { join } from 'node:path';
import { resolveModelDir, tokenizerFor } from '../model-source.js';
import { readUtf8 } from '../corpus.js';
import { Reporter } from '../report.js';

export async function runTokenize(f: { model: string; text?: string; file?: string; json?: boolean; specials: boolean }): Promise<void> {
  if ((f.text === undefined) === (f.file === undefined)) throw new GPT2Error('Give exactly one of --text or --file.');
  const report = new Reporter(Boolean(f.json));
  const dir = await resolveModelDir(f.model, report);
  const config = parseConfig(await readFile(join(dir, 'config.json'), 'utf8'), join(dir, 'config.json'));
  const tok = await tokenizerFor(dir, config, report);
  let text = f.text;
  if (f.file !== undefined) text = await readUtf8(f.file);
  const ids = [...tok.encode(text!, { specials: f.specials })];
  if (f.json) process.stdout.write(JSON.stringify({ ids, count: ids.length }) + '\n');
  else process.stdout.write(`${ids.join(' ')}\n(${ids.length} tokens)\n`);
}
