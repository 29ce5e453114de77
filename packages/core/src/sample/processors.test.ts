// Expected values worked by hand from Hugging Face's processor definitions (see each comment).
import { describe, expect, it } from 'vitest';
import { minNewTokens, minP, noRepeatNgram, presenceFrequencyPenalty, repetitionPenalty, temperature, topK, topP } from './processors.js';

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
