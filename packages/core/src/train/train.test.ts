import { describe, expect, it } from 'vitest';
import { createReferenceBackend } from '../backends/reference/index.js';
import { loadFixture } from '../conformance/fixtures.js';
import { GPT2 } from '../model/gpt2.js';
import { BatchSampler, evalBatches, permuted, SequentialSampler, splitTokens } from './data.js';
import { perplexity } from './perplexity.js';
import { learningRate } from './schedule.js';
import { Trainer, type TrainerOptions } from './trainer.js';

const opts: TrainerOptions = {
  batchSize: 2, blockSize: 16, gradAccum: 2, steps: 6, lr: 1e-3, warmup: 2, schedule: 'cosine',
  weightDecay: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, clip: 1.0, seed: 5,
};
const data = Int32Array.from({ length: 400 }, (_, i) => (i * 37 + (i >> 3)) % 997);

describe('schedule', () => {
  it('warms up linearly, then decays to zero at the end', () => {
    expect(learningRate('cosine', 1, 0, 10, 2)).toBe(0.5);
    expect(learningRate('cosine', 1, 1, 10, 2)).toBe(1);
    expect(learningRate('cosine', 1, 2, 10, 2)).toBe(1);
    expect(learningRate('cosine', 1, 6, 10, 2)).toBeCloseTo(0.5, 12);
    expect(learningRate('linear', 1, 6, 10, 2)).toBeCloseTo(0.5, 12);
    expect(learningRate('linear', 1, 10, 10, 2)).toBe(0);
    expect(learningRate('constant', 1, 9, 10, 2)).toBe(1);
  });
});

describe('data', () => {
  it('the keyed permutation is one: every index once, another order per epoch and seed', () => {
    for (const n of [1, 2, 3, 5, 16, 17, 1000, 4097]) {
      const seen = new Set(Array.from({ length: n }, (_, i) => permuted(i, n, 7, 0)));
      expect(seen.size, `n ${n}`).toBe(n);
      expect(Math.max(...seen)).toBe(n - 1);
    }
    const order = (seed: number, epoch: number) => Array.from({ length: 1000 }, (_, i) => permuted(i, 1000, seed, epoch)).join();
    expect(new Set([order(7, 0), order(7, 1), order(8, 0)]).size).toBe(3);
  });
  it("the sequential order draws every window once an epoch (llm.c's), another order each epoch, and continues from a saved position", () => {
    const T = 8, W = Math.floor((data.length - 1) / T);
    const windowOf = (b: { inputs: Int32Array; targets: Int32Array }) => {
      for (let w = 0; w < W; w++) if (b.inputs.every((v, t) => v === data[w * T + t]) && b.targets.every((v, t) => v === data[w * T + t + 1])) return w;
      return -1;
    };
    const a = new SequentialSampler(data, 1, T, 1);
    const first = Array.from({ length: W }, () => windowOf(a.next()));
    expect(new Set(first).size).toBe(W);
    expect(first).not.toContain(-1);
    expect(a.position()).toEqual({ epoch: 0, next: W });
    const second = Array.from({ length: W }, () => windowOf(a.next()));
    expect(new Set(second).size).toBe(W);
    expect(second).not.toEqual(first);
    // rebuilt from a saved position (3 windows a batch, across an epoch's end): the same batches as the uninterrupted one
    const full = new SequentialSampler(data, 3, T, 1);
    for (let k = 0; k < 14; k++) full.next();
    const resumed = new SequentialSampler(data, 3, T, 1, full.position());
    for (let k = 0; k < 30; k++) expect(resumed.next()).toEqual(full.next());
  });
  it('draws windows whose targets are the inputs shifted by one', () => {
    const b = new BatchSampler(data, 3, 8, 1).next();
    for (let r = 0; r < 3; r++) for (let t = 0; t < 7; t++) expect(b.targets[r * 8 + t]).toBe(b.inputs[r * 8 + t + 1]);
  });
  it('splits validation off the end and evaluates fixed windows', () => {
    const { train, val } = splitTokens(data, 0.1, 16);
    expect(train.length + val!.length).toBe(400);
    expect(val![0]).toBe(data[360]);
    const { B, batches } = evalBatches(val!, 2, 16, 10);
    expect(B).toBe(2);
    expect(batches.length).toBe(1); // 39 tokens: two windows of 16 + 1
  });
});

describe('Trainer', () => {
  it('resuming from a saved state gives exactly the losses of an uninterrupted run', async () => {
    const f = loadFixture('gpt2-odd');
    const full = new Trainer(new GPT2(createReferenceBackend(), f.config, f.params), data, opts);
    const want: number[] = [];
    for (let i = 0; i < 6; i++) want.push((await full.trainStep()).loss);
    expect(want[5]).toBeLessThan(want[0]);

    const first = new Trainer(new GPT2(createReferenceBackend(), f.config, f.params), data, opts);
    const got: number[] = [];
    for (let i = 0; i < 3; i++) got.push((await first.trainStep()).loss);
    // what a checkpoint holds: parameters, AdamW moments and step, trainer state
    const params = await first.model.readParams(), optim = (await first.model.readOptimizerState())!, state = first.state();
    const resumedModel = new GPT2(createReferenceBackend(), f.config, params);
    resumedModel.loadOptimizerState(optim);
    const resumed = new Trainer(resumedModel, data, opts, state);
    for (let i = 0; i < 3; i++) got.push((await resumed.trainStep()).loss);
    expect(got).toEqual(want);
  });

  it('averages accumulated micro-batches: 2 x B=1 gives the gradient of one B=2 batch', async () => {
    const f = loadFixture('gpt2-odd');
    const one = new GPT2(createReferenceBackend(), f.config, f.params), two = new GPT2(createReferenceBackend(), f.config, f.params);
    const b = new BatchSampler(data, 2, 16, 9).next();
    await one.forward(b.inputs, 2, 16, b.targets);
    one.zeroGrad();
    one.backward();
    two.zeroGrad();
    for (let k = 0; k < 2; k++) {
      await two.forward(b.inputs.subarray(k * 16, k * 16 + 16), 1, 16, b.targets.subarray(k * 16, k * 16 + 16));
      two.backward(0.5);
    }
    const g1 = await one.readGrads(), g2 = await two.readGrads();
    for (let i = 0; i < g1.length; i += 97) expect(g2[i]).toBeCloseTo(g1[i], 6);
  });
});

describe('perplexity', () => {
  it('equals the labels=ids loss when the text fits, and scores each token once when it does not', async () => {
    const f = loadFixture('gpt2-odd'); // n_positions 40
    const m = new GPT2(createReferenceBackend(), f.config, f.params);
    const ids = data.subarray(0, 30);
    const fit = await perplexity(m, ids);
    const whole = await m.forward(ids.subarray(0, 29), 1, 29, ids.subarray(1, 30));
    expect(fit.loss).toBeCloseTo(whole!, 6);
    expect(fit.tokens).toBe(29);
    const long = await perplexity(m, data.subarray(0, 100), 20);
    expect(long.tokens).toBe(99);
    // stride = context: windows do not overlap, so the mean is the mean of the two windows' losses
    const a = await m.forward(data.subarray(0, 39), 1, 39, data.subarray(1, 40));
    const b = await m.forward(data.subarray(40, 79), 1, 39, data.subarray(41, 80));
    const nonOverlap = await perplexity(m, data.subarray(0, 80), 40);
    // the first token of the second window has no context there (HF's shifted labels drop it too)
    expect(nonOverlap.tokens).toBe(78);
    expect(nonOverlap.loss).toBeCloseTo((a! * 39 + b! * 39) / 78, 6);
    expect(long.perplexity).toBeCloseTo(Math.exp(long.loss), 9);
  });
});
