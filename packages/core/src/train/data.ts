// Batches for language-model training: random windows of block+1 tokens from one token stream (in
// memory, or read a window at a time from shards on disk), drawn with a seeded RNG whose state is
// saved with checkpoints, so a resumed run draws the same.
import { GPT2Error } from '../errors.js';
import { Rng } from '../sample/rng.js';

export type Tokens = Uint16Array | Uint32Array | Int32Array;

/** A token stream read a window at a time, for data that is not held in memory (token shards on disk). */
export interface TokenSource {
  readonly length: number;
  /** tokens [start, start + count) */
  window(start: number, count: number): ArrayLike<number>;
}
/** What training draws from: tokens in memory, or a source that reads them as asked. */
export type TokenData = Tokens | TokenSource;

const isSource = (d: TokenData): d is TokenSource => 'window' in d;
/** tokens [start, start + count) of either kind */
export const windowOf = (d: TokenData, start: number, count: number): ArrayLike<number> => (isSource(d) ? d.window(start, count) : d.subarray(start, start + count));
/** tokens [start, end) of either kind, as the same kind (a view: nothing is copied or read) */
export function sliceTokens(d: TokenData, start: number, end: number): TokenData {
  if (!isSource(d)) return d.subarray(start, end);
  return { length: end - start, window: (s, c) => d.window(start + s, c) };
}

export interface Batch {
  inputs: Int32Array; // (B, T)
  targets: Int32Array; // (B, T): inputs shifted by one
}

/** Splits off the last `fraction` of the stream for validation (at least one block + 1 when possible). */
export function splitTokens<D extends TokenData>(tokens: D, fraction: number, block: number): { train: D; val?: D } {
  if (!(fraction >= 0 && fraction < 1)) throw new GPT2Error(`val-split must be in [0, 1) (got ${fraction}).`);
  if (fraction === 0) return { train: tokens };
  const valLen = Math.max(Math.floor(tokens.length * fraction), Math.min(block + 1, Math.floor(tokens.length / 2)));
  if (valLen < 2 || tokens.length - valLen < 2) return { train: tokens };
  return { train: sliceTokens(tokens, 0, tokens.length - valLen) as D, val: sliceTokens(tokens, tokens.length - valLen, tokens.length) as D };
}

export class BatchSampler {
  readonly rng: Rng;
  constructor(
    private readonly tokens: TokenData,
    readonly B: number,
    readonly T: number,
    seedOrState: number | Uint32Array,
  ) {
    if (tokens.length < T + 1) throw new GPT2Error(`The data has ${tokens.length} tokens, fewer than one block of ${T} + 1.`);
    this.rng = new Rng(seedOrState);
  }

  next(): Batch {
    const { B, T } = this, inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const w = windowOf(this.tokens, this.rng.int(this.tokens.length - T), T + 1);
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = w[t];
        targets[b * T + t] = w[t + 1];
      }
    }
    return { inputs, targets };
  }
}

/** Where a sequential pass stands: the epoch, and how many of its windows were drawn. */
export interface DataPosition {
  epoch: number;
  next: number;
}

/**
 * llm.c's order: the stream cut into windows of T tokens (each with the token after it, for the
 * targets), every window once an epoch, in an order drawn anew each epoch from the seed. The order
 * is a keyed permutation, not a table, so memory does not grow with the data. A job's ranks take
 * their rows of each batch, as llm.c's processes take their interleaved slices.
 */
export class SequentialSampler {
  readonly windows: number;
  private pos: DataPosition;

  constructor(
    private readonly tokens: TokenData,
    readonly B: number,
    readonly T: number,
    private readonly seed: number,
    at?: DataPosition,
  ) {
    this.windows = Math.floor((tokens.length - 1) / T);
    if (this.windows < 1) throw new GPT2Error(`The data has ${tokens.length} tokens, fewer than one block of ${T} + 1.`);
    this.pos = at ? { ...at } : { epoch: 0, next: 0 };
  }

  position(): DataPosition {
    return { ...this.pos };
  }

  next(): Batch {
    const { B, T } = this, inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      if (this.pos.next === this.windows) this.pos = { epoch: this.pos.epoch + 1, next: 0 };
      const w = windowOf(this.tokens, permuted(this.pos.next++, this.windows, this.seed, this.pos.epoch) * T, T + 1);
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = w[t];
        targets[b * T + t] = w[t + 1];
      }
    }
    return { inputs, targets };
  }
}

/**
 * i's place in a permutation of [0, n) keyed by (seed, epoch): a 4-round Feistel network over the
 * smallest even number of bits that holds n, walking on past values >= n (fewer than 4 steps on
 * average).
 */
export function permuted(i: number, n: number, seed: number, epoch: number): number {
  let bits = 2;
  while (2 ** bits < n) bits += 2;
  const half = bits / 2, mask = 2 ** half - 1;
  const key = (k: number) => mix(mix(seed ^ 0x5bd1e995) ^ Math.imul(epoch + 1, 0x9e3779b9) ^ Math.imul(k + 1, 0x85ebca6b));
  let x = i;
  do {
    let hi = Math.floor(x / 2 ** half), lo = x & mask;
    for (let k = 0; k < 4; k++) [hi, lo] = [lo, (hi ^ mix(lo ^ key(k))) & mask];
    x = hi * 2 ** half + lo;
  } while (x >= n);
  return x;
}

/** murmur3's 32-bit finalizer */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Fixed, non-overlapping evaluation windows (the same every time, so validation losses compare
 * across steps and runs), at most `maxBatches` batches of B.
 */
export function evalBatches(tokens: TokenData, B: number, T: number, maxBatches: number): { B: number; batches: Batch[] } {
  const windows = Math.floor((tokens.length - 1) / T);
  const batches: Batch[] = [];
  for (let w = 0; w + B <= windows && batches.length < maxBatches; w += B) {
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const win = windowOf(tokens, (w + b) * T, T + 1);
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = win[t];
        targets[b * T + t] = win[t + 1];
      }
    }
    batches.push({ inputs, targets });
  }
  if (batches.length === 0 && windows > 0) return evalBatches(tokens, windows, T, 1); // fewer windows than B
  return { B, batches };
}
