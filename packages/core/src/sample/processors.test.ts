// Expected values worked by hand from Hugging Face's processor definitions (see each comment).
import { describe, expect, it } from 'vitest';
import { argmax, minNewTokens, minP, noRepeatNgram, presenceFrequencyPenalty, repetitionPenalty, softmax, temperature, topK, topP } from './processors.js';
import { draw } from './generate.js';
import { Rng } from './rng.js';

const run = (p: (l: Float32Array, ids: number[], g: number) => void, logits: number[], ids: number[] = [], generated = 0) => {
  const l = Float32Array.from(logits);
  p(l, ids, generated);
  return [...l];
};
const ln = Math.log;

describe('logits processors (HF semantics)', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens, once each', () => {
    expect(run(repetitionPenalty(2), [2, -2, 1], [0, 1, 1])).toEqual([1, -4, 1]);
  });
  it('temperature divides', () => expect(run(temperature(0.5), [1, -2])).toEqual([2, -4]));
  it('top-k keeps the k largest, ties at the k-th included (scores < kth are removed)', () => {
    expect(run(topK(2), [1, 3, 2, 3])).toEqual([-Infinity, 3, -Infinity, 3]);
    expect(run(topK(2), [1, 3, 2])).toEqual([-Infinity, 3, 2]);
  });
  it('top-p keeps the smallest most-likely set reaching p, at least one token', () => {
    const l = [ln(0.5), ln(0.3), ln(0.2)];
    expect(run(topP(0.7), l).map((x) => x === -Infinity)).toEqual([false, false, true]);
    expect(run(topP(0.85), l).map((x) => x === -Infinity)).toEqual([false, false, false]);
    expect(run(topP(0.1), l).map((x) => x === -Infinity)).toEqual([false, true, true]);
  });
  it('min-p drops tokens below min_p times the top probability', () => {
    expect(run(minP(0.2), [ln(0.6), ln(0.3), ln(0.1)]).map((x) => x === -Infinity)).toEqual([false, false, true]);
  });
  it('no-repeat-ngram bans completing an n-gram already present', () => {
    // ids 1 2 3 1: the bigram (1, 2) exists, so after "1" the token 2 is banned
    expect(run(noRepeatNgram(2), [0, 0, 0, 0], [1, 2, 3, 1])).toEqual([0, 0, -Infinity, 0]);
    // trigram: last two are (2, 3); earlier (2, 3) was followed by 4
    expect(run(noRepeatNgram(3), [0, 0, 0, 0, 0], [2, 3, 4, 2, 3])).toEqual([0, 0, 0, 0, -Infinity]);
  });
  it("presence and frequency penalties (OpenAI's formula) count only generated tokens", () => {
    // ids: prompt [2, 2] then generated [0, 1, 1]: counts 0 -> 1, 1 -> 2, token 2 only in the prompt
    expect(run(presenceFrequencyPenalty(0.5, 0.25), [1, 1, 1, 1], [2, 2, 0, 1, 1], 3)).toEqual([1 - 0.25 - 0.5, 1 - 0.5 - 0.5, 1, 1]);
  });
  it('min-new-tokens forbids end-of-text until enough tokens exist', () => {
    expect(run(minNewTokens(2, 1), [0, 5], [], 1)).toEqual([0, -Infinity]);
    expect(run(minNewTokens(2, 1), [0, 5], [], 2)).toEqual([0, 5]);
  });
});

// The plain definitions these processors had (a full sort, an exponential per logit): the fast ones
// must edit every row to the same numbers and draw the same ids from the same seeds.
const plain = {
  kth: (l: Float32Array, k: number) => Float32Array.from(l).sort().reverse()[k - 1],
  softmax(l: Float32Array): Float64Array {
    let max = -Infinity;
    for (const x of l) if (x > max) max = x;
    const out = new Float64Array(l.length);
    let sum = 0;
    for (let i = 0; i < l.length; i++) sum += out[i] = Math.exp(l[i] - max);
    for (let i = 0; i < out.length; i++) out[i] /= sum;
    return out;
  },
  topK(l: Float32Array, k: number) {
    if (k >= l.length) return;
    const kth = plain.kth(l, k);
    for (let i = 0; i < l.length; i++) if (l[i] < kth) l[i] = -Infinity;
  },
  topP(l: Float32Array, p: number) {
    const order = Uint32Array.from(l.keys()).sort((a, b) => l[b] - l[a] || a - b), probs = plain.softmax(l);
    let cum = 0, keep = 0;
    while (keep < order.length) {
      cum += probs[order[keep]];
      keep++;
      if (cum >= p) break;
    }
    for (let i = keep; i < order.length; i++) l[order[i]] = -Infinity;
  },
  draw(l: Float32Array, rng: Rng): number {
    const e = new Float64Array(l.length);
    let max = -Infinity;
    for (let i = 0; i < l.length; i++) if (l[i] > max) max = l[i];
    let sum = 0;
    for (let i = 0; i < l.length; i++) sum += e[i] = Math.exp(l[i] - max);
    const u = rng.random();
    let cum = 0;
    for (let i = 0; i < l.length; i++) {
      cum += e[i] / sum;
      if (u < cum) return i;
    }
    return argmax(l);
  },
};

describe('the fast processors and draw against the plain definitions', () => {
  // rows like a model's: a few large logits, a long tail, ties, and rows already cut by a ban
  const rows = (seed: number, n: number): Float32Array[] => {
    const r = new Rng(seed);
    return Array.from({ length: 12 }, (_, k) => {
      const l = Float32Array.from({ length: n }, () => Math.fround(r.normal() * (k % 3 === 0 ? 4 : 1.5)));
      if (k % 4 === 1) for (let i = 0; i < n; i += 7) l[i] = l[(i * 31) % n]; // ties
      if (k % 4 === 2) for (let i = 0; i < n; i += 3) l[i] = -Infinity;
      return l;
    });
  };
  const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.prototype.every.call(a, (x: number, i: number) => Object.is(x, b[i]));
  it('top-k, top-p and softmax (min-p\'s) edit rows to the same numbers', () => {
    for (const n of [5, 1000, 50257]) {
      for (const l of rows(n, n).slice(0, n > 1000 ? 4 : 12)) {
        for (const k of [1, 2, 40, 999]) {
          const a = l.slice(), b = l.slice();
          topK(k)(a, [], 0);
          plain.topK(b, k);
          expect(same(a, b), `top-k ${k} of ${n}`).toBe(true);
        }
        for (const p of n > 1000 ? [0.9] : [0.05, 0.5, 0.9, 0.999]) {
          const a = l.slice(), b = l.slice();
          topP(p)(a, [], 0);
          plain.topP(b, p);
          expect(same(a, b), `top-p ${p} of ${n}`).toBe(true);
        }
        expect(same(softmax(l), plain.softmax(l))).toBe(true);
      }
    }
  });
  it('draws the same ids for the same seeds, after top-k and top-p or none', () => {
    for (const l of rows(3, 50257)) {
      for (const chain of [[], [topK(40)], [topK(40), topP(0.9)], [topP(0.95)]]) {
        const row = l.slice();
        for (const proc of chain) proc(row, [], 0);
        const a = new Rng(11), b = new Rng(11);
        for (let i = 0; i < 20; i++) expect(draw(row, a)).toBe(plain.draw(row, b));
      }
    }
  });
});
