// Logits processors with Hugging Face semantics (transformers' LogitsProcessor / warpers, and
// transformers.js generation/logits_process.js). Each edits one sequence's logits row in place;
// `ids` is everything the sequence holds so far (prompt + generated). They run once per row per
// decoding step, so each is one pass (or a selection) over the row, never a sort of it, and no
// exponential is taken of a logit already at -Infinity (its probability is exactly 0): the same
// numbers, in the same order, as the plain definitions, which sample.test.ts keeps and checks against.
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

/**
 * HF TopPLogitsWarper: keeps the smallest set of most likely tokens whose probability reaches p (at
 * least one). The tokens are summed in order of probability (ties by id), as a sort of the whole row
 * would order them, but only the most likely are sorted: first the top 256, then more if those do
 * not reach p.
 */
export function topP(p: number): LogitsProcessor {
  return (logits) => {
    const probs = softmax(logits, scratch64(logits.length));
    for (let m = Math.min(256, logits.length); ; m = Math.min(m * 8, logits.length)) {
      const order = topIndices(logits, m);
      let cum = 0, keep = 0;
      while (keep < order.length) {
        cum += probs[order[keep]];
        keep++;
        if (cum >= p) break;
      }
      if (cum < p && m < logits.length && order.length >= m) continue; // the top m were not enough: look further
      if (cum < p) return; // even every finite logit falls short of p (rounding): all are kept
      // drop every token after the first `keep` of that order: below the last kept, or tied with it and later
      const last = order[keep - 1], v = logits[last];
      for (let i = 0; i < logits.length; i++) if (!(logits[i] > v || (logits[i] === v && i <= last))) logits[i] = -Infinity;
      return;
    }
  };
}

/** HF MinPLogitsWarper: drops tokens less likely than minP times the most likely one. */
export function minP(m: number): LogitsProcessor {
  return (logits) => {
    const probs = softmax(logits, scratch64(logits.length));
    let max = 0;
    for (let i = 0; i < logits.length; i++) if (probs[i] > max) max = probs[i];
    for (let i = 0; i < logits.length; i++) if (probs[i] < m * max) logits[i] = -Infinity;
  };
}

/**
 * Probabilities (into `out`, or a new array): exp(x - max) / sum in float64, summed in index order. A
 * logit at -Infinity adds exactly 0, so it is skipped rather than exponentiated.
 */
export function softmax(logits: Float32Array, out = new Float64Array(logits.length)): Float64Array {
  const n = logits.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  const skip = max !== -Infinity; // every logit -Infinity: exp(NaN) as the definition has it
  for (let i = 0; i < n; i++) {
    const x = logits[i];
    if (skip && x === -Infinity) out[i] = 0;
    else sum += out[i] = Math.exp(x - max);
  }
  for (let i = 0; i < n; i++) out[i] /= sum;
  return out;
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

let f64 = new Float64Array(0), f32 = new Float32Array(0);
/** Scratch that lives across calls (a step's rows are processed one after another). */
export const scratch64 = (n: number) => (f64.length >= n ? f64 : (f64 = new Float64Array(n))).subarray(0, n);
const scratch32 = (n: number) => (f32.length >= n ? f32 : (f32 = new Float32Array(n))).subarray(0, n);

/**
 * The ids of the m largest logits (and of any tied with the m-th), in the order a sort of the whole
 * row by value (descending, ties by id) puts them: a selection of the m-th value, then a sort of
 * those at or above it.
 */
function topIndices(logits: Float32Array, m: number): Uint32Array {
  // past the finite logits (a row cut by top-k) the order goes on with -Infinity ones, whose
  // probabilities are 0: a total that the finite ones leave short of p never reaches it
  const kth = Math.max(kthLargest(logits, m), -Number.MAX_VALUE), n = logits.length;
  let count = 0;
  for (let i = 0; i < n; i++) if (logits[i] >= kth || Number.isNaN(logits[i])) count++;
  const ids = new Uint32Array(count);
  for (let i = 0, j = 0; i < n; i++) if (logits[i] >= kth || Number.isNaN(logits[i])) ids[j++] = i;
  return count > 64 ? radixOrder(logits, ids) : ids.sort((a, b) => logits[b] - logits[a] || a - b);
}

/**
 * ids (ascending) ordered by logits[id] descending, ties kept in id order: a stable radix sort on
 * the float's bits in two 16-bit passes (what a comparator sort does, for thousands of ids at once).
 */
function radixOrder(logits: Float32Array, ids: Uint32Array): Uint32Array {
  const n = ids.length, bits = new Uint32Array(logits.buffer, logits.byteOffset, logits.length);
  // a key whose ascending order is the floats' descending order: positives first, the largest
  // smallest; then negatives, the largest magnitude last (-0 is +0, as the comparison has it)
  const key = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const b = bits[ids[j]];
    key[j] = b & 0x80000000 && b !== 0x80000000 ? b >>> 0 : 0x7fffffff - (b & 0x7fffffff);
  }
  let src: Uint32Array = ids, keys: Uint32Array = key, dst: Uint32Array = new Uint32Array(n), dkeys: Uint32Array = new Uint32Array(n);
  for (const shift of [0, 16]) {
    const count = new Uint32Array(65537);
    for (let j = 0; j < n; j++) count[((keys[j] >>> shift) & 0xffff) + 1]++;
    for (let d = 0; d < 65536; d++) count[d + 1] += count[d];
    for (let j = 0; j < n; j++) {
      const at = count[(keys[j] >>> shift) & 0xffff]++;
      dst[at] = src[j];
      dkeys[at] = keys[j];
    }
    [src, dst] = [dst, src];
    [keys, dkeys] = [dkeys, keys];
  }
  return src;
}

/**
 * The k-th largest logit (k from 1), as Float32Array.sort().reverse()[k - 1] gives it: a quickselect
 * over a copy (NaN, which that sort puts first after the reverse, counted as largest).
 */
function kthLargest(logits: Float32Array, k: number): number {
  const a = scratch32(logits.length);
  a.set(logits);
  let nan = 0;
  for (let i = 0; i < a.length; i++) if (Number.isNaN(a[i])) nan++;
  if (k <= nan) return NaN;
  if (nan) return Float32Array.from(logits).sort().reverse()[k - 1]; // not a case worth a fast path
  // the (k-1)-th from the top: the (n-k)-th from the bottom, in ascending order
  let lo = 0, hi = a.length - 1;
  const want = a.length - k;
  while (hi > lo) {
    const pivot = median3(a[lo], a[(lo + hi) >>> 1], a[hi]);
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[want];
}

const median3 = (x: number, y: number, z: number) => Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));

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
