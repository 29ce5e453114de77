// Logits processors with Hugging Face semantics (transformers' LogitsProcessor / warpers, and
// transformers.js generation/logits_process.js). Each edits one sequence's logits row in place;
// `ids` is everything the sequence holds so far (prompt + generated).
import { GPT2Error } from '../errors.js';

export type LogitsProcessor = (logits: Float32Array, ids: ArrayLike<number>, generated: number) => void;

/** HF RepetitionPenaltyLogitsProcessor: seen tokens' logits are divided by p when positive, multiplied when negative. */
export function repetitionPenalty(p: number): LogitsProcessor {
  return (logits, ids) => {
    const seen = new Set<number>();
    for (let i = 0; i < ids.length; i++) seen.add(ids[i]);
    for (const id of seen) logits[id] = logits[id] < 0 ? logits[id] * p : logits[id] / p;
  };
}

/**
 * OpenAI's presence and frequency penalties: logits[j] -= count[j] * frequency + (count[j] > 0) * presence,
 * counting only the generated tokens (the last `generated` of ids), as OpenAI and vLLM do.
 */
export function presenceFrequencyPenalty(presence: number, frequency: number): LogitsProcessor {
  return (logits, ids, generated) => {
    const count = new Map<number, number>();
    for (let i = ids.length - generated; i < ids.length; i++) count.set(ids[i], (count.get(ids[i]) ?? 0) + 1);
    for (const [id, c] of count) logits[id] -= c * frequency + presence;
  };
}

/** HF NoRepeatNGramLogitsProcessor: bans any token that would repeat an n-gram already in the sequence. */
export function noRepeatNgram(n: number): LogitsProcessor {
  return (logits, ids) => {
    const len = ids.length;
    if (len + 1 < n) return;
    // the last n-1 tokens; every earlier occurrence of them bans the token that followed
    for (let start = 0; start + n <= len; start++) {
      let match = true;
      for (let k = 0; k < n - 1 && match; k++) match = ids[start + k] === ids[len - n + 1 + k];
      if (match) logits[ids[start + n - 1]] = -Infinity;
    }
  };
}

/** HF MinNewTokensLengthLogitsProcessor: end-of-text is impossible before `min` new tokens. */
export function minNewTokens(min: number, eosId: number): LogitsProcessor {
  return (logits, _ids, generated) => {
    if (generated < min) logits[eosId] = -Infinity;
  };
}

export function temperature(t: number): LogitsProcessor {
  return (logits) => {
    for (let i = 0; i < logits.length; i++) logits[i] /= t;
  };
}

/** Keeps the k highest logits (ties at the k-th value kept, as torch.topk + `<` does in HF). */
export function topK(k: number): LogitsProcessor {
  return (logits) => {
    if (k >= logits.length) return;
    const kth = kthLargest(logits, k);
    for (let i = 0; i < logits.length; i++) if (logits[i] < kth) logits[i] = -Infinity;
  };
}

/** HF TopPLogitsWarper: keeps the smallest set of most likely tokens whose probability reaches p (at least one). */
export function topP(p: number): LogitsProcessor {
  return (logits) => {
    const order = sortedIndices(logits);
    const probs = softmax(logits);
    let cum = 0, keep = 0;
    while (keep < order.length) {
      cum += probs[order[keep]];
      keep++;
      if (cum >= p) break;
    }
    for (let i = keep; i < order.length; i++) logits[order[i]] = -Infinity;
  };
}

/** HF MinPLogitsWarper: drops tokens less likely than minP times the most likely one. */
export function minP(m: number): LogitsProcessor {
  return (logits) => {
    const probs = softmax(logits);
    let max = 0;
    for (const q of probs) if (q > max) max = q;
    for (let i = 0; i < logits.length; i++) if (probs[i] < m * max) logits[i] = -Infinity;
  };
}

export function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

function sortedIndices(logits: Float32Array): Uint32Array {
  return Uint32Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
}

function kthLargest(logits: Float32Array, k: number): number {
  return Float32Array.from(logits).sort().reverse()[k - 1];
}

export interface SamplingOptions {
  temperature?: number; // 0 = greedy
  topK?: number; // 0 = off
  topP?: number; // 1 = off
  minP?: number; // 0 = off
  repetitionPenalty?: number; // 1 = off
  noRepeatNgramSize?: number; // 0 = off
  minNewTokens?: number;
  presencePenalty?: number; // 0 = off, -2..2
  frequencyPenalty?: number; // 0 = off, -2..2
}

/** Checks every sampling parameter, with one sentence per mistake. */
export function validateSampling(o: SamplingOptions): void {
  const bad = (flag: string, rule: string, v: unknown): never => {
    throw new GPT2Error(`${flag} must be ${rule} (got ${String(v)}).`);
  };
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const int = (v: unknown) => num(v) && Number.isInteger(v);
  if (o.temperature !== undefined && !(num(o.temperature) && o.temperature >= 0)) bad('temperature', 'a number >= 0 (0 means greedy)', o.temperature);
  if (o.topK !== undefined && !(int(o.topK) && o.topK >= 0)) bad('top-k', 'a whole number >= 0 (0 turns it off)', o.topK);
  if (o.topP !== undefined && !(num(o.topP) && o.topP > 0 && o.topP <= 1)) bad('top-p', 'in (0, 1] (1 turns it off)', o.topP);
  if (o.minP !== undefined && !(num(o.minP) && o.minP >= 0 && o.minP < 1)) bad('min-p', 'in [0, 1) (0 turns it off)', o.minP);
  if (o.repetitionPenalty !== undefined && !(num(o.repetitionPenalty) && o.repetitionPenalty > 0)) bad('repetition-penalty', 'a number > 0 (1 turns it off)', o.repetitionPenalty);
  if (o.noRepeatNgramSize !== undefined && !(int(o.noRepeatNgramSize) && o.noRepeatNgramSize >= 0)) bad('no-repeat-ngram-size', 'a whole number >= 0', o.noRepeatNgramSize);
  for (const [flag, v] of [['presence-penalty', o.presencePenalty], ['frequency-penalty', o.frequencyPenalty]] as const) {
    if (v !== undefined && !(num(v) && v >= -2 && v <= 2)) bad(flag, 'between -2 and 2 (0 turns it off)', v);
  }
  if (o.minNewTokens !== undefined && !(int(o.minNewTokens) && o.minNewTokens >= 0)) bad('min-new-tokens', 'a whole number >= 0', o.minNewTokens);
}

/** The processor chain for these options, in HF's order: penalties first, then warpers. */
export function buildProcessors(o: SamplingOptions, eosId?: number): LogitsProcessor[] {
  validateSampling(o);
  const chain: LogitsProcessor[] = [];
  if (o.repetitionPenalty !== undefined && o.repetitionPenalty !== 1) chain.push(repetitionPenalty(o.repetitionPenalty));
  if (o.presencePenalty || o.frequencyPenalty) chain.push(presenceFrequencyPenalty(o.presencePenalty ?? 0, o.frequencyPenalty ?? 0));
  if (o.noRepeatNgramSize) chain.push(noRepeatNgram(o.noRepeatNgramSize));
  if (o.minNewTokens && eosId !== undefined) chain.push(minNewTokens(o.minNewTokens, eosId));
  if (o.temperature) {
    if (o.temperature !== 1) chain.push(temperature(o.temperature));
    if (o.topK) chain.push(topK(o.topK));
    if (o.topP !== undefined && o.topP < 1) chain.push(topP(o.topP));
    if (o.minP) chain.push(minP(o.minP));
  }
  return chain;
}
