// gpt2 bench: speed of a randomly initialised model of a named shape, as JSON.
//   --task train:    ms per optimizer step and tokens/s at (batch, seq); with --profile, the ms per
//                    step each kernel takes (backends whose kernels run when called), and the GFLOP/s
//                    of the step's products by shape (to set beside --task matmul's)
//   --task generate: prefill ms, then ms per token and tokens/s of greedy KV-cache decoding, beside
//                    the weight bytes a step reads and this machine's read bandwidth (a 2-thread pass
//                    over 512 MB, same run): the bound, and the share of a token spent outside the
//                    weight reads; with --profile, the ms per token each kernel takes;
//                    --backend onnxruntime times ONNX Runtime on our ONNX export of the same model
//   --task serve:    vLLM's serving benchmark against gpt2 serve (bench-serve.ts)
//   --task matmul:   GFLOP/s of the forward product and the backward pair at GPT-2's shapes, for
//                    1, 8 and batch*seq rows (with GPT2_PEAK_TFLOPS, also as a fraction of that peak)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { argmax, checkLoraConfig, checkpointIoMemory, DataParallel, generationMemory, GPT2, GPT2Error, initLora, LORA_TARGETS, paramLayout, trainingMemory, type Backend, type Buf, type GPT2Config, type LoraConfig, type Precision, type TrainerState, type WeightFormat } from '@gpt2/core';
import { gpt2Tokenizer, weightFilesOf } from '@gpt2/core/node';
import { openBackend } from '../backends.js';
import { joinJob } from '../distributed.js';
import { initConfig, instantiate, readModel, weightFormat } from '../model-source.js';
import { onnxPeer } from '../onnx-peer.js';
import { benchServe, type ServeBenchFlags } from './bench-serve.js';
import { RunDir } from '../run-dir.js';

export interface BenchFlags {
  backend: string;
  threads?: number;
  precision?: Precision;
  quantize?: 'int8';
  task: string;
  init: string;
  batch: number;
  seq: number;
  steps: number;
  promptTokens: number;
  newTokens: number;
  profile?: boolean;
  loraR?: number;
  model?: string;
  save?: string;
  maxShardSize?: string;
  json?: boolean;
  zero?: 0 | 1; // train under mpirun: ZeRO-1
  overlap?: boolean; // train under mpirun: false reduces the gradients after backward instead of during it
}

interface Decoder {
  feed(tokens: Int32Array, T: number): Promise<Float32Array>; // the last position's logits [B, V]
}

/** Prefill ms, then ms per token and tokens/s of greedy decoding, after one warm-up run (with `profiled`, each kernel's ms per token). */
async function decodeFigures(f: BenchFlags, config: GPT2Config, createCache: (B: number) => Decoder, profiled?: ReturnType<typeof profileKernels>, native?: () => Record<string, number>) {
  if (f.promptTokens + f.newTokens > config.nPositions) throw new GPT2Error(`--prompt-tokens + --new-tokens must fit in the context of ${config.nPositions}.`);
  const V = config.vocabSize;
  const run = async () => {
    const cache = createCache(f.batch);
    const t0 = performance.now();
    let logits = await cache.feed(benchIds(config, f.batch * f.promptTokens, 0), f.promptTokens);
    const prefillMs = performance.now() - t0;
    for (const name in profiled?.ms) delete profiled!.ms[name];
    native?.();
    const t1 = performance.now();
    for (let i = 0; i < f.newTokens; i++) {
      const next = Int32Array.from({ length: f.batch }, (_, b) => argmax(logits.subarray(b * V, (b + 1) * V)));
      logits = await cache.feed(next, 1);
    }
    const decodeMs = performance.now() - t1;
    if (native) Object.assign(profiled!.ms, native());
    return { prefillMs, decodeMs };
  };
  await run(); // warm-up
  const { prefillMs, decodeMs } = await run();
  const msPerToken = decodeMs / f.newTokens;
  const profile = profiled && Object.fromEntries(Object.entries(profiled.ms).sort((a, b) => b[1] - a[1]).map(([name, t]) => [name, +(t / f.newTokens).toFixed(3)]));
  if (profile) profile.other = +(msPerToken - Object.values(profiled!.ms).reduce((a, b) => a + b, 0) / f.newTokens).toFixed(3);
  return {
    batch: f.batch, promptTokens: f.promptTokens, newTokens: f.newTokens, prefillMs: +prefillMs.toFixed(1),
    msPerToken: +msPerToken.toFixed(2), tokensPerSecond: +((f.batch * f.newTokens * 1000) / decodeMs).toFixed(2),
    ...(profile ? { msPerTokenByKernel: profile } : {}),
  };
}

/**
 * GB/s of a plain read over a 512 MB buffer with the backend's threads (its sumSquares kernel, the
 * buffer written first: untouched pages all map to one zero page), the best of five: what decoding,
 * which reads every weight once a step, is bound by.
 */
async function readBandwidth(be: Backend): Promise<number> {
  const n = 128 * 2 ** 20, buf = be.alloc(n), out = be.alloc(1);
  be.zero(buf);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    be.kernels.sumSquares(out, buf, n);
    await be.read(out);
    best = Math.min(best, performance.now() - t0);
  }
  be.free(buf);
  be.free(out);
  return (n * 4) / best / 1e6;
}

/** Bytes of weights a decoding step reads (every matrix once, whatever the batch), and the bound they set at `gbps`. */
function decodeBound(config: GPT2Config, weights: WeightFormat, bf16: boolean, gbps: number, batch: number, msPerToken: number) {
  const { tensors } = paramLayout(config);
  const matrices = ['qkvw', 'attprojw', 'fcw', 'fcprojw', 'wte'] as const;
  const elements = matrices.reduce((n, m) => n + tensors[m].size, 0), rows = matrices.reduce((n, m) => n + tensors[m].size / tensors[m].spec.shape(config)[1], 0);
  const bytes = weights === 'int8' ? elements + rows * 4 : elements * (bf16 ? 2 : 4); // int8: a byte each and a float scale per row
  const boundMs = bytes / gbps / 1e6;
  return {
    weightMBPerStep: +(bytes / 1e6).toFixed(1), readGBps: +gbps.toFixed(1), boundTokensPerSecond: +((batch * 1000) / boundMs).toFixed(1),
    fractionOfBound: +(boundMs / msPerToken).toFixed(3), shareOutsideWeightReads: +(1 - boundMs / msPerToken).toFixed(3),
  };
}

/**
 * The generate benchmark on ONNX Runtime, running our ONNX export of the same random model (with
 * --quantize int8 its q8 export: the int8 weights transformers.js's dtype 'q8' runs).
 */
async function benchOnnxRuntime(f: BenchFlags, config: GPT2Config, weights: WeightFormat): Promise<void> {
  if (f.task !== 'generate') throw new GPT2Error(`--backend onnxruntime is a peer for --task generate only (it runs our ONNX export), not ${f.task}.`);
  if (f.precision && f.precision !== 'fp32') throw new GPT2Error(`--backend onnxruntime runs the fp32 export; drop --precision ${f.precision}.`);
  const params = GPT2.initParams(config, 1);
  const peer = await onnxPeer(config, params, f.threads, weights === 'int8');
  const result = {
    task: f.task, backend: peer.name, precision: 'fp32', weights: weights === 'int8' ? 'q8 (onnx)' : 'fp32', model: f.init, params: paramLayout(config).count, device: peer.describe(),
    ...(await decodeFigures(f, config, (B) => peer.createCache(B))), peakRssMB: peakRssMB(),
  };
  process.stdout.write((f.json ? JSON.stringify(result) : JSON.stringify(result, null, 2)) + '\n');
  await peer.dispose();
}

/** The largest of each number across the ranks of a job. */
async function maxOverRanks(comm: Awaited<ReturnType<typeof joinJob>>, xs: number[]): Promise<number[]> {
  const a = Float64Array.from(xs);
  await comm.allReduce(a, 'max');
  return [...a];
}

// deterministic token ids for the benchmarks
const benchIds = (config: GPT2Config, n: number, salt: number) => Int32Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729) % config.vocabSize);

/** Times every kernel call (exact where kernels run when called); returns the running totals in ms. */
/** Each kernel's ms (`ms`), and each product's ms and floating-point operations by kind and shape (`gemm`: "forward 256x768x2304"). */
function profileKernels(be: Backend): { ms: Record<string, number>; gemm: Record<string, { ms: number; flop: number }> } {
  if (be.name !== 'cpu' && be.name !== 'reference') throw new GPT2Error(`--profile times kernels that run when called: use it with --backend cpu or reference, not ${be.name}.`);
  const ms: Record<string, number> = {}, gemm: Record<string, { ms: number; flop: number }> = {};
  // where N, IN, OUT sit in a product's arguments, and whether the weight gradient's product ran (backward)
  const shape: Record<string, (a: unknown[]) => [kind: string, N: number, IN: number, OUT: number, products: number]> = {
    matmulForward: (a) => ['forward', a[4] as number, a[5] as number, a[6] as number, 1],
    matmulGeluForward: (a) => ['forward', a[5] as number, a[6] as number, a[7] as number, 1],
    matmulBackward: (a) => ['backward', a[6] as number, a[7] as number, a[8] as number, a[1] ? 2 : 1],
  };
  const k = be.kernels as unknown as Record<string, (...a: unknown[]) => void>;
  for (const [name, fn] of Object.entries(k)) {
    k[name] = (...a: unknown[]) => {
      const t0 = performance.now();
      fn(...a);
      be.flush?.(); // a backend that queues kernels runs this one now
      const t = performance.now() - t0;
      ms[name] = (ms[name] ?? 0) + t;
      if (!shape[name]) return;
      const [kind, N, IN, OUT, products] = shape[name](a), g = (gemm[`${kind} ${N}x${IN}x${OUT}`] ??= { ms: 0, flop: 0 });
      g.ms += t;
      g.flop += 2 * products * N * IN * OUT;
    };
  }
  return { ms, gemm };
}

/** Bytes of the weight files in a model folder (one file, or the shards), for the load rate. */
const weightFileBytes = async (dir: string) => (await weightFilesOf(dir)).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
const dirBytes = (dir: string) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

// the process's peak resident memory next to what the model's buffers need by arithmetic (memory.ts),
// plus what loading or saving holds on the host (checkpointIoMemory), and what the process held before the model (Node, the addon, the tokenizer)
const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);
const MB = (b: number) => Math.round(b / 2 ** 20);
const memory = (predicted: number, io: number, baseRss: number) => ({
  peakRssMB: peakRssMB(), predictedMB: MB(predicted + io) + baseRss, plan: { modelMB: MB(predicted), checkpointIoMB: MB(io), processBeforeModelMB: baseRss },
});

/**
 * GFLOP/s of out = inp @ W^T (forward) and of dinp, dW (backward) at GPT-2 124M's shapes, timed to
 * completion (sync), alone: the same calls as a training step makes (on a backend with bf16Copies,
 * on the bf16 copies of the weights and inputs a step keeps), to set beside --profile's in-step figures.
 */
async function matmulFigures(be: Backend, rows: number) {
  const SHAPES: [number, number][] = [[768, 2304], [768, 768], [768, 3072], [3072, 768], [768, 50257]]; // IN x OUT
  // a product's operand as a step passes it: the bf16 copy where the backend takes copies
  const operand = (b: Buf, n: number) => {
    if (!be.bf16Copies) return b;
    const c = be.alloc(n, 'bf16');
    be.kernels.roundBf16!(c, b, n);
    return c;
  };
  const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => (((i * 2654435761) % 1000) / 1000 - 0.5));
  const time = async (fn: () => void) => {
    fn();
    await be.sync(); // warm-up
    let reps = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 300 || reps < 3) {
      fn();
      await be.sync();
      reps++;
    }
    return (performance.now() - t0) / reps;
  };
  const forward: Record<string, number> = {}, backward: Record<string, number> = {};
  for (const [IN, OUT] of SHAPES) {
    const w32 = be.alloc(IN * OUT), dw = be.alloc(IN * OUT);
    be.upload(w32, rand(IN * OUT));
    const w = operand(w32, IN * OUT);
    for (const N of [...new Set([1, 8, rows])]) {
      const x32 = be.alloc(N * IN), out = be.alloc(N * OUT), dx = be.alloc(N * IN);
      be.upload(x32, rand(N * IN));
      be.upload(out, rand(N * OUT));
      const x = N > 8 ? operand(x32, N * IN) : x32; // decoding rows stay fp32, as KVCache passes them
      const key = `${N}x${IN}x${OUT}`;
      forward[key] = +((2 * N * IN * OUT) / (await time(() => be.kernels.matmulForward(out, x, w, null, N, IN, OUT))) / 1e6).toFixed(1);
      if (N >= 64) backward[key] = +((4 * N * IN * OUT) / (await time(() => be.kernels.matmulBackward(dx, dw, null, out, x, w, N, IN, OUT))) / 1e6).toFixed(1);
      for (const b of new Set([x32, x, out, dx])) be.free(b);
    }
    for (const b of new Set([w32, w, dw])) be.free(b);
  }
  const peak = Number(process.env.GPT2_PEAK_TFLOPS) || 0;
  const best = Math.max(...Object.values(forward), ...Object.values(backward));
  return { unit: 'GFLOP/s', shape: 'N x IN x OUT', device: be.describe(), forward, backward, ...(peak ? { peakTFLOPS: peak, bestFractionOfPeak: +(best / 1000 / peak).toFixed(3) } : {}) };
}

export async function runBench(f: BenchFlags): Promise<void> {
  if (f.task === 'serve') return benchServe(f as ServeBenchFlags);
  // a model's own files (--model), or a random one of a named shape (--init); bad input fails before any backend starts
  const read = f.model ? await readModel(f.model) : undefined;
  const config = read ? read.config : initConfig(f.init);
  const weights = weightFormat(f);
  if (weights === 'int8' && f.task !== 'generate') throw new GPT2Error(`--quantize int8 is for --task generate (int8 weights only generate and evaluate), not ${f.task}.`);
  if (f.backend === 'onnxruntime') return benchOnnxRuntime(f, config, weights);
  const { backend } = await openBackend(f);
  if (f.task === 'matmul') {
    process.stdout.write(JSON.stringify({ task: 'matmul', backend: backend.name, precision: f.precision ?? 'fp32', ...(await matmulFigures(backend, f.batch * f.seq)) }, null, f.json ? 0 : 2) + '\n');
    backend.dispose();
    return;
  }
  if (f.loraR !== undefined && f.task !== 'train') throw new GPT2Error(`--lora-r times LoRA training (--task train), not ${f.task}.`);
  // LoRA as finetune's defaults make it: every target, alpha 2r
  const lora: LoraConfig | undefined = f.loraR === undefined ? undefined : { r: f.loraR, alpha: 2 * f.loraR, dropout: 0, targets: [...LORA_TARGETS] };
  if (lora) checkLoraConfig(config, lora);
  // decoding's many small kernels are timed where they run when the backend can (cpu): a flush after each would time the gaps too
  const nativeTimes = f.profile && f.task === 'generate' && backend.kernelMs ? () => backend.kernelMs!() : undefined;
  const profiled = f.profile && (f.task === 'train' || (f.task === 'generate' && !nativeTimes)) ? profileKernels(backend) : nativeTimes ? { ms: {}, gemm: {} } : undefined;
  const kernelMs = f.task === 'train' ? profiled?.ms : undefined;
  const baseRss = Math.round(process.memoryUsage.rss() / 2 ** 20);
  const loraOpts = lora && { config: lora, params: initLora(config, lora, 1) };
  let model: GPT2, load = {};
  if (read) {
    // the real files, streamed tensor by tensor into the backend (what generate, eval and finetune do)
    const t0 = performance.now();
    model = (await instantiate(backend, read, weights, loraOpts)).model;
    const ms = performance.now() - t0, bytes = await weightFileBytes(read.dir);
    load = { loadMs: Math.round(ms), weightFileMB: MB(bytes), loadMBps: Math.round(bytes / 2 ** 20 / (ms / 1000)) };
  } else {
    model = new GPT2(backend, config, GPT2.initParams(config, 1), { weights, lora: loraOpts });
  }
  const ids = (n: number, salt: number) => benchIds(config, n, salt);
  const base = { task: f.task, backend: backend.name, precision: f.precision ?? 'fp32', weights, model: f.model ?? f.init, params: model.numParams, ...(lora ? { loraR: lora.r, trainedParams: model.trainableParams } : {}), ...load };
  let result: object;
  if (f.task === 'train') {
    if (f.seq > config.nPositions) throw new GPT2Error(`--seq ${f.seq} is longer than the model's context of ${config.nPositions}.`);
    const N = f.batch * f.seq;
    // under mpirun, each rank a batch of its own, the gradients summed across ranks (data-parallel.ts)
    const comm = await joinJob(), R = comm.size;
    const dp = await DataParallel.create(comm, model, { zero: f.zero, overlap: f.overlap });
    const step = async (k: number) => {
      const t0 = performance.now();
      model.zeroGrad();
      dp.beginStep(k);
      const salt = k * R + comm.rank;
      await model.forwardBackward(ids(N, salt), f.batch, f.seq, ids(N, salt + 1), 1 / R, dp.ready);
      await dp.finish();
      await dp.update({ lr: 1e-4, weightDecay: 0.1, clip: 1 }, await dp.gradNorm());
      return performance.now() - t0;
    };
    await step(0); // warm-up: allocation and JIT, not counted
    for (const table of [profiled?.ms, profiled?.gemm]) for (const name in table) delete table[name];
    dp.waitMs = 0;
    const times: number[] = [];
    for (let k = 1; k <= f.steps; k++) times.push(await step(k));
    // the slowest rank's step, and the largest rank's memory
    const [ms, rss, rssNow, waitMs] = await maxOverRanks(comm, [times.reduce((a, b) => a + b, 0) / times.length, peakRssMB(), MB(process.memoryUsage.rss()), dp.waitMs / f.steps]);
    const ranks = R > 1 || f.zero ? { ranks: R, zero: f.zero ?? 0, overlap: f.overlap ?? true, ...(f.profile ? { commWaitMsPerStep: +waitMs.toFixed(1), commWaitShare: +(waitMs / ms).toFixed(3) } : {}) } : {};
    const profile = kernelMs && Object.fromEntries(Object.entries(kernelMs).sort((a, b) => b[1] - a[1]).map(([name, t]) => [name, +(t / f.steps).toFixed(1)]));
    if (profile) profile.other = +(ms - Object.values(kernelMs!).reduce((a, b) => a + b, 0) / f.steps).toFixed(1);
    // the step's products by shape, in GFLOP/s (the largest first), and all of them together
    const gemm = profiled && Object.entries(profiled.gemm).sort((a, b) => b[1].flop - a[1].flop);
    const gemmFigures = gemm && {
      gemmGflopsInStep: Object.fromEntries(gemm.map(([key, g]) => [key, +(g.flop / g.ms / 1e6).toFixed(1)])),
      gemmInStep: { msPerStep: +(gemm.reduce((n, [, g]) => n + g.ms, 0) / f.steps).toFixed(1), gflops: +(gemm.reduce((n, [, g]) => n + g.flop, 0) / gemm.reduce((n, [, g]) => n + g.ms, 0) / 1e6).toFixed(1) },
    };
    const heap = backend.describe().memory; // wasm: its memory's size, of WebAssembly's 4 GiB
    let save = {};
    if (f.save) {
      // a checkpoint as training writes one (weights, or the adapter, and AdamW's moments), a tensor at a time
      const t0 = performance.now();
      const run = new RunDir(f.save);
      run.maxShardSize = f.maxShardSize;
      run.adapterBase = read?.base ?? null;
      const dir = await run.saveCheckpoint(model, read?.tokenizer ?? (await gpt2Tokenizer()), { step: model.step } as TrainerState, 1);
      save = { saveMs: Math.round(performance.now() - t0), savedMB: MB(dirBytes(dir)) };
    }
    result = {
      ...base, batch: f.batch, seq: f.seq, steps: f.steps, ...ranks, msPerStep: +ms.toFixed(1), tokensPerSecond: +(((R * N) / ms) * 1000).toFixed(1), ...(heap ? { deviceMemory: heap } : {}), ...save,
      ...memory(trainingMemory(config, f.batch, f.seq, { lora, zeroRanks: f.zero ? R : undefined, bf16Copies: backend.bf16Copies }).total, read || f.save ? checkpointIoMemory(config) : 0, baseRss), peakRssMB: rss, rssAfterStepsMB: rssNow, ...(profile ? { msPerStepByKernel: profile, ...gemmFigures } : {}),
    };
    if (comm.rank !== 0) return backend.dispose(); // rank 0 prints the job's one line
  } else if (f.task === 'generate') {
    const heap = backend.describe().memory;
    const decode = await decodeFigures(f, config, (B) => model.createCache(B), profiled, nativeTimes);
    // the memory figures before the bandwidth pass's 512 MB
    const mem = memory(generationMemory(config, f.batch, config.nPositions, weights, backend.bf16Copies).total, read ? checkpointIoMemory(config, weights) : 0, baseRss);
    const bound = decodeBound(config, weights, backend.bf16Copies === true, await readBandwidth(backend), f.batch, decode.msPerToken);
    result = { ...base, ...decode, ...bound, ...(heap ? { deviceMemory: heap } : {}), ...mem };
  } else {
    throw new GPT2Error(`Unknown bench task '${f.task}'; choose train, generate or matmul (the tokenizer benchmark is pnpm bench:tokenizer).`);
  }
  process.stdout.write((f.json ? JSON.stringify(result) : JSON.stringify(result, null, 2)) + '\n');
  backend.dispose();
}
