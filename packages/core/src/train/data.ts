// Batches for language-model training: random windows of block+1 tokens from one token stream,
// drawn with a seeded RNG whose state is saved with checkpoints, so a resumed run draws the same.
import { GPT2Error } from '../errors.js';
import { Rng } from '../sample/rng.js';

export type Tokens = Uint16Array | Uint32Array | Int32Array;

export interface Batch {
  inputs: Int32Array; // (B, T)
  targets: Int32Array; // (B, T): inputs shifted by one
}

/** Splits off the last `fraction` of the stream for validation (at least one block + 1 when possible). */
export function splitTokens(tokens: Tokens, fraction: number, block: number): { train: Tokens; val?: Tokens } {
  if (!(fraction >= 0 && fraction < 1)) throw new GPT2Error(`val-split must be in [0, 1) (got ${fraction}).`);
  if (fraction === 0) return { train: tokens };
  const valLen = Math.max(Math.floor(tokens.length * fraction), Math.min(block + 1, Math.floor(tokens.length / 2)));
  if (valLen < 2 || tokens.length - valLen < 2) return { train: tokens };
  return { train: tokens.subarray(0, tokens.length - valLen), val: tokens.subarray(tokens.length - valLen) };
}

export class BatchSampler {
  readonly rng: Rng;
  constructor(
    private readonly tokens: Tokens,
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
      const start = this.rng.int(this.tokens.length - T);
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = this.tokens[start + t];
        targets[b * T + t] = this.tokens[start + t + 1];
      }
    }
    return { inputs, targets };
  }
}

/**
 * Fixed, non-overlapping evaluation windows (the same every time, so validation losses compare
 * across steps and runs), at most `maxBatches` batches of B.
 */
export function evalBatches(tokens: Tokens, B: number, T: number, maxBatches: number): { B: number; batches: Batch[] } {
  const windows = Math.floor((tokens.length - 1) / T);
  const batches: Batch[] = [];
  for (let w = 0; w + B <= windows && batches.length < maxBatches; w += B) {
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = (w + b) * T;
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = tokens[start + t];
        targets[b * T + t] = tokens[start + t + 1];
      }
    }
    batches.push({ inputs, targets });
  }
  if (batches.length === 0 && windows > 0) return evalBatches(tokens, windows, T, 1); // fewer windows than B
  return { B, batches };
}
