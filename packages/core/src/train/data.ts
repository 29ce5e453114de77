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
