// gpt2 generate: sample text from a model, streaming the first sample as it is produced.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { generateStream, GPT2Error, type GenerateOptions, type GPT2, type Tokenizer } from '@gpt2/core';
import { writeFileAtomic } from '@gpt2/core/node';
import { openBackend } from '../backends.js';
import { checkGenerationMemory, instantiate, readModel, weightFormat, type ModelFlags } from '../model-source.js';
import { Reporter } from '../report.js';

export interface GenerateFlags extends ModelFlags {
  prompt?: string;
  promptFile?: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  noRepeatNgramSize: number;
  presencePenalty: number;
  frequencyPenalty: number;
  minNewTokens: number;
  nsamples: number;
  batchSize?: number;
  seed?: number;
  stop: string[];
  stopAtEos: boolean;
  includePrompt: boolean;
  out?: string;
  delimiter: string;
  json?: boolean;
  interactive?: boolean;
}

export async function runGenerate(f: GenerateFlags): Promise<void> {
  if (f.prompt !== undefined && f.promptFile !== undefined) throw new GPT2Error('Give either --prompt or --prompt-file, not both.');
  const report = new Reporter(Boolean(f.json));
  const weights = weightFormat(f);
  const read = await readModel(f.model, report, f.adapter);
  const { backend } = await openBackend(f);
  checkGenerationMemory(backend, read.config, weights);
  const { model, tokenizer } = await instantiate(backend, read, weights);
  const seed = f.seed ?? Math.floor(Math.random() * 2 ** 31);
  const opts: GenerateOptions = {
    maxNewTokens: f.maxNewTokens, temperature: f.temperature, topK: f.topK, topP: f.topP, minP: f.minP,
    repetitionPenalty: f.repetitionPenalty, noRepeatNgramSize: f.noRepeatNgramSize, minNewTokens: f.minNewTokens,
    presencePenalty: f.presencePenalty, frequencyPenalty: f.frequencyPenalty,
    nsamples: f.nsamples, batchSize: f.batchSize, seed, stop: f.stop, stopAtEos: f.stopAtEos,
    onWarning: (w) => report.warn(w),
  };
  if (f.interactive) return interactive(model, tokenizer, opts, f);
  let prompt = f.prompt ?? '';
  if (f.promptFile !== undefined) {
    try {
      prompt = new TextDecoder('utf-8', { fatal: true }).decode(await readFile(f.promptFile));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new GPT2Error(`Prompt file ${f.promptFile} does not exist.`);
      if (err instanceof TypeError) throw new GPT2Error(`Prompt file ${f.promptFile} is not UTF-8 text.`);
      throw err;
    }
  }
  const result = await sampleAll(model, tokenizer, prompt, opts, f, !f.json);
  if (f.out) {
    await mkdir(f.out, { recursive: true });
    for (const [i, s] of result.samples.entries()) {
      await writeFileAtomic(join(f.out, `sample-${String(i + 1).padStart(3, '0')}.txt`), (f.includePrompt ? prompt : '') + s.text);
    }
    report.line(`wrote ${result.samples.length} sample(s) to ${f.out}`);
  }
  if (f.json) process.stdout.write(JSON.stringify({ samples: result.samples, tokensPerSecond: result.tokensPerSecond, seed }) + '\n');
  else report.line(`(${result.tokensPerSecond.toFixed(1)} tokens/s on ${backend.name}${weights === 'int8' ? ' with int8 weights' : ''}, seed ${seed})`);
}

/** Runs every sample; when `print`, streams sample 1 to stdout and prints the others as they finish. */
async function sampleAll(model: GPT2, tok: Tokenizer, prompt: string, opts: GenerateOptions, f: GenerateFlags, print: boolean) {
  const ids = tok.encode(prompt, { specials: true });
  const n = opts.nsamples ?? 1;
  const samples = Array.from({ length: n }, () => ({ text: '', tokens: [] as number[] }));
  const out = (s: string) => process.stdout.write(s);
  const head = (i: number) => (n > 1 ? `${i > 0 ? '\n' : ''}${f.delimiter}` : '') + (f.includePrompt ? prompt : '');
  if (print) out(head(0));
  const t0 = performance.now();
  for await (const e of generateStream(model, tok, ids, opts)) {
    const s = samples[e.sample];
    s.text += e.text;
    if (print && e.sample === 0) out(e.text);
    if (e.done) {
      s.tokens = e.tokens!;
      if (print && e.sample > 0) out(head(e.sample) + s.text);
    }
  }
  if (print) out('\n');
  const total = samples.reduce((a, s) => a + s.tokens.length, 0);
  return { samples, tokensPerSecond: total / ((performance.now() - t0) / 1000) };
}

async function interactive(model: GPT2, tok: Tokenizer, opts: GenerateOptions, f: GenerateFlags): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  process.stderr.write('Type a prompt and press Enter (an empty line or Ctrl-D quits).\n');
  try {
    for (;;) {
      let prompt: string;
      try {
        prompt = await rl.question('> ');
      } catch {
        break; // input closed
      }
      if (prompt.trim() === '') break;
      await sampleAll(model, tok, prompt, { ...opts, seed: (opts.seed ?? 0) + 1 }, { ...f, includePrompt: true }, true);
      opts.seed = (opts.seed ?? 0) + 1;
    }
  } finally {
    rl.close();
  }
}
