// The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW with
// a warmup + decay schedule. Everything a resumed run needs is in `state()`.
import { GPT2Error } from '../errors.js';
import type { GPT2 } from '../model/gpt2.js';
import type { BestState } from './best.js';
import { shardRange } from './collective.js';
import { BatchSampler, evalBatches, SequentialSampler, type Batch, type DataPosition, type TokenData } from './data.js';
import type { DataParallel } from './data-parallel.js';
import { learningRate, type ScheduleKind } from './schedule.js';

export interface TrainerOptions {
  batchSize: number;
  blockSize: number;
  gradAccum: number;
  steps: number;
  lr: number;
  warmup: number;
  schedule: ScheduleKind;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clip: number;
  seed: number;
  /** random windows (default), or llm.c's pass over every window once an epoch */
  dataOrder?: 'random' | 'sequential';
}

export interface TrainerState {
  step: number;
  rng: number[];
  /** windows per micro-batch across all ranks (batch size x ranks): the data order depends on it alone */
  globalBatch?: number;
  /** with the sequential order: where its pass stands (rng is then empty) */
  order?: DataPosition;
  /** the best evaluation and early stopping's count, kept by the caller (best.ts) */
  best?: BestState;
}

export interface EvalResult {
  loss: number;
  /** next-token accuracy: the fraction of targets that are the argmax of their logits */
  accuracy: number;
}

export interface StepResult {
  step: number; // optimizer steps done, after this one
  loss: number; // mean over the micro-batches
  lr: number;
  gradNorm: number;
  tokens: number; // tokens processed by this step, on every rank together
  ms: number;
}

export class NonFiniteLossError extends GPT2Error {
  constructor(readonly step: number, value: number, what = 'loss') {
    super(`The ${what} became ${value} at step ${step + 1}; lower the learning rate (--lr) or raise --warmup, and resume from the last checkpoint.`);
  }
}

export class Trainer {
  step: number;
  private readonly sampler: BatchSampler | SequentialSampler;
  private readonly ranks: number;

  /**
   * With `dp` (data-parallel.ts) this is one of dp.size ranks: each micro-batch is dp.size x
   * batchSize windows of one sampler stream that every rank draws alike, of which this rank trains
   * on its own batchSize; losses, gradients and evaluations are the global ones.
   */
  constructor(
    readonly model: GPT2,
    train: TokenData,
    readonly opts: TrainerOptions,
    state?: TrainerState,
    readonly dp?: DataParallel,
  ) {
    this.step = state?.step ?? 0;
    this.ranks = dp?.size ?? 1;
    const B = opts.batchSize * this.ranks;
    this.sampler =
      opts.dataOrder === 'sequential'
        ? new SequentialSampler(train, B, opts.blockSize, opts.seed, state?.order)
        : new BatchSampler(train, B, opts.blockSize, state ? Uint32Array.from(state.rng) : opts.seed);
  }

  state(): TrainerState {
    const s = this.sampler;
    return { step: this.step, ...(s instanceof SequentialSampler ? { rng: [], order: s.position() } : { rng: [...s.rng.state()] }), globalBatch: s.B };
  }

  /** Rows [start, start + count) of a batch of T-token windows. */
  private rows(b: Batch, start: number, count: number, T: number): Batch {
    return { inputs: b.inputs.subarray(start * T, (start + count) * T), targets: b.targets.subarray(start * T, (start + count) * T) };
  }

  /** One optimizer step. Throws NonFiniteLossError (before updating the weights) if the loss is NaN or infinite on any rank. */
  async trainStep(): Promise<StepResult> {
    const o = this.opts, m = this.model, dp = this.dp, N = this.ranks, t0 = performance.now();
    m.zeroGrad();
    dp?.beginStep(this.step + 1);
    let loss = 0;
    for (let k = 0; k < o.gradAccum; k++) {
      const { inputs, targets } = this.rows(this.sampler.next(), (dp?.rank ?? 0) * o.batchSize, o.batchSize, o.blockSize);
      // each rank's mean loss over 1/N of the batch: the sum across ranks is the global mean
      const l = await m.forwardBackward(inputs, o.batchSize, o.blockSize, targets, 1 / (o.gradAccum * N), k === o.gradAccum - 1 ? dp?.ready : undefined);
      loss += l / o.gradAccum;
    }
    if (dp) {
      await dp.finish();
      [loss] = await dp.sum([loss / N], `step ${this.step + 1}'s loss`);
    }
    if (!Number.isFinite(loss)) throw new NonFiniteLossError(this.step, loss);
    const lr = learningRate(o.schedule, o.lr, this.step, o.steps, o.warmup);
    const gradNorm = await (dp ?? m).gradNorm();
    if (!Number.isFinite(gradNorm)) throw new NonFiniteLossError(this.step, gradNorm, 'gradient norm'); // before the update: nothing spoilt
    const adamw = { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip };
    await (dp ? dp.update(adamw, gradNorm) : m.update(adamw, gradNorm));
    this.step += 1;
    return { step: this.step, loss, lr, gradNorm, tokens: o.gradAccum * o.batchSize * N * o.blockSize, ms: performance.now() - t0 };
  }

  /**
   * Mean loss and next-token accuracy over fixed validation windows (up to maxBatches batches of
   * batchSize windows on each rank), one forward each; the ranks share each batch.
   */
  async evaluate(val: TokenData, maxBatches = 20): Promise<EvalResult> {
    const T = Math.min(this.opts.blockSize, val.length - 1), N = this.ranks;
    const { B, batches } = evalBatches(val, this.opts.batchSize * N, T, maxBatches);
    const { start, count } = shardRange(B, this.dp?.rank ?? 0, N);
    let sum = 0, correct = 0, counted = 0;
    for (const b of count > 0 ? batches : []) {
      const { inputs, targets } = this.rows(b, start, count, T);
      const mean = (await this.model.forward(inputs, count, T, targets))!;
      const a = await this.model.accuracy();
      sum += mean * a.counted;
      correct += a.correct;
      counted += a.counted;
    }
    if (this.dp) [sum, correct, counted] = await this.dp.sum([sum, correct, counted], `the evaluation at step ${this.step}`);
    return { loss: sum / counted, accuracy: correct / counted };
  }
}
