// Text generation: prefill the prompt once, then one position per step through the KV cache,
// for a batch of samples at a time. When a sample reaches the context length it slides: the cache
// is rebuilt from the last `slideKeep` of the window and decoding goes on, so any length works.
import { GPT2Error } from '../errors.js';
import type { GPT2 } from '../model/gpt2.js';
import { StreamDecoder, type Tokenizer } from '../tokenizer/tokenizer.js';
import { argmax, buildProcessors, scratch64, type LogitsProcessor, type SamplingOptions } from './processors.js';
import { Rng } from './rng.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number; // 200
  nsamples?: number; // 1
  batchSize?: number; // = nsamples
  seed?: number; // 0
  /** Stop a sample when its text contains any of these; the text is cut before it. */
  stop?: string[];
  /** Stop a sample at <|endoftext|> (not included in the text). Default true. */
  stopAtEos?: boolean;
  /** Fraction of the context kept when sliding past n_positions. Default 0.75. */
  slideKeep?: number;
  /** Called with one-sentence warnings (a prompt cut to fit, ...). */
  onWarning?: (message: string) => void;
}

export interface StreamEvent {
  sample: number;
  /** New text of this sample: complete characters only, never part of a stop string. */
  text: string;
  /** The sample has finished (its last event). */
  done: boolean;
  /** With `done`: every generated id, including a stop-string's tokens or the end-of-text that ended it. */
  tokens?: number[];
}

export interface GeneratedSample {
  text: string;
  /** Generated ids, including a stop-string's tokens or end-of-text that ended it. */
  tokens: number[];
}

export function checkGenerateOptions(o: GenerateOptions): Required<Pick<GenerateOptions, 'maxNewTokens' | 'nsamples' | 'batchSize' | 'seed' | 'slideKeep'>> {
  const maxNewTokens = o.maxNewTokens ?? 200, nsamples = o.nsamples ?? 1, batchSize = o.batchSize ?? nsamples;
  const seed = o.seed ?? 0, slideKeep = o.slideKeep ?? 0.75;
  const int = (v: number, min: number) => Number.isInteger(v) && v >= min;
  if (!int(maxNewTokens, 0)) throw new GPT2Error(`max-new-tokens must be a whole number >= 0 (got ${maxNewTokens}).`);
  if (!int(nsamples, 1)) throw new GPT2Error(`nsamples must be a whole number >= 1 (got ${nsamples}).`);
  if (!int(batchSize, 1)) throw new GPT2Error(`batch-size must be a whole number >= 1 (got ${batchSize}).`);
  if (!int(seed, 0)) throw new GPT2Error(`seed must be a whole number >= 0 (got ${seed}).`);
  if (!(slideKeep > 0 && slideKeep < 1)) throw new GPT2Error(`slideKeep must be between 0 and 1 (got ${slideKeep}).`);
  if (o.stop?.some((s) => s === '')) throw new GPT2Error('A stop text must not be empty.');
  return { maxNewTokens, nsamples, batchSize, seed, slideKeep };
}

/** One sample's decoding state: its RNG, logits processors, ids and text; shared by generateStream and the server. */
export class SampleSequence {
  readonly rng: Rng;
  readonly ids: number[]; // prompt + generated
  readonly generated: number[] = [];
  /** Decoded continuation so far (cut before a stop text once done). */
  text = '';
  emitted = 0; // characters of text already streamed
  done = false;
  /** Why it finished: 'stop' (end-of-text or a stop text) or 'length' (maxNewTokens). */
  finishReason?: 'stop' | 'length';
  private readonly decoder: StreamDecoder;

  constructor(
    private readonly plan: SamplingPlan, readonly index: number, prompt: ArrayLike<number>, seed: number,
  ) {
    this.rng = new Rng(seed * 1_000_003 + index);
    this.ids = Array.from(prompt);
    this.decoder = new StreamDecoder(plan.tok, { skipSpecials: true });
  }

  /**
   * Picks the next id from this sequence's logits row (edited in place by the processors), appends
   * it and returns what may now be shown: new text, and `done` on its last event. maxNewTokens ends it with 'length'.
   */
  next(row: Float32Array): { id: number; event?: StreamEvent } {
    const p = this.plan;
    for (const proc of p.processors) proc(row, this.ids, this.generated.length);
    const id = p.greedy ? argmax(row) : draw(row, this.rng);
    this.ids.push(id);
    this.generated.push(id);
    const event = this.advance(id) ?? (this.generated.length >= p.maxNewTokens ? this.finish(this.text.length, 'length') : undefined);
    return { id, event };
  }

  /** Ends the sequence where it stands (the caller stopped it), returning its last event. */
  finish(end: number, reason: 'stop' | 'length'): StreamEvent {
    this.done = true;
    this.finishReason = reason;
    if (end === this.text.length) this.text += this.decoder.flush();
    else this.text = this.text.slice(0, end);
    const text = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return { sample: this.index, text, done: true, tokens: this.generated };
  }

  private advance(id: number): StreamEvent | undefined {
    const p = this.plan;
    if (p.stopAtEos && id === p.tok.eosId) return this.finish(this.text.length, 'stop');
    this.text += this.decoder.push(id);
    for (const stop of p.stops) {
      const at = this.text.indexOf(stop, Math.max(0, this.emitted - stop.length));
      if (at >= 0) return this.finish(at, 'stop');
    }
    if (this.generated.length >= p.maxNewTokens) return undefined; // finished by next() with 'length'
    const safe = this.text.length - p.holdBack;
    if (safe <= this.emitted) return undefined;
    const text = this.text.slice(this.emitted, safe);
    this.emitted = safe;
    return { sample: this.index, text, done: false };
  }
}

/** What every sample of one request shares: the processors and the rules for stopping. */
export interface SamplingPlan {
  tok: Tokenizer;
  processors: LogitsProcessor[];
  greedy: boolean;
  stops: string[];
  holdBack: number; // characters held back that could start a stop text
  stopAtEos: boolean;
  maxNewTokens: number;
}

export function samplingPlan(tok: Tokenizer, opts: GenerateOptions): SamplingPlan {
  const stops = opts.stop ?? [];
  return {
    tok, processors: buildProcessors(opts, tok.eosId), greedy: !opts.temperature, stops,
    holdBack: Math.max(0, ...stops.map((s) => s.length - 1)), stopAtEos: opts.stopAtEos ?? true,
    maxNewTokens: checkGenerateOptions(opts).maxNewTokens,
  };
}

/**
 * Streams samples of a continuation of `prompt` (ids). Samples run `batchSize` at a time; each
 * has its own RNG seeded from (seed, sample index), so results do not depend on the batch size.
 */
export async function* generateStream(model: GPT2, tok: Tokenizer, prompt: ArrayLike<number>, opts: GenerateOptions = {}): AsyncGenerator<StreamEvent> {
  const { maxNewTokens, nsamples, batchSize, seed, slideKeep } = checkGenerateOptions(opts);
  const plan = samplingPlan(tok, opts);
  const maxT = model.config.nPositions;

  let promptIds = Array.from(prompt);
  if (promptIds.length === 0) {
    if (tok.eosId === undefined) throw new GPT2Error('An empty prompt needs an <|endoftext|> token to start from; give a prompt.');
    promptIds = [tok.eosId]; // unconditional samples start from end-of-text, as GPT-2's own sampler
  }
  if (promptIds.length >= maxT) {
    opts.onWarning?.(`The prompt has ${promptIds.length} tokens, more than the model's context of ${maxT}; only its last ${maxT - 1} are used.`);
    promptIds = promptIds.slice(promptIds.length - (maxT - 1));
  }
  if (maxNewTokens === 0) {
    for (let i = 0; i < nsamples; i++) yield { sample: i, text: '', done: true, tokens: [] };
    return;
  }

  for (let first = 0; first < nsamples; first += batchSize) {
    const B = Math.min(batchSize, nsamples - first);
    const seqs = Array.from({ length: B }, (_, b) => new SampleSequence(plan, first + b, promptIds, seed));
    const cache = model.createCache(B);
    try {
      const V = model.config.vocabSize;
      let logits = await cache.feed(Int32Array.from(seqs.flatMap((s) => s.ids)), promptIds.length);
      for (;;) {
        const next = new Int32Array(B);
        for (let b = 0; b < B; b++) {
          const s = seqs[b];
          if (s.done) {
            next[b] = s.ids[s.ids.length - 1]; // keeps the batch in step (same lengths); never read
            s.ids.push(next[b]);
            continue;
          }
          const { id, event } = s.next(logits.slice(b * V, (b + 1) * V));
          next[b] = id;
          if (event) yield event;
        }
        if (seqs.every((s) => s.done)) break;
        if (cache.pos + 1 > maxT) {
          // slide: keep the last part of the window and rebuild the cache from it
          const keep = Math.max(1, Math.floor(maxT * slideKeep));
          cache.reset();
          logits = await cache.feed(Int32Array.from(seqs.flatMap((s) => s.ids.slice(-keep))), keep);
        } else {
          logits = await cache.feed(next, 1);
        }
      }
    } finally {
      cache.dispose();
    }
  }
}

let nativeDraw: ((row: Float32Array, u: number) => number) | undefined;

/**
 * A native draw for the row and uniform number draw() would use, giving the same id (the cpu
 * addon's: the same exponentials as Math.exp, eight at a time), or undefined for JavaScript's.
 */
export function useNativeDraw(fn: ((row: Float32Array, u: number) => number) | undefined): void {
  nativeDraw = fn;
}

/**
 * Samples an id from softmax(logits) with one uniform draw (inverse CDF in id order). The same
 * arithmetic as softmax() then a cumulative sum, in one reused buffer, stopping at the id drawn.
 * (The uniform number does not depend on the row, so the native draw takes it first.)
 */
export function draw(logits: Float32Array, rng: Rng): number {
  if (nativeDraw) return nativeDraw(logits, rng.random());
  return drawJs(logits, rng);
}

/** draw() in JavaScript: what a native draw must equal. */
export function drawJs(logits: Float32Array, rng: Rng): number {
  const n = logits.length, e = scratch64(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  // exp(x - max) of the tokens that may be drawn; those at -Infinity (top-k, top-p, a ban) are exactly 0
  // and add nothing to the sum nor to the running total below, so they are skipped, not exponentiated
  const live = max !== -Infinity;
  let sum = 0, m = 0;
  const ids = liveIds(n);
  for (let i = 0; i < n; i++) {
    const x = logits[i];
    if (live && x === -Infinity) continue;
    sum += e[m] = Math.exp(x - max);
    ids[m++] = i;
  }
  const u = rng.random();
  let cum = 0;
  for (let j = 0; j < m; j++) {
    cum += e[j] / sum;
    if (u < cum) return ids[j];
  }
  return argmax(logits); // rounding left u above the total
}

let idScratch = new Uint32Array(0);
const liveIds = (n: number) => (idScratch.length >= n ? idScratch : (idScratch = new Uint32Array(n)));

/** Generates every sample to completion. tokensPerSecond counts generated ids of all samples over the wall time. */
export async function generate(
  model: GPT2, tok: Tokenizer, prompt: ArrayLike<number>, opts: GenerateOptions = {},
): Promise<{ samples: GeneratedSample[]; tokensPerSecond: number }> {
  const samples: GeneratedSample[] = Array.from({ length: opts.nsamples ?? 1 }, () => ({ text: '', tokens: [] }));
  const t0 = performance.now();
  for await (const e of generateStream(model, tok, prompt, opts)) {
    samples[e.sample].text += e.text;
    if (e.tokens) samples[e.sample].tokens = e.tokens;
  }
  const seconds = (performance.now() - t0) / 1000;
  const total = samples.reduce((n, s) => n + s.tokens.length, 0);
  return { samples, tokensPerSecond: seconds > 0 ? total / seconds : 0 };
}
