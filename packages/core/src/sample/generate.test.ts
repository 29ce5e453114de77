import { describe, expect, it, beforeAll } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { loadFixture } from '../conformance/fixtures.js';
import { GPT2 } from '../model/gpt2.js';
import { loadTokenizerDir } from '../node.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { generate, generateStream } from './generate.js';
import { argmax } from './processors.js';

let model: GPT2;
let tok: Tokenizer;
let greedyPrompt: Int32Array, greedyWant: Int32Array;
beforeAll(async () => {
  const f = loadFixture('gpt2-tiny');
  model = new GPT2(createReferenceBackend(), f.config, f.params);
  tok = await loadTokenizerDir(f.dir);
  greedyPrompt = f.ref.int32('greedy.prompt');
  greedyWant = f.ref.int32('greedy.tokens');
});

describe('generate', () => {
  it('greedy decoding from "The meaning of life is" equals the fixture', async () => {
    const prompt = tok.encode('The meaning of life is');
    expect([...prompt]).toEqual([...greedyPrompt]);
    const { samples } = await generate(model, tok, prompt, { temperature: 0, maxNewTokens: 24, stopAtEos: false });
    expect(samples[0].tokens).toEqual([...greedyWant]);
    expect(samples[0].text).toBe(tok.decode(greedyWant));
  });

  it('the same seed gives the same samples whatever the batch size; another seed differs', async () => {
    const prompt = tok.encode('Once upon a time');
    const o = { temperature: 1.0, topK: 50, maxNewTokens: 12, nsamples: 4, seed: 7, stopAtEos: false };
    const a = await generate(model, tok, prompt, { ...o, batchSize: 4 });
    const b = await generate(model, tok, prompt, { ...o, batchSize: 1 });
    expect(b.samples).toEqual(a.samples);
    const c = await generate(model, tok, prompt, { ...o, seed: 8 });
    expect(c.samples.map((s) => s.tokens)).not.toEqual(a.samples.map((s) => s.tokens));
    expect(new Set(a.samples.map((s) => s.text)).size).toBeGreaterThan(1); // samples differ from each other
  });

  it('stops at a stop text, cutting the text before it, and never streams part of it', async () => {
    const prompt = tok.encode('The meaning of life is');
    const full = tok.decode(greedyWant); // " is is is ..." for this random model
    const stop = full.slice(4, 9);
    const pieces: string[] = [];
    let tokens: number[] = [];
    for await (const e of generateStream(model, tok, prompt, { temperature: 0, maxNewTokens: 24, stop: [stop], stopAtEos: false })) {
      pieces.push(e.text);
      if (e.done) tokens = e.tokens!;
    }
    const text = pieces.join('');
    expect(text).toBe(full.slice(0, full.indexOf(stop)));
    expect(tokens.length).toBeLessThan(24);
    expect(tok.decode(tokens)).toContain(stop);
  });

  it('slides past the context: 300 tokens from a 64-position model, each step right for its window', async () => {
    const prompt = tok.encode('The meaning of life is');
    const { samples } = await generate(model, tok, prompt, { temperature: 0, maxNewTokens: 300, stopAtEos: false });
    const gen = samples[0].tokens;
    expect(gen.length).toBe(300);
    expect(gen.slice(0, 24)).toEqual([...greedyWant]);
    // after the first slide (all 64 positions used), the next token is the argmax of a fresh
    // forward over the kept window (the last 48 = 0.75 * 64 tokens)
    const all = [...prompt, ...gen];
    const slideAt = 64; // ids 0..63 filled the cache; id 64 is predicted from the slid window
    const window = Int32Array.from(all.slice(slideAt - 48, slideAt));
    await model.forward(window, 1, 48);
    const logits = await model.logits();
    expect(all[slideAt]).toBe(argmax(logits.subarray(47 * 50257, 48 * 50257)));
  });

  it('cuts a prompt longer than the context from the left, with a warning', async () => {
    const warnings: string[] = [];
    const prompt = Int32Array.from({ length: 100 }, (_, i) => 100 + i);
    const { samples } = await generate(model, tok, prompt, { temperature: 0, maxNewTokens: 3, stopAtEos: false, onWarning: (w) => warnings.push(w) });
    expect(samples[0].tokens.length).toBe(3);
    expect(warnings[0]).toMatch(/The prompt has 100 tokens, more than the model's context of 64; only its last 63 are used\./);
  });

  it('starts unconditional samples from <|endoftext|>', async () => {
    const { samples } = await generate(model, tok, [], { temperature: 0.8, maxNewTokens: 5, stopAtEos: false, seed: 1 });
    expect(samples[0].tokens.length).toBe(5);
  });

  it.each([
    [{ temperature: -1 }, /temperature must be a number >= 0/],
    [{ topP: 0 }, /top-p must be in \(0, 1\]/],
    [{ topK: 2.5 }, /top-k must be a whole number/],
    [{ minP: 1 }, /min-p must be in \[0, 1\)/],
    [{ repetitionPenalty: 0 }, /repetition-penalty must be a number > 0/],
    [{ nsamples: 0 }, /nsamples must be a whole number >= 1/],
    [{ stop: [''] }, /stop text must not be empty/],
  ])('rejects %j', async (o, pattern) => {
    await expect(generate(model, tok, [1, 2], o)).rejects.toThrowError(pattern);
  });
});
