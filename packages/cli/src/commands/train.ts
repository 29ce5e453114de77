// gpt2 finetune / gpt2 train: data -> tokens -> Trainer, with progress, evaluation, samples,
// checkpoints, exact resume, Ctrl-C saving and a loss curve at the end.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  BestTracker, checkLoraConfig, DataParallel, generate, GPT2, GPT2Error, initLora, NonFiniteLossError, paramTensors, scoreChoices, splitTokens, Trainer, trainTokenizer,
  type Collective, type Evaluation, type GPT2Config, type LoraConfig, type LoraTarget, type Precision, type ScheduleKind, type Tokenizer, type TokenData, type TokenSource, type TrainerOptions, type TrainerState,
} from '@gpt2/core';
import { gpt2Tokenizer, loadAdapterDir, loadTokenizerDir, writeFileAtomic } from '@gpt2/core/node';
import { openBackend } from '../backends.js';
import { readChoiceFile } from './eval.js';
import { expandPaths, loadCorpus } from '../corpus.js';
import { areShards, ShardTokens } from '../shards.js';
import { checkTrainingMemory, initConfig, instantiate, readModel } from '../model-source.js';
import { lossCurveSvg } from '../plot.js';
import { describeStall, joinJob, leaveJob, onStall, reporterFor, runDirFor } from '../distributed.js';
import type { Reporter } from '../report.js';
import { findCheckpoint, loadCheckpoint, loadOptimizer, RunDir, SaveError, type Checkpoint } from '../run-dir.js';

export interface TrainFlags {
  maxShardSize?: string; // weights past this are written as shards
  backend: string;
  threads?: number;
  precision?: Precision;
  model?: string; // finetune
  loraR?: number; // finetune: LoRA adapters of this rank on the frozen model
  loraAlpha?: number;
  loraDropout?: number;
  loraTargets?: string[];
  init?: string; // train
  tokenizer?: string;
  trainTokenizer?: number;
  out?: string;
  resume?: string;
  overwrite?: boolean;
  steps?: number;
  epochs?: number;
  batchSize: number;
  blockSize?: number;
  gradAccum: number;
  lr: number;
  warmup: number;
  lrSchedule: ScheduleKind;
  weightDecay: number;
  clip: number;
  seed: number;
  valSplit: number;
  valData?: string;
  evalEvery: number | 'epoch';
  evalBatches: number;
  dataOrder: 'random' | 'sequential';
  evalHellaswag?: string; // HellaSwag's .jsonl, scored at each evaluation
  hellaswagLimit?: number;
  earlyStop?: number;
  final?: 'best' | 'last';
  sampleEvery: number;
  samplePrompt: string;
  sampleLength: number;
  saveEvery: number | 'epoch';
  keep: number;
  textField: string;
  specials: boolean;
  logEvery?: number;
  json?: boolean;
  zero?: 0 | 1; // under mpirun: AdamW's moments sharded across the ranks (ZeRO-1)
  collectiveTimeout?: number; // seconds a collective may wait before the job stops
}

interface Prepared {
  model: GPT2;
  tok: Tokenizer;
  resumedState?: TrainerState;
  /** Under LoRA: the base model the adapters record. */
  adapterBase?: string;
  /** On resume: the checkpoint's AdamW moments, loaded once data-parallel training knows how they are held. */
  optimizer?: Checkpoint['optimizer'];
}

/** Finetune (from --model) or train from scratch (--init), or resume either. */
export async function runTraining(kind: 'finetune' | 'train', data: string[], f: TrainFlags): Promise<void> {
  // under mpirun, one of many ranks (rank 0 writes and prints); otherwise a job of one
  const comm = await joinJob(f.collectiveTimeout);
  const report = reporterFor(comm);
  const choices = f.evalHellaswag ? await readChoiceFile(f.evalHellaswag, f.hellaswagLimit) : undefined; // read before anything is written
  if (data.length === 0 && !f.resume) throw new GPT2Error('Give at least one data file, folder or glob to train on.');
  if (f.resume && f.overwrite) throw new GPT2Error('--overwrite starts a new run in place of an old one; it does not go with --resume.');
  const noValidation = f.evalEvery === 0 ? '--eval-every is 0' : !f.valData && f.valSplit === 0 ? 'there is no validation data (--val-split 0 and no --val-data)' : undefined;
  if (noValidation && f.earlyStop) throw new GPT2Error(`--early-stop counts evaluations without improvement, but ${noValidation}; hold out data with --val-split or --val-data and evaluate with --eval-every.`);
  if (noValidation && f.final === 'best') throw new GPT2Error(`--final best keeps the checkpoint with the lowest validation loss, but ${noValidation}; hold out data with --val-split or --val-data, or use --final last.`);
  // one run per folder, one process per run: settled before any work
  const run = runDirFor(comm, f.resume ? f.out ?? dirname(findCheckpoint(f.resume)) : f.out ?? defaultRunDir(kind));
  if (!f.resume && !f.overwrite && run.holdsRun()) {
    throw new GPT2Error(`${run.dir} already holds a run; continue it with --resume ${run.dir}, or replace it with --overwrite (or choose another --out).`);
  }
  const took = run.lock();
  if (took) report.line(took);
  for (const d of await run.removeStale()) report.line(`note: removed ${join(run.dir, d)}, left by an interrupted save`);
  const { backend, failures } = await openBackend(f);
  for (const fl of failures) if (fl.name !== 'cpu') report.line(`note: backend ${fl.name} unavailable (${fl.reason})`); // cpu's: openBackend's note
  report.line(`backend: ${backend.name}${f.precision && f.precision !== 'fp32' ? ` (--precision ${f.precision})` : ''}${comm.size > 1 ? ` on each of ${comm.size} ranks (mpirun)${f.zero ? ', ZeRO-1' : ''}` : ''}`);

  const zeroRanks = f.zero ? comm.size : undefined;
  const p = f.resume ? await prepareResume(f, backend, zeroRanks) : kind === 'finetune' ? await prepareFinetune(f, backend, report, zeroRanks) : await prepareScratch(data, f, backend, report, zeroRanks);
  const { model, tok } = p;
  // every rank from rank 0's weights; under ZeRO-1 each loads its own part of the moments
  const dp = await DataParallel.create(comm, model, { zero: f.zero });
  await dp.broadcastWeights();
  if (p.optimizer) await loadOptimizer(model, p.optimizer);
  run.adapterBase = p.adapterBase ?? null;
  run.maxShardSize = f.maxShardSize;
  if (f.resume) {
    const info = JSON.parse(await readFile(join(run.dir, 'run.json'), 'utf8')) as { data: string[]; options?: { precision?: Precision } };
    if (data.length === 0) data = info.data;
    // --backend and --precision are this machine's to choose, not run.json's: say when the products round otherwise than before
    const was = info.options?.precision ?? 'fp32', now = f.precision ?? 'fp32';
    if (was !== now) report.line(`note: this run trained with --precision ${was} and continues in ${now} (--backend and --precision are not taken from run.json); add --precision ${was} to continue as it began.`);
  }
  const nPos = model.config.nPositions;
  let block = blockSize(f, model.config);
  if (!(Number.isInteger(block) && block >= 1)) throw new GPT2Error(`--block-size must be a whole number >= 1 (got ${block}).`);
  if (block > nPos) throw new GPT2Error(`--block-size ${block} is larger than the model's context of ${nPos}; use ${nPos} or less.`);

  const cacheDir = join(dirname(run.dir), '.token-cache');
  const corpusOpts = { textField: f.textField, specials: f.specials, cacheDir, onProgress: (m: string) => report.line(m) };
  // text is tokenized (and cached); token shards (.bin) are read from disk a window at a time
  const load = async (paths: string[]): Promise<TokenData> => {
    const files = await expandPaths(paths);
    if (!areShards(files)) {
      const corpus = await loadCorpus(files, tok, corpusOpts);
      report.line(`data: ${corpus.tokens.length} tokens from ${corpus.files.length} file(s)${corpus.fromCache ? ' (cached)' : ''}`);
      return corpus.tokens;
    }
    if (f.trainTokenizer) throw new GPT2Error('Token shards (.bin) hold GPT-2 token ids already; --train-tokenizer trains a tokenizer on text. Drop it, or train on the text.');
    const shards = ShardTokens.open(files, model.config.vocabSize);
    const formats = [...new Set(shards.shards.map((x) => x.format))].join(' and ');
    report.line(`data: ${shards.length} tokens in ${files.length} ${formats} shard(s), read from disk as training goes`);
    return shards;
  };
  let train = await load(data), val: TokenData | undefined;
  if (f.valData) val = await load([f.valData]);
  else ({ train, val } = splitTokens(train, f.valSplit, block));
  if (train.length < block + 1) {
    report.warn(`the training data has only ${train.length} tokens, less than one block of ${block} + 1; training on blocks of ${train.length - 1}.`);
    block = train.length - 1;
    if (block < 1) throw new GPT2Error('The training data is too short to train on (fewer than 2 tokens).');
  }
  const perStep = f.batchSize * comm.size * block * f.gradAccum; // tokens a step takes, on every rank together
  const steps = f.steps ?? (f.epochs !== undefined ? Math.max(1, Math.ceil((f.epochs * train.length) / perStep)) : 1000);
  const opts: TrainerOptions = {
    batchSize: f.batchSize, blockSize: block, gradAccum: f.gradAccum, steps, lr: f.lr, warmup: Math.min(f.warmup, steps),
    schedule: f.lrSchedule, weightDecay: f.weightDecay, beta1: 0.9, beta2: 0.999, eps: 1e-8, clip: f.clip, seed: f.seed, dataOrder: f.dataOrder,
  };
  const wasOrder = p.resumedState && (p.resumedState.order ? 'sequential' : 'random');
  if (wasOrder && wasOrder !== f.dataOrder) throw new GPT2Error(`The checkpoint drew its data in the ${wasOrder} order; resume with --data-order ${wasOrder} to continue as it began.`);
  if (!val && (f.earlyStop || f.final === 'best')) {
    throw new GPT2Error(`${f.earlyStop ? '--early-stop' : '--final best'} needs validation data, but the data is too short to hold out a validation part of one block; add --val-data.`);
  }
  await sameEverywhere(comm, train, val, { kind, data, f });
  const was = p.resumedState?.globalBatch ?? (p.resumedState && f.batchSize);
  if (was && was !== f.batchSize * comm.size) {
    report.line(`note: the checkpoint drew ${was} windows per micro-batch and this run draws ${f.batchSize * comm.size} (${comm.size} rank(s) x --batch-size ${f.batchSize}): each step sees a different number of tokens from here on, and the data order differs from an uninterrupted run; the step count, learning-rate schedule and optimizer state continue as they were.`);
  }
  const trainer = new Trainer(model, train, opts, p.resumedState, dp);
  const tracker = new BestTracker(f.earlyStop ?? 0, p.resumedState?.best);
  const final = f.final ?? (val && f.evalEvery !== 0 ? 'best' : 'last');
  // an epoch ends at the step whose tokens cross a multiple of the training set
  const epochAt = (step: number) => (step * perStep) / train.length;
  const endsEpoch = (step: number) => Math.floor(epochAt(step)) > Math.floor(epochAt(step - 1));
  const every = (n: number | 'epoch', step: number) => (n === 'epoch' ? endsEpoch(step) : n > 0 && step % n === 0);
  if (trainer.step >= steps) throw new GPT2Error(`The checkpoint is already at step ${trainer.step} of ${steps}; pass a larger --steps to train further.`);
  if (f.overwrite && run.holdsRun()) {
    report.line(`--overwrite: removing the old run in ${run.dir}`);
    await run.clear(); // only now that the new model and data have loaded
  }
  if (p.resumedState) await run.forgetMetricsAfter(p.resumedState.step);
  await run.init({ command: kind, data, options: { ...f, steps, blockSize: block }, model: model.config, tokenizerVocab: tok.vocabSize, backend: backend.name, ranks: comm.size });
  const lc = model.lora?.config;
  const trained = lc ? ` (LoRA r=${lc.r}, alpha ${lc.alpha} on ${lc.targets.join(', ')}: ${model.trainableParams.toLocaleString('en-US')} trained, the rest frozen)` : '';
  report.line(`run: ${run.dir} | ${model.numParams.toLocaleString('en-US')} parameters${trained} | ${steps} steps of ${perStep} tokens${val ? ` | validation ${val.length} tokens` : ''}`);

  // Ctrl-C (under mpirun: its SIGTERM to every rank) saves after this step; every rank agrees on which step
  let interrupted = false, stopping = false;
  // an agreed stop ends the job cleanly (MPI_Finalize, then exit handlers such as the lock's); a second Ctrl-C at once
  const quit = (code: number, agreed: boolean) => void leaveJob(agreed ? 0 : code).then(() => process.exit(code));
  const onSigint = () => {
    if (interrupted) quit(130, false);
    interrupted = true;
    if (comm.size === 1) return report.line('interrupt: saving a checkpoint after this step (Ctrl-C again to quit without saving)');
    // mpirun's SIGTERM: Ctrl-C, or another rank ended (mpirun names it); it waits for the save only with a longer odls_base_sigkill_timeout (README)
    report.line(`stopping: mpirun is ending the job; a checkpoint is saved after this step if every rank is still there and mpirun waits for it, else ${resumeHint()}`);
  };
  const signals = comm.size > 1 ? ['SIGINT', 'SIGTERM'] as const : ['SIGINT'] as const;
  for (const s of signals) process.on(s, onSigint);

  let lastGood = run.checkpoints().at(-1);
  const resumeHint = () => (lastGood ? `the last complete checkpoint is ${lastGood}: continue with gpt2 ${kind} --resume ${run.dir}` : 'no checkpoint was saved yet');
  onStall((s, c) => `${describeStall(s, c)}; ${resumeHint()}.`);
  // a save that fails ends the run in one sentence: what remains and how to go on
  const saving = async <T>(save: () => Promise<T>): Promise<T> => {
    try {
      return await save();
    } catch (err) {
      if (!(err instanceof SaveError)) throw err;
      if (!lastGood) throw new GPT2Error(`${err.message}; no checkpoint was saved yet: free some space, then start again with --overwrite`);
      throw new GPT2Error(`${err.message}; the last complete checkpoint is ${lastGood}: free some space, then continue with: gpt2 ${kind} --resume ${run.dir}`);
    }
  };
  // a model save: the ranks must hold the same weights, and none goes on before it is whole
  const checkpointing = async <T>(step: number, save: () => Promise<T>): Promise<T> => {
    comm.arrive(`the save at step ${step}`);
    await dp.checkSameWeights(step);
    const out = await saving(save);
    await comm.barrier();
    return out;
  };
  // HellaSwag at each evaluation, the items shared out across the ranks
  const hellaswag = async (step: number) => {
    if (!choices) return;
    const mine = choices.filter((_, i) => i % comm.size === comm.rank);
    const r = mine.length ? await scoreChoices(model, tok, mine) : { n: 0, acc: 0, accNorm: 0 };
    const [n, right, rightNorm] = await dp.sum([r.n, r.acc * r.n, r.accNorm * r.n], `HellaSwag at step ${step}`);
    report.line(`step ${step}: hellaswag acc ${(right / n).toFixed(4)}, acc_norm ${(rightNorm / n).toFixed(4)} (${n} items)`);
    await saving(() => run.metric({ step, hellaswagAcc: right / n, hellaswagAccNorm: rightNorm / n }));
  };
  const evaluate = async (step: number): Promise<Evaluation | undefined> => {
    await hellaswag(step);
    if (!val) return undefined;
    const { loss, accuracy } = await trainer.evaluate(val, f.evalBatches);
    report.line(`step ${step} (epoch ${epochAt(step).toFixed(2)}): validation loss ${loss.toFixed(4)}, perplexity ${Math.exp(loss).toFixed(2)}, accuracy ${(100 * accuracy).toFixed(2)}%`);
    await saving(() => run.metric({ step, epoch: +epochAt(step).toFixed(4), valLoss: loss, valPerplexity: Math.exp(loss), valAccuracy: accuracy }));
    return { step, valLoss: loss, valAccuracy: accuracy };
  };
  // each evaluation during training: a new best is saved to best/ (never removed by --keep)
  let stopEarly = false;
  const track = async (e: Evaluation) => {
    const { improved, stop } = tracker.observe(e);
    if (improved) {
      await checkpointing(e.step, () => run.saveBest(model, tok, e));
      report.line(`new best: validation loss ${e.valLoss.toFixed(4)} at step ${e.step}, saved to ${join(run.dir, 'best')}`);
    }
    if (stop) {
      const b = tracker.state.best!;
      report.line(`early stop: the validation loss has not improved for ${f.earlyStop} evaluations (best ${b.valLoss.toFixed(4)} at step ${b.step}); stopping at step ${e.step} of ${steps}`);
      stopEarly = true;
    }
  };
  const sample = async (step: number) => {
    if (report.quiet) return; // a rank that prints nothing need not sample
    const prompt = tok.encode(f.samplePrompt, { specials: true });
    const { samples } = await generate(model, tok, prompt, { temperature: 0.8, topK: 40, maxNewTokens: f.sampleLength, seed: step });
    report.line(`----- sample at step ${step} -----\n${f.samplePrompt}${samples[0].text}\n-----`);
  };

  // MFU as nanoGPT's estimate_mfu counts a token: 6 FLOPs a parameter (forward and backward) plus
  // attention's 12 * layers * width * block; against the backend's peak where it knows it
  const { nLayer, nEmbd } = model.config, peak = backend.peakFlops?.();
  const flopsPerToken = 6 * model.numParams + 12 * nLayer * nEmbd * block;
  const startVal = trainer.step === 0 && f.evalEvery !== 0 ? await evaluate(0) : undefined;
  let avg = NaN;
  const bar = report.progress(steps, f.logEvery ?? (steps <= 50 ? 1 : 10));
  const t0 = performance.now(), step0 = trainer.step;
  let tokensSeen = 0, trainMs = 0, lastLoss = NaN, endVal: Evaluation | undefined;
  try {
    while (trainer.step < steps && !stopping && !stopEarly) {
      let r;
      try {
        r = await trainer.trainStep();
      } catch (err) {
        if (err instanceof NonFiniteLossError) {
          bar.stop();
          throw new GPT2Error(`${err.message}${lastGood ? ` The last good checkpoint is ${lastGood}.` : ' No checkpoint was saved yet.'}`);
        }
        throw err;
      }
      [stopping] = (await dp.sum([interrupted ? 1 : 0], `the end of step ${r.step}`)).map((n) => n > 0);
      tokensSeen += r.tokens;
      trainMs += r.ms;
      lastLoss = r.loss;
      avg = Number.isNaN(avg) ? r.loss : 0.9 * avg + 0.1 * r.loss;
      const elapsed = (performance.now() - t0) / 1000;
      const tps = (tokensSeen / trainMs) * 1000; // training time only, not evaluation or samples
      const mfu = peak ? (flopsPerToken * tps) / (peak * comm.size) : undefined; // tps counts every rank's tokens
      bar.update(r.step, { loss: r.loss, avg, lr: r.lr, tps, mfu, etaSeconds: ((steps - r.step) * elapsed) / (r.step - step0) });
      await saving(() => run.metric({ step: r.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSecond: tps, ms: r.ms, ...(mfu !== undefined && { mfu }) }));
      let last = r.step === steps;
      if (f.evalEvery !== 0 && (every(f.evalEvery, r.step) || last)) {
        endVal = await evaluate(r.step);
        if (endVal) await track(endVal);
        last ||= stopEarly;
      }
      if (f.sampleEvery > 0 && r.step % f.sampleEvery === 0 && !last) await sample(r.step);
      if (every(f.saveEvery, r.step) || last || stopping) {
        lastGood = await checkpointing(r.step, () => run.saveCheckpoint(model, tok, { ...trainer.state(), best: tracker.state }, f.keep));
        if (!last) report.line(`saved ${lastGood}`);
      }
    }
  } finally {
    bar.stop();
    for (const s of signals) process.off(s, onSigint);
    const epochs = Array.from({ length: trainer.step }, (_, i) => i + 1).filter(endsEpoch);
    await writeLossCurve(run, kind, epochs, tracker.state.best).catch((err) => report.warn(`the loss curve was not written (${(err as Error).message})`));
  }
  if (stopping) {
    report.line(`interrupted at step ${trainer.step}; checkpoint saved to ${lastGood}. Continue with: gpt2 ${kind} --resume ${run.dir}`);
    quit(130, true);
    return;
  }
  const modelDir = join(run.dir, 'model'), best = tracker.state.best;
  if (final === 'best' && best && best.step !== trainer.step) {
    await checkpointing(trainer.step, () => run.copyBestTo(modelDir));
    report.line(`model/ holds the best checkpoint: step ${best.step}, validation loss ${best.valLoss.toFixed(4)} (--final best); the last weights are in ${lastGood}`);
  } else {
    await checkpointing(trainer.step, () => run.saveModel(model, tok));
  }
  await saving(() => run.record({ best: best ?? null, final, stoppedEarly: stopEarly ? trainer.step : null }));
  if (f.sampleEvery > 0) await sample(trainer.step);
  const summary = {
    runDir: run.dir, modelDir, steps: trainer.step, finalLoss: lastLoss, valLossStart: startVal?.valLoss, valLossEnd: endVal?.valLoss,
    valAccuracyEnd: endVal?.valAccuracy, best, final, stoppedEarly: stopEarly, tokensPerSecond: (tokensSeen / trainMs) * 1000, lossCurve: join(run.dir, 'loss.svg'),
  };
  if (f.json && !report.quiet) process.stdout.write(JSON.stringify(summary) + '\n');
  else if (model.lora) report.line(`done: LoRA adapter saved to ${modelDir} (loss curve: ${summary.lossCurve}); generate with: gpt2 generate --adapter ${modelDir}, or fold it in with: gpt2 merge --adapter ${modelDir} --out DIR`);
  else report.line(`done: model saved to ${modelDir} (loss curve: ${summary.lossCurve})`);
}

async function writeLossCurve(run: RunDir, kind: string, epochs: number[], best?: Evaluation): Promise<void> {
  const metrics = await run.readMetrics();
  const train = metrics.filter((m) => m.loss !== undefined).map((m) => [m.step, m.loss] as [number, number]);
  if (train.length === 0) return;
  const smooth: [number, number][] = [];
  let avg = train[0][1];
  for (const [s, l] of train) smooth.push([s, (avg = 0.9 * avg + 0.1 * l)]);
  const evals = metrics.filter((m) => m.valLoss !== undefined), hs = metrics.filter((m) => m.hellaswagAccNorm !== undefined);
  const svg = lossCurveSvg(
    [
      { name: 'train loss', color: '#9ecae1', points: train },
      { name: 'train loss (running mean)', color: '#08519c', points: smooth },
      { name: 'validation loss', color: '#e6550d', points: evals.map((m) => [m.step, m.valLoss]), dots: true },
    ],
    `gpt2 ${kind}: ${run.dir}`,
    {
      right: evals.some((m) => m.valAccuracy !== undefined) || hs.length
        ? {
            label: 'accuracy',
            series: [
              { name: 'validation accuracy', color: '#31a354', points: evals.filter((m) => m.valAccuracy !== undefined).map((m) => [m.step, m.valAccuracy]), dots: true },
              { name: 'HellaSwag acc_norm', color: '#756bb1', points: hs.map((m) => [m.step, m.hellaswagAccNorm]), dots: true },
            ],
          }
        : undefined,
      marks: [
        ...epochs.map((x, i) => ({ x, label: `epoch ${i + 1}` })),
        ...(best ? [{ x: best.step, label: `best: step ${best.step}`, color: '#e6550d' }] : []),
      ],
    },
  );
  await run.writeFile('loss.svg', svg);
}

/** --block-size, by default the whole context up to 1024. */
const blockSize = (f: TrainFlags, config: GPT2Config) => f.blockSize ?? Math.min(1024, config.nPositions);

const defaultRunDir = (kind: string) => join('runs', `${kind}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`);

async function prepareFinetune(f: TrainFlags, backend: Awaited<ReturnType<typeof openBackend>>['backend'], report: Reporter, zeroRanks?: number): Promise<Prepared> {
  const read = await readModel(f.model ?? 'gpt2', report);
  const B = f.batchSize, T = blockSize(f, read.config);
  if (f.loraR === undefined) {
    checkTrainingMemory(backend, read.config, B, T, undefined, false, zeroRanks);
    const { model, tokenizer } = await instantiate(backend, read);
    return { model, tok: tokenizer };
  }
  const lc: LoraConfig = { r: f.loraR, alpha: f.loraAlpha ?? 2 * f.loraR, dropout: f.loraDropout ?? 0, targets: (f.loraTargets ?? []) as LoraTarget[] };
  checkLoraConfig(read.config, lc);
  checkTrainingMemory(backend, read.config, B, T, lc);
  const { model } = await instantiate(backend, read, 'fp32', { config: lc, params: initLora(read.config, lc, f.seed), seed: f.seed });
  // the base as the adapter records it: a local folder by its absolute path, else the hub id
  return { model, tok: read.tokenizer, adapterBase: existsSync(read.base) ? resolve(read.base) : read.base };
}

async function prepareScratch(data: string[], f: TrainFlags, backend: Awaited<ReturnType<typeof openBackend>>['backend'], report: Reporter, zeroRanks?: number): Promise<Prepared> {
  if (!f.init) throw new GPT2Error('gpt2 train needs --init with a model size (gpt2, gpt2-medium, ...) or a config.json.');
  if (f.tokenizer && f.trainTokenizer) throw new GPT2Error('Give either --tokenizer or --train-tokenizer, not both.');
  let config = initConfig(f.init);
  let tok: Tokenizer;
  if (f.trainTokenizer) {
    report.line(`training a ${f.trainTokenizer}-token BPE tokenizer on the data`);
    const texts: string[] = [];
    for (const file of await expandPaths(data)) texts.push(await readFile(file, 'utf8'));
    tok = trainTokenizer(texts, { vocabSize: f.trainTokenizer });
  } else if (f.tokenizer) {
    tok = await loadTokenizerDir(f.tokenizer);
  } else {
    tok = await gpt2Tokenizer();
  }
  if (config.vocabSize !== tok.vocabSize) {
    report.line(`vocab_size set to the tokenizer's ${tok.vocabSize} (the config said ${config.vocabSize})`);
    config = { ...config, vocabSize: tok.vocabSize };
  }
  if (tok.eosId !== undefined) config = { ...config, bosTokenId: tok.eosId, eosTokenId: tok.eosId };
  checkTrainingMemory(backend, config, f.batchSize, blockSize(f, config), undefined, true, zeroRanks);
  const model = new GPT2(backend, config, GPT2.initParams(config, f.seed));
  return { model, tok };
}

async function prepareResume(f: TrainFlags, backend: Awaited<ReturnType<typeof openBackend>>['backend'], zeroRanks?: number): Promise<Prepared> {
  const dir = findCheckpoint(f.resume!);
  const ck = await loadCheckpoint(dir);
  let model: GPT2;
  if (ck.config && ck.adapterBase === undefined) checkTrainingMemory(backend, ck.config, f.batchSize, blockSize(f, ck.config), undefined, true, zeroRanks);
  if (ck.adapterBase !== undefined) {
    // a LoRA run: the base it records, the adapters of the checkpoint
    const base = await readModel(ck.adapterBase);
    const a = await loadAdapterDir(dir, base.config);
    model = (await instantiate(backend, base, 'fp32', { config: a.config, params: a.params, seed: f.seed })).model;
  } else {
    model = await GPT2.load(backend, ck.config!, paramTensors(ck.config!, ck.store!));
  }
  return { model, tok: ck.tokenizer, resumedState: ck.state, adapterBase: ck.adapterBase, optimizer: ck.optimizer };
}

/**
 * Every rank of a job must train on the same tokens with the same flags (every machine reads its
 * own copy of the files): a hash of each, compared at the start; a difference names the rank.
 */
async function sameEverywhere(comm: Collective, train: TokenData, val: TokenData | undefined, flags: object): Promise<void> {
  if (comm.size === 1) return;
  const hash = (parts: (Uint8Array | string)[]) => {
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return h.digest();
  };
  const bytes = (t?: TokenData): Uint8Array[] => (!t ? [] : 'window' in t ? fingerprint(t) : [new Uint8Array(t.buffer, t.byteOffset, t.byteLength)]);
  const mine = new Uint8Array(64);
  mine.set(hash([...bytes(train), '|', ...bytes(val)]), 0);
  mine.set(hash([JSON.stringify(flags)]), 32);
  const all = await comm.allGatherBytes(mine);
  for (let r = 1; r < all.length; r++) {
    const where = `rank ${r} (${comm.hosts[r]})`;
    if (!equal(all[r].subarray(32), all[0].subarray(32))) throw new GPT2Error(`${where} was started with other options or data paths than rank 0 (${comm.hosts[0]}); start every rank with the same command.`);
    if (!equal(all[r].subarray(0, 32), all[0].subarray(0, 32))) throw new GPT2Error(`${where} read other training data than rank 0 (${comm.hosts[0]}) from the same paths; every machine needs the same files at the same paths.`);
  }
}

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** shards by their sizes and first and last tokens; a slice of them (a validation split) by its windows at both ends */
function fingerprint(t: TokenSource): Uint8Array[] {
  if (t instanceof ShardTokens) return t.fingerprint();
  const n = Math.min(t.length, 32768), u16 = (a: ArrayLike<number>) => new Uint8Array(Uint16Array.from(a).buffer);
  return [new TextEncoder().encode(`${t.length}|`), u16(t.window(0, n)), u16(t.window(t.length - n, n))];
}
