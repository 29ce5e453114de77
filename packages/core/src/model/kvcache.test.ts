// KVCache with rows at different lengths (continuous batching): rows prefilled one at a time with
// feedRow, then decoded together with step() (and feed()), must give each sequence's logits as if
// it ran alone in a cache of its own; an inactive row is left alone.
import { beforeAll, describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { loadFixture } from '../conformance/fixtures.js';
import { GPT2Error } from '../errors.js';
import { GPT2 } from './gpt2.js';

let model: GPT2;
let V: number;
beforeAll(() => {
  const f = loadFixture('gpt2-tiny');
  model = new GPT2(createReferenceBackend(), f.config, f.params);
  V = f.config.vocabSize;
});

/** A made-up sequence of n token ids, different for each seed. */
const ids = (seed: number, n: number) => Int32Array.from({ length: n }, (_, i) => (seed * 104729 + i * 7919 + 13) % V);

/** The logits of a sequence alone in a B=1 cache: its prompt's, then one per following token. */
async function alone(seq: Int32Array, prompt: number): Promise<Float32Array[]> {
  const cache = model.createCache(1, 32);
  try {
    const out = [await cache.feed(seq.subarray(0, prompt), prompt)];
    for (let t = prompt; t < seq.length; t++) out.push(await cache.feed(seq.subarray(t, t + 1), 1));
    return out;
  } finally {
    cache.dispose();
  }
}

function expectClose(what: string, got: Float32Array, want: Float32Array): void {
  expect(got.length, what).toBe(want.length);
  let scale = 1, err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  expect(err / scale, what).toBeLessThanOrEqual(1e-5);
}

const row = (logits: Float32Array, b: number) => logits.subarray(b * V, (b + 1) * V);

describe('KVCache with rows at different lengths', () => {
  it('rows prefilled separately (feedRow) then decoded together (step, feed) match each sequence alone', async () => {
    const prompts = [5, 2, 8], steps = 4;
    const seqs = prompts.map((p, b) => ids(b + 1, p + steps + 2));
    const want = await Promise.all(seqs.map((s, b) => alone(s, prompts[b])));
    const cache = model.createCache(4, 32); // row 3 stays empty
    try {
      for (let b = 0; b < 3; b++) {
        expectClose(`prefill of row ${b}`, await cache.feedRow(b, seqs[b].subarray(0, prompts[b])), want[b][0]);
      }
      expect([...cache.lengths]).toEqual([5, 2, 8, 0]);
      expect(cache.pos).toBe(8);
      const active = [true, true, true, false];
      for (let s = 0; s < steps; s++) {
        const next = new Int32Array(4);
        for (let b = 0; b < 3; b++) next[b] = seqs[b][prompts[b] + s];
        next[3] = -5; // an inactive row's token is ignored, not checked
        const logits = await cache.step(next, active);
        expect(logits.length).toBe(3 * V); // rows 0 .. the last active one
        for (let b = 0; b < 3; b++) expectClose(`step ${s} row ${b}`, row(logits, b), want[b][s + 1]);
      }
      expect([...cache.lengths]).toEqual([5 + steps, 2 + steps, 8 + steps, 0]);
      // feed: every row, 2 more tokens, each at its own length (row 3 from its start)
      const two = new Int32Array(8);
      for (let b = 0; b < 3; b++) two.set(seqs[b].subarray(prompts[b] + steps, prompts[b] + steps + 2), 2 * b);
      two.set(ids(9, 2), 6);
      const logits = await cache.feed(two, 2);
      for (let b = 0; b < 3; b++) {
        // alone, the second of those tokens came one step later
        const w = await alone(seqs[b], prompts[b] + steps + 2);
        expectClose(`feed of 2 tokens, row ${b}`, row(logits, b), w[0]);
      }
      expectClose('feed of 2 tokens, row 3 (from empty)', row(logits, 3), (await alone(ids(9, 2), 2))[0]);
    } finally {
      cache.dispose();
    }
  });

  it('an inactive row in the middle is left alone; a cleared row takes a new sequence', async () => {
    const prompts = [3, 6, 4];
    const seqs = prompts.map((p, b) => ids(b + 11, p + 4));
    const want = await Promise.all(seqs.map((s, b) => alone(s, prompts[b])));
    const cache = model.createCache(3, 32);
    try {
      for (let b = 0; b < 3; b++) await cache.feedRow(b, seqs[b].subarray(0, prompts[b]));
      const took = [0, 0, 0]; // tokens each row has taken past its prompt
      const step = async (active: boolean[]) => {
        const next = Int32Array.from(seqs, (s, b) => (active[b] ? s[prompts[b] + took[b]] : 0));
        const logits = await cache.step(next, active);
        for (let b = 0; b < logits.length / V; b++) {
          if (!active[b]) continue;
          took[b]++;
          expectClose(`row ${b} after ${took[b]} steps`, row(logits, b), want[b][took[b]]);
        }
        return logits;
      };
      await step([true, true, true]);
      await step([true, false, true]); // row 1 sits out
      expect([...cache.lengths]).toEqual([prompts[0] + 2, prompts[1] + 1, prompts[2] + 2]);
      await step([true, true, true]); // row 1 goes on from where it was: its cache was not touched
      expect((await step([true, false, false])).length).toBe(V); // only row 0 runs
      await step([false, true, true]);
      expect(took).toEqual([4, 3, 4]);

      // row 0 is freed and takes a new sequence while the others go on
      cache.clearRow(0);
      expect([...cache.lengths]).toEqual([0, prompts[1] + 3, prompts[2] + 4]);
      const fresh = ids(42, 5), freshWant = await alone(fresh, 3);
      expectClose('a new sequence in a cleared row', await cache.feedRow(0, fresh.subarray(0, 3)), freshWant[0]);
      const logits = await cache.step(Int32Array.of(fresh[3], seqs[1][prompts[1] + 3], 0), [true, true, false]);
      expectClose('the new sequence, one step on', row(logits, 0), freshWant[1]);
      expectClose('row 1 beside it', row(logits, 1), want[1][4]);

      await expect(cache.step(new Int32Array(3), [false, false, false])).rejects.toThrow(GPT2Error);
      await expect(cache.feedRow(1, new Int32Array(32))).rejects.toThrow(/row 1 holds 10 tokens/);
      await expect(cache.feedRow(2, Int32Array.of(V))).rejects.toThrow(GPT2Error);
      expect(() => cache.clearRow(3)).toThrow(GPT2Error);
    } finally {
      cache.dispose();
    }
  });
});
