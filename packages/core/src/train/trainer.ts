// The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW with
// a warmup + decay schedule. Everything a resumed run needs is in `state()`.
import { GPT2Error } from '../errors.js';
import type { GPT2 } from '../model/gpt2.js';
import type { BestState } from './best.js';
import { BatchSampler, evalBatches, type Tokens } from './data.js';
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
}

export interface TrainerState {
  step: number;
  rng: number[];
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
  tokens: number; // tokens processed by this step
  ms: number;
}

export class NonFiniteLossError extends GPT2Error {
  constructor(readonly step: number, value: number, what = 'loss') {
    super(`The ${what} became ${value} at step ${step + 1}; lower the learning rate (--lr) or raise --warmup, and resume from the last checkpoint.`);
  }
}

export class Trainer {
  step: number;
  private readonly sampler: BatchSampler;

  constructor(
    readonly model: GPT2,
    train: Tokens,
    readonly opts: TrainerOptions,
    state?: TrainerState,
  ) {
    this.step = state?.step ?? 0;
    this.sampler = new BatchSampler(train, opts.batchSize, opts.blockSize, state ? Uint32Array.from(state.rng) : opts.seed);
  }

  state(): TrainerState {
    return { step: this.step, rng: [...this.sampler.rng.state()] };
  }

  /** One optimizer step. Throws NonFiniteLossError (before updating the weights) if the loss is NaN or infinite. */
  async trainStep(): Promise<StepResult> {
    const o = this.opts, m = this.model, t0 = performance.now();
    m.zeroGrad();
    let loss = 0;
    for (let k = 0; k < o.gradAccum; k++) {
      const { inputs, targets } = this.sampler.next();
      const l = await m.forwardBackward(inputs, o.batchSize, o.blockSize, targets, 1 / o.gradAccum);
      if (!Number.isFinite(l)) throw new NonFiniteLossError(this.step, l);
      loss += l / o.gradAccum;
    }
    const lr = learningRate(o.schedule, o.lr, this.step, o.steps, o.warmup);
    const gradNorm = await m.gradNorm();
    if (!Number.isFinite(gradNorm)) throw new NonFiniteLossError(this.step, gradNorm, 'gradient norm'); // before the update: nothing spoilt
    await m.update({ lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, clip: o.clip }, gradNorm);
    this.step += 1;
    return { step: this.step, loss, lr, gradNorm, tokens: o.gradAccum * o.batchSize * o.blockSize, ms: performance.now() - t0 };
  }

  /** Mean loss and next-token accuracy over fixed validation windows (up to maxBatches batches), one forward each. */
  async evaluate(val: Tokens, maxBatches = 20): Promise<EvalResult> {
    const T = Math.min(this.opts.blockSize, val.length - 1);
    const { B, batches } = evalBatches(val, this.opts.batchSize, T, maxBatches);
    let sum = 0, correct = 0, counted = 0;
    for (const b of batches) {
      sum += (await this.model.forward(b.inputs, B, T, b.targets))!;
      const a = await this.model.accuracy();
      correct += a.correct;
      counted += a.counted;
    }
    return { loss: sum / batches.length, accuracy: correct / counted };
  }
}
