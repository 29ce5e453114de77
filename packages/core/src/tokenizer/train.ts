// Learns a GPT-2-style byte-level BPE from text: pre-tokenize with GPT-2's pattern, count the
// pieces, then repeatedly merge the most frequent adjacent pair (ties: lowest ids first, so the
// result is deterministic). Only the words holding the merged pair are revisited each step.
import { GPT2Error } from '../errors.js';
import { BYTE_ORDER, BYTE_TO_CHAR, PRETOKENIZE } from './byte-level.js';
import { Heap } from './heap.js';
import { Tokenizer } from './tokenizer.js';

export interface TrainOptions {
  /** Final vocabulary size, specials included (>= 256 + specials). */
  vocabSize: number;
  /** Special tokens appended after the merges; they never take part in merges. */
  specials?: string[];
  /** Called with the phase and the fraction done. */
  onProgress?: (phase: 'count' | 'merge', fraction: number) => void;
}

const KEY = 1048576;

export function trainTokenizer(texts: Iterable<string>, opts: TrainOptions): Tokenizer {
  const specials = opts.specials ?? ['<|endoftext|>'];
  const targetMerges = opts.vocabSize - 256 - specials.length;
  if (!Number.isInteger(opts.vocabSize) || targetMerges < 0) {
    throw new GPT2Error(`A vocabulary size of ${opts.vocabSize} is too small: byte-level BPE needs at least ${256 + specials.length}.`);
  }

  // 1. piece counts (specials split out and not counted)
  const pieceCounts = new Map<string, number>();
  const textEncoder = new TextEncoder();
  const specialRe = specials.length ? new RegExp(specials.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')) : null;
  for (const text of texts) {
    for (const part of specialRe ? text.split(specialRe) : [text]) {
      for (const m of part.matchAll(PRETOKENIZE)) pieceCounts.set(m[0], (pieceCounts.get(m[0]) ?? 0) + 1);
    }
  }
  opts.onProgress?.('count', 1);

  // 2. words as symbol ids (initial ids: position of the byte in BYTE_ORDER)
  const byteId = new Int32Array(256);
  BYTE_ORDER.forEach((b, i) => (byteId[b] = i));
  const tokens: string[] = BYTE_ORDER.map((b) => BYTE_TO_CHAR[b]);
  const words: number[][] = [], counts: number[] = [];
  for (const [piece, c] of pieceCounts) {
    words.push([...textEncoder.encode(piece)].map((b) => byteId[b]));
    counts.push(c);
  }

  // 3. pair statistics
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  type Entry = [count: number, a: number, b: number];
  const heap = new Heap<Entry>((x, y) => x[0] > y[0] || (x[0] === y[0] && (x[1] < y[1] || (x[1] === y[1] && x[2] < y[2]))));
  const bump = (key: number, delta: number, w: number) => {
    const c = (pairCount.get(key) ?? 0) + delta;
    pairCount.set(key, c);
    if (delta > 0) {
      let set = pairWords.get(key);
      if (!set) pairWords.set(key, (set = new Set()));
      set.add(w);
    }
    if (c > 0) heap.push([c, Math.floor(key / KEY), key % KEY]);
  };
  words.forEach((word, w) => {
    for (let i = 0; i + 1 < word.length; i++) bump(word[i] * KEY + word[i + 1], counts[w], w);
  });

  // 4. merges
  const merges: [string, string][] = [];
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  while (tokens.length < 256 + targetMerges) {
    const top = heap.pop();
    if (!top) break; // every word is a single token: the corpus is exhausted
    const [count, a, b] = top;
    const key = a * KEY + b;
    if (pairCount.get(key) !== count) continue; // stale entry
    // two pairs can spell the same string ("a"+"bc", "ab"+"c"): they share one id, as in HF
    const merged = tokens[a] + tokens[b];
    let m = idOf.get(merged);
    if (m === undefined) {
      m = tokens.length;
      tokens.push(merged);
      idOf.set(merged, m);
    }
    merges.push([tokens[a], tokens[b]]);
    for (const w of pairWords.get(key) ?? []) {
      const old = words[w];
      const neu: number[] = [];
      for (let i = 0; i < old.length; i++) {
        if (i + 1 < old.length && old[i] === a && old[i + 1] === b) {
          neu.push(m!);
          i++;
        } else neu.push(old[i]);
      }
      if (neu.length === old.length) continue;
      const delta = new Map<number, number>();
      for (let i = 0; i + 1 < old.length; i++) delta.set(old[i] * KEY + old[i + 1], (delta.get(old[i] * KEY + old[i + 1]) ?? 0) - 1);
      for (let i = 0; i + 1 < neu.length; i++) delta.set(neu[i] * KEY + neu[i + 1], (delta.get(neu[i] * KEY + neu[i + 1]) ?? 0) + 1);
      for (const [k, d] of delta) if (d !== 0) bump(k, d * counts[w], w);
      words[w] = neu;
    }
    pairWords.delete(key);
    if (merges.length % 256 === 0) opts.onProgress?.('merge', (tokens.length - 256) / targetMerges);
  }
  opts.onProgress?.('merge', 1);

  const vocab = new Map<string, number>();
  tokens.forEach((t, i) => vocab.set(t, i));
  for (const s of specials) vocab.set(s, vocab.size);
  return new Tokenizer(vocab, merges, specials);
}
