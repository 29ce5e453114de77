// GPT-2 over the Kernels contract: forward, hand-written backward, AdamW, and cached decoding.
// The graph is llm.c's train_gpt2.c; every tensor is a view into a few flat device buffers.
import type { Backend, Buf } from '../backend.js';
import { GPT2Error, OutOfMemoryError } from '../errors.js';
import { describeMemory, generationMemory, trainingMemory } from './memory.js';
import { Rng } from '../sample/rng.js';
import type { GPT2Config } from './config.js';
import { ALIGN, PARAM_SPECS, paramLayout, slices, type ParamLayout, type ParamName } from './params.js';

/** gradNorm's slots: one per parameter tensor. */
const NORM_SLOTS = PARAM_SPECS.length;
const LAYERED = PARAM_SPECS.filter((s) => s.layered).map((s) => s.name as ParamName);
import { INT8_BACKENDS, INT8_MATRICES, int8Layout, int8RowBytes, quantizeRows, type Int8Matrix, type WeightFormat } from './int8.js';
import type { ParamTensor } from '../io/checkpoint.js';
import { checkLoraConfig, loraDropoutSeed, type LoraConfig } from './lora.js';
import { LoraAdapters } from './lora-adapters.js';
import { TensorBuffers } from './tensor-buffers.js';
import { Bf16Copies } from './bf16-copies.js';

export interface AdamWOptions {
  lr: number;
  beta1?: number; // 0.9
  beta2?: number; // 0.999
  eps?: number; // 1e-8
  weightDecay?: number; // 0.0, applied to 2+-dim tensors only
  clip?: number; // global gradient-norm clip; 0 or undefined = none
}

type Views = Record<ParamName, Buf>;

/**
 * Gradients that backward has finished, as it finishes them (data-parallel training reduces each
 * while earlier layers' backward runs): [tensor, layer] pairs (layer 0 for unlayered tensors) in
 * reverse order, the final layernorm's, then each layer's from the last, then the embeddings';
 * under LoRA, 'adapters' once at the end.
 */
export type GradBucket = [ParamName, number][] | 'adapters';

/**
 * AdamW's moments held elsewhere (ZeRO-1, train/zero.ts: each rank holds a part): what a
 * checkpoint saves and loads goes through it.
 */
export interface OptimizerState {
  readonly hasState: boolean;
  chunks(which: 'm' | 'v'): AsyncGenerator<Float32Array>;
  load(read: (which: 'm' | 'v', offset: number, count: number) => Promise<Float32Array>): Promise<void>;
}

/** Training activations for one (B, T). Per-layer tensors are views `[l]` into (L, ...) buffers. */
interface Activations {
  B: number;
  T: number;
  tokens: Buf; // (B,T) i32
  targets: Buf; // (B,T) i32
  encoded: Buf; // (B,T,C)
  ln1: Buf[]; ln1Mean: Buf[]; ln1Rstd: Buf[]; // (B,T,C), (B,T), (B,T)
  qkv: Buf[]; // (B,T,3C)
  atty: Buf[]; // (B,T,C)
  lse: Buf[]; // (B,NH,T)
  res2: Buf[]; // (B,T,C)
  ln2: Buf[]; ln2Mean: Buf[]; ln2Rstd: Buf[];
  fch: Buf[]; fchGelu: Buf[]; // (B,T,F)
  res3: Buf[]; // (B,T,C)
  proj: Buf; // (B,T,C) scratch: attention or MLP projection before the residual add
  lnf: Buf; lnfMean: Buf; lnfRstd: Buf;
  logits: Buf; // (B,T,V); holds dlogits after backward
  losses: Buf; // (B,T)
  hits: Buf; // (B,T) 1 where the target is the logits' argmax (accuracy), from forward()
  // backward scratch, one layer's worth, reused
  dres: Buf; dln: Buf; datty: Buf; // (B,T,C)
  dqkv: Buf; // (B,T,3C)
  dfch: Buf; dfchGelu: Buf; // (B,T,F)
  validTargets: number;
  /** Under bf16 copies (bf16-copies.ts): the activations the GEMMs read, rounded once in forward for forward and backward. */
  copies?: { ln1: Buf[]; atty: Buf[]; ln2: Buf[]; fchGelu: Buf[]; lnf: Buf };
}

export class GPT2 {
  readonly config: GPT2Config;
  readonly backend: Backend;
  /** Parameters of the model (the flat buffers are slightly longer: see ALIGN). */
  readonly numParams: number;
  /** Elements of the flat parameter, gradient and AdamW arrays (each held on the device as one buffer per tensor). */
  readonly bufferLength: number;
  private readonly params: TensorBuffers;
  readonly views: Views;
  /** Per-layer parameter views: layers.qkvw[l] is layer l's (3C, C) weight. Under int8 (and in `views`) the INT8_MATRICES are absent. */
  readonly layers: Record<ParamName, Buf[]>;
  /** Offset and size of every tensor in the flat buffers. */
  private readonly layout: Record<ParamName, ParamLayout>;
  private gradLayers?: Record<ParamName, Buf[]>;
  private grads?: TensorBuffers;
  private gradViews?: Views;
  private m?: TensorBuffers;
  private v?: TensorBuffers;
  private moments?: { m: Views; v: Views }; // per-tensor views of m and v, made once
  private acts?: Activations;
  private normBuf?: Buf;
  /** AdamW steps taken (the bias-correction step count). */
  step = 0;
  /** Set when another object holds AdamW's moments (ZeRO-1): checkpoints save and load them through it. */
  optimizerState?: OptimizerState;

  /** 'int8': the linear layers' weights held as int8 (int8.ts), for generate and evaluate only. */
  readonly weights: WeightFormat;
  /** Under int8: each matrix's packed int8 rows and row scales (views into two buffers). */
  private readonly int8?: Record<Int8Matrix, { q: Buf; scale: Buf; OUT: number; IN: number }[]>;
  private readonly int8Buffers: Buf[] = []; // the two buffers those views share

  /** Under a backend with bf16Copies: each weight matrix's bf16 copy, which the GEMMs read (bf16-copies.ts). */
  private readonly copies?: Bf16Copies;

  /** With LoRA adapters (lora.ts) the base weights are frozen: only the adapters have gradients and moments. */
  readonly lora?: LoraAdapters;
  private readonly loraSeed: number;
  private micro = 0; // training forwards since zeroGrad: with the step, picks the dropout masks
  private dropoutDraw: number | null = null; // the last forward's (step, micro) draw, null outside training
  private lnSink?: { w: Buf; b: Buf }; // frozen layernorms' gradients go here, unread

  /**
   * `params` is the flat fp32 buffer (paramLayout). With `weights: 'int8'` the linear layers'
   * matrices are quantized on the host and only their int8 form reaches the device (wte stays in
   * fp32 too, for the embedding): such a model generates and evaluates, and refuses to train.
   * With `lora`, LoRA adapters (lora.ts; `params` in its layout, `seed` for their dropout masks)
   * sit on the frozen weights: training computes and steps the adapters' gradients alone.
   */
  constructor(
    backend: Backend, config: GPT2Config, params: Float32Array | null,
    opts: { weights?: WeightFormat; lora?: { config: LoraConfig; params: Float32Array; seed?: number } } = {},
  ) {
    const { tensors, total, count } = paramLayout(config);
    if (params && params.length !== total) throw new Error(`expected a parameter buffer of ${total}, got ${params.length}`);
    this.backend = backend;
    this.config = config;
    this.numParams = count;
    this.weights = opts.weights ?? 'fp32';
    if (opts.lora) {
      if (this.weights === 'int8') throw new GPT2Error('LoRA adapters train on fp32 base weights; drop --quantize int8 (or merge the adapter first).');
      checkLoraConfig(config, opts.lora.config);
    }
    if (this.weights === 'int8' && !backend.kernels.matmulInt8Forward) throw new GPT2Error(`The ${backend.name} backend has no int8 kernels; int8 weights run on ${INT8_BACKENDS}.`);
    // under int8 the fp32 buffer holds every tensor but the quantized matrices, packed in order
    const kept = this.weights === 'int8' ? Object.entries(tensors).filter(([n]) => !(INT8_MATRICES as readonly string[]).includes(n)) : Object.entries(tensors);
    let offset = 0;
    this.layout = {} as Record<ParamName, ParamLayout>;
    for (const [n, t] of kept) {
      this.layout[n as ParamName] = { ...t, offset };
      offset += t.size;
    }
    this.bufferLength = offset;
    this.params = new TensorBuffers(backend, this.layout, offset);
    this.views = this.makeViews(this.params);
    this.layers = this.makeLayerViews(this.params);
    if (backend.bf16Copies && this.weights === 'fp32') this.copies = new Bf16Copies(backend, config, this.layout);
    if (this.weights === 'int8') {
      const layout = int8Layout(config);
      const q = backend.alloc(layout.words, 'i32'), sc = backend.alloc(layout.scales);
      this.int8Buffers.push(q, sc);
      this.int8 = {} as Record<Int8Matrix, { q: Buf; scale: Buf; OUT: number; IN: number }[]>;
      for (const [n, list] of Object.entries(layout.matrices)) {
        this.int8[n as Int8Matrix] = list.map((m) => ({ q: backend.view(q, m.word, m.words), scale: backend.view(sc, m.scale, m.OUT), OUT: m.OUT, IN: m.IN }));
      }
    }
    if (params) for (const [n, t] of Object.entries(tensors)) slices(config, t).forEach((o, l) => this.setTensor(n as ParamName, l, params.subarray(o, o + t.perLayer)));
    this.loraSeed = opts.lora?.seed ?? 0;
    if (opts.lora) this.lora = new LoraAdapters(backend, config, opts.lora.config, opts.lora.params);
  }

  /**
   * A model whose weights arrive one tensor at a time (io/checkpoint.ts paramTensors), each
   * uploaded (or quantized) as it comes: loading holds a tensor or two on the host, never the model.
   * Every tensor must come exactly once.
   */
  static async load(
    backend: Backend, config: GPT2Config, weights: AsyncIterable<ParamTensor>,
    opts: ConstructorParameters<typeof GPT2>[3] = {},
  ): Promise<GPT2> {
    const m = new GPT2(backend, config, null, opts);
    try {
      const seen = new Set<string>();
      for await (const t of weights) {
        m.setTensor(t.name, t.layer, t.data);
        seen.add(`${t.name}.${t.layer}`);
      }
      const expected = PARAM_SPECS.reduce((n, s) => n + (s.layered ? config.nLayer : 1), 0);
      if (seen.size !== expected) throw new Error(`GPT2.load got ${seen.size} of the ${expected} parameter tensors`);
      return m;
    } catch (err) {
      m.dispose();
      throw err;
    }
  }

  /**
   * Sets layer l's slice (perLayer values, [OUT, IN] for matrices) of a parameter tensor; under
   * int8 a matrix is quantized here (wte both kept and quantized, for the embedding and the LM head).
   */
  setTensor(name: ParamName, layer: number, data: Float32Array): void {
    const t = this.layout[name] ?? paramLayout(this.config).tensors[name];
    if (data.length !== t.perLayer) throw new Error(`${name}[${layer}]: expected ${t.perLayer} values, got ${data.length}`);
    if (this.layout[name]) {
      this.backend.upload(this.layers[name][layer], data);
      this.copies?.refresh(name, this.params.bufs[name], layer * t.stride, t.perLayer);
    }
    const m = this.int8?.[name as Int8Matrix]?.[layer];
    if (m) {
      const { q, scale } = quantizeRows(data, m.OUT, m.IN, int8RowBytes(m.IN));
      this.backend.upload(m.q, new Int32Array(q.buffer));
      this.backend.upload(m.scale, scale);
    }
  }

  /** Layer l's slice of a parameter tensor back on the host (for saving one tensor at a time). */
  async readTensor(name: ParamName, layer: number): Promise<Float32Array> {
    this.trainable();
    return this.backend.read(this.layers[name][layer]);
  }

  /** Parameters that training updates: the adapters' under LoRA, else all. */
  get trainableParams(): number {
    return this.lora ? this.lora.count : this.numParams;
  }

  /**
   * out (N,OUT) = inp @ W^T + bias for one of the model's matrices (layer l's, or the LM head's
   * wte), in int8 where the model holds it so; with pre, pre gets the product and out its GELU.
   * `rounded` is inp's bf16 copy where the forward keeps one (the product reads it; LoRA's adapter
   * reads inp). Internal: for the forward pass and KVCache.
   */
  linear(out: Buf, pre: Buf | null, inp: Buf, name: Int8Matrix, l: number, bias: Buf | null, N: number, IN: number, OUT: number, keep = false, rounded?: Buf): void {
    const k = this.backend.kernels, x = rounded ?? inp;
    const s = name === 'wte' ? undefined : this.lora?.slot(name, l);
    if (s) {
      // the adapter's sum joins the product before the GELU
      const y = pre ?? out;
      k.matmulForward(y, x, this.matrix(name, l), bias, N, IN, OUT);
      const u = keep ? this.lora!.savedU(s, N) : this.lora!.scratchU(N);
      this.lora!.forward(y, inp, s, N, u, keep ? this.dropoutSeed(s.id) : null);
      if (pre) k.geluForward(out, pre, N * OUT);
      return;
    }
    if (this.int8) {
      const m = this.int8[name][l];
      return k.matmulInt8Forward!(out, pre, inp, m.q, m.scale, bias, N, IN, OUT);
    }
    const w = this.matrix(name, l);
    if (pre) k.matmulGeluForward(out, pre, x, w, bias, N, IN, OUT);
    else k.matmulForward(out, x, w, bias, N, IN, OUT);
  }

  /** What the GEMMs read of layer l's matrix (the LM head's wte for 'wte'): its bf16 copy where the model keeps them, else the fp32 weights. */
  private matrix(name: Int8Matrix, l: number): Buf {
    return this.copies?.layers[name][l] ?? (name === 'wte' ? this.views.wte : this.layers[name][l]);
  }

  /** Under bf16 copies, rounds an activation the GEMMs read (N values) into its copy and returns that; else undefined. */
  private rounded(x: Buf, copy: Buf | undefined, N: number): Buf | undefined {
    if (copy) this.backend.kernels.roundBf16!(copy, x, N);
    return copy;
  }

  /**
   * Weights written from outside the kernels (a broadcast or gather across ranks through hostView):
   * refreshes the bf16 copies of elements [start, start + count) of layer l's slice of a tensor, or
   * with no arguments of every tensor.
   */
  wroteWeights(name?: ParamName, l = 0, start = 0, count = name ? this.layout[name].stride - start : 0): void {
    if (!this.copies) return;
    if (!name) for (const [n, t] of Object.entries(this.layout)) this.copies.refresh(n as ParamName, this.params.bufs[n as ParamName], 0, t.size);
    else this.copies.refresh(name, this.params.bufs[name], l * this.layout[name].stride + start, count);
  }

  /** The bf16 copy of elements [start, start + count) of layer l's slice of a tensor (AdamW's output under ZeRO-1), or null. */
  copyPiece(name: ParamName, l: number, start: number, count: number): Buf | null {
    const c = this.copies?.of(name);
    return c ? this.backend.view(c, l * this.layout[name].stride + start, count) : null;
  }

  /** The dropout seed of adapter `id` in the last forward: null outside a training forward (or without dropout). */
  private dropoutSeed(id: number): number | null {
    if (this.dropoutDraw === null || !this.lora?.config.dropout) return null;
    return loraDropoutSeed(this.loraSeed, this.step, this.dropoutDraw, id);
  }

  /** Training needs the fp32 weights. */
  private trainable(): void {
    if (this.int8) throw new GPT2Error('This model holds int8 weights, which only generate and evaluate; load it without --quantize int8 to train, save or export it.');
  }

  /** GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L), biases 0, layernorm gains 1. */
  static initParams(config: GPT2Config, seed: number): Float32Array {
    const { tensors, total } = paramLayout(config);
    const flat = new Float32Array(total);
    const rng = new Rng(seed);
    for (const [name, p] of Object.entries(tensors)) {
      for (const offset of slices(config, p)) {
        const slice = flat.subarray(offset, offset + p.perLayer);
        if (name.startsWith('ln')) {
          if (name.endsWith('w')) slice.fill(1);
        } else if (p.spec.decay) {
          const std = name === 'attprojw' || name === 'fcprojw' ? 0.02 / Math.sqrt(2 * config.nLayer) : 0.02;
          for (let i = 0; i < slice.length; i++) slice[i] = rng.normal() * std;
        }
      }
    }
    return flat;
  }

  private makeLayerViews(t: TensorBuffers): Record<ParamName, Buf[]> {
    const out = {} as Record<ParamName, Buf[]>;
    for (const [name, p] of Object.entries(this.layout)) out[name as ParamName] = slices(this.config, p).map((o) => this.backend.view(t.bufs[name as ParamName], o - p.offset, p.perLayer));
    return out;
  }

  private makeViews(t: TensorBuffers): Views {
    return { ...t.bufs };
  }


  private checkTokens(ids: Int32Array, what: string, allowIgnore: boolean): void {
    const V = this.config.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i];
      if (t >= V || (t < 0 && !allowIgnore)) {
        throw new GPT2Error(`${what} contains token id ${t} at index ${i}, outside the model's vocabulary of ${V}; use the model's own tokenizer.`);
      }
    }
  }

  /**
   * Runs an allocating step; a backend's OutOfMemoryError gains what the whole run needs and what to
   * lower. `B`, `T` give the training shape, or with `generate` the batch and context of a cache.
   */
  allocating<R>(fn: () => R, B: number, T: number, generate = false): R {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof OutOfMemoryError)) throw err;
      const copies = this.copies !== undefined;
      const plan = generate ? generationMemory(this.config, B, T, this.weights, copies) : trainingMemory(this.config, B, T, { lora: this.lora?.config, bf16Copies: copies });
      const what = generate ? `generating with this model at batch ${B} and context ${T}` : B ? `training this model at B=${B}, T=${T}` : 'training this model, before activations,';
      const lower = generate ? 'lower --batch-size or --max-new-tokens' : 'lower --batch or --seq (--block-size)';
      throw new GPT2Error(`${err.message}; ${what} needs about ${describeMemory(plan)}: ${lower}, or use a smaller model.`, { cause: err });
    }
  }

  private ensureActivations(B: number, T: number): Activations {
    if (this.acts && this.acts.B === B && this.acts.T === T) return this.acts;
    this.freeActivations();
    return this.allocating(() => this.makeActivations(B, T), B, T);
  }

  private makeActivations(B: number, T: number): Activations {
    const { nEmbd: C, nLayer: L, nHead: NH, nInner: F, vocabSize: V } = this.config;
    const N = B * T, owned = this.actBufs;
    const be = { alloc: (n: number, dtype?: 'i32' | 'bf16') => { const b = this.backend.alloc(n, dtype); owned.push(b); return b; } };
    const stacked = (per: number): Buf[] => {
      const buf = be.alloc(per * L);
      return Array.from({ length: L }, (_, l) => this.backend.view(buf, l * per, per));
    };
    this.acts = {
      B, T,
      tokens: be.alloc(N, 'i32'), targets: be.alloc(N, 'i32'),
      encoded: be.alloc(N * C),
      ln1: stacked(N * C), ln1Mean: stacked(N), ln1Rstd: stacked(N),
      qkv: stacked(N * 3 * C), atty: stacked(N * C), lse: stacked(B * NH * T),
      res2: stacked(N * C),
      ln2: stacked(N * C), ln2Mean: stacked(N), ln2Rstd: stacked(N),
      fch: stacked(N * F), fchGelu: stacked(N * F),
      res3: stacked(N * C),
      proj: be.alloc(N * C),
      lnf: be.alloc(N * C), lnfMean: be.alloc(N), lnfRstd: be.alloc(N),
      logits: be.alloc(N * V), losses: be.alloc(N), hits: be.alloc(N),
      dres: be.alloc(N * C), dln: be.alloc(N * C), datty: be.alloc(N * C),
      dqkv: be.alloc(N * 3 * C), dfch: be.alloc(N * F), dfchGelu: be.alloc(N * F),
      validTargets: 0,
    };
    if (this.copies) {
      const b16 = (n: number) => be.alloc(n, 'bf16'), stacked16 = (per: number) => { const buf = b16(per * L); return Array.from({ length: L }, (_, l) => this.backend.view(buf, l * per, per)); };
      this.acts.copies = { ln1: stacked16(N * C), atty: stacked16(N * C), ln2: stacked16(N * C), fchGelu: stacked16(N * F), lnf: b16(N * C) };
    }
    return this.acts;
  }

  private actBufs: Buf[] = [];

  /** Releases training activations (e.g. before switching to generation on a small GPU). */
  freeActivations(): void {
    for (const b of this.actBufs.splice(0)) this.backend.free(b);
    this.acts = undefined;
  }

  /** Releases every device buffer of the model. */
  dispose(): void {
    this.freeActivations();
    for (const t of [this.params, this.grads, this.m, this.v, this.copies]) t?.free();
    for (const b of [this.normBuf, this.lnSink?.w, this.lnSink?.b, ...this.int8Buffers]) if (b) this.backend.free(b);
    this.lora?.dispose();
  }

  /**
   * Runs the model on inputs (B,T). With targets (B,T; negative = ignored) returns the mean
   * cross-entropy loss over the counted targets, as HF's `model(ids, labels=...)`.
   */
  async forward(inputs: Int32Array, B: number, T: number, targets?: Int32Array): Promise<number | undefined> {
    const a = this.run(inputs, B, T);
    if (!targets) {
      a.validTargets = 0;
      return undefined;
    }
    this.setTargets(a, targets);
    this.backend.kernels.crossEntropyForward(a.losses, a.hits, a.logits, a.targets, B * T, this.config.vocabSize);
    return this.meanLoss(a);
  }

  /**
   * Next-token accuracy of the last forward() with targets, counted in the same pass over the
   * logits as its loss: how many counted targets were the argmax of their logits (HF run_clm's
   * accuracy metric), out of how many.
   */
  async accuracy(): Promise<{ correct: number; counted: number }> {
    if (!this.acts) throw new Error('accuracy() before forward()');
    const hits = await this.backend.read(this.acts.hits);
    let correct = 0;
    for (let i = 0; i < this.acts.B * this.acts.T; i++) correct += hits[i];
    return { correct, counted: this.acts.validTargets };
  }

  /**
   * forward() with targets, then backward(scale), with the loss and its gradient taken in one
   * pass over the logits (the fused classifier). Returns the mean loss; a training step's path.
   */
  async forwardBackward(inputs: Int32Array, B: number, T: number, targets: Int32Array, scale = 1, ready?: (b: GradBucket) => void): Promise<number> {
    const a = this.run(inputs, B, T, true);
    this.setTargets(a, targets);
    if (a.validTargets === 0) return NaN; // nothing to learn from: the caller sees a non-finite loss
    this.backward(scale, ready);
    return this.meanLoss(a);
  }

  /** The forward pass up to the logits (B,T,V). */
  private run(inputs: Int32Array, B: number, T: number, train = false): Activations {
    const { nEmbd: C, nLayer: L, nHead: NH, nInner: F, vocabSize: V, nPositions } = this.config;
    if (T > nPositions) throw new GPT2Error(`A sequence of ${T} tokens is longer than the model's context of ${nPositions}; use a shorter block size.`);
    if (inputs.length !== B * T) throw new Error(`inputs hold ${inputs.length} ids, expected B*T = ${B * T}`);
    this.checkTokens(inputs, 'The input', false);
    const a = this.ensureActivations(B, T);
    const k = this.backend.kernels, p = this.views, P = this.layers, N = B * T, HS = C / NH, c = a.copies;
    this.dropoutDraw = train ? this.micro++ : null;
    this.backend.upload(a.tokens, inputs);
    k.encoderForward(a.encoded, a.tokens, p.wte, p.wpe, B, T, C);
    k.layernormForward(a.ln1[0], a.ln1Mean[0], a.ln1Rstd[0], a.encoded, P.ln1w[0], P.ln1b[0], N, C);
    for (let l = 0; l < L; l++) {
      const res = l === 0 ? a.encoded : a.res3[l - 1];
      this.linear(a.qkv[l], null, a.ln1[l], 'qkvw', l, P.qkvb[l], N, C, 3 * C, true, this.rounded(a.ln1[l], c?.ln1[l], N * C));
      k.attentionForward(a.atty[l], a.lse[l], a.qkv[l], B, T, NH, HS);
      this.linear(a.proj, null, a.atty[l], 'attprojw', l, P.attprojb[l], N, C, C, true, this.rounded(a.atty[l], c?.atty[l], N * C));
      k.residualLayernormForward(a.res2[l], a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], res, a.proj, P.ln2w[l], P.ln2b[l], N, C);
      this.linear(a.fchGelu[l], a.fch[l], a.ln2[l], 'fcw', l, P.fcb[l], N, C, F, true, this.rounded(a.ln2[l], c?.ln2[l], N * C));
      this.linear(a.proj, null, a.fchGelu[l], 'fcprojw', l, P.fcprojb[l], N, F, C, true, this.rounded(a.fchGelu[l], c?.fchGelu[l], N * F));
      // the residual add with the next layer's ln1, or with the final layernorm
      if (l + 1 < L) k.residualLayernormForward(a.res3[l], a.ln1[l + 1], a.ln1Mean[l + 1], a.ln1Rstd[l + 1], a.res2[l], a.proj, P.ln1w[l + 1], P.ln1b[l + 1], N, C);
      else k.residualLayernormForward(a.res3[l], a.lnf, a.lnfMean, a.lnfRstd, a.res2[l], a.proj, p.lnfw, p.lnfb, N, C);
    }
    this.linear(a.logits, null, a.lnf, 'wte', 0, null, N, C, V, false, this.rounded(a.lnf, c?.lnf, N * C));
    return a;
  }

  private setTargets(a: Activations, targets: Int32Array): void {
    const N = a.B * a.T;
    if (targets.length !== N) throw new Error(`targets hold ${targets.length} ids, expected ${N}`);
    this.checkTokens(targets, 'The targets', true);
    a.validTargets = targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0);
    this.backend.upload(a.targets, targets);
  }

  /** The mean of the per-token losses over the counted targets. */
  private async meanLoss(a: Activations): Promise<number> {
    const losses = await this.backend.read(a.losses);
    let sum = 0;
    for (let i = 0; i < a.B * a.T; i++) sum += losses[i];
    return a.validTargets > 0 ? sum / a.validTargets : NaN;
  }

  /** The loss of each position (B,T) of the last forward() with targets: 0 where a target was ignored. */
  async tokenLosses(): Promise<Float32Array> {
    if (!this.acts) throw new Error('tokenLosses() before forward()');
    return (await this.backend.read(this.acts.losses)).slice(0, this.acts.B * this.acts.T);
  }

  /** Logits (B,T,V) of the last forward (before backward, which overwrites them with their gradient). */
  async logits(): Promise<Float32Array> {
    if (!this.acts) throw new Error('logits() before forward()');
    return this.backend.read(this.acts.logits);
  }

  private ensureGrads(): { grads: TensorBuffers; g: Views } {
    this.trainable();
    if (this.lora) throw new Error('the base weights are frozen under LoRA');
    if (!this.grads) {
      this.grads = this.allocating(() => new TensorBuffers(this.backend, this.layout, this.bufferLength), this.acts?.B ?? 0, this.acts?.T ?? 0);
      this.gradViews = this.makeViews(this.grads);
      this.gradLayers = this.makeLayerViews(this.grads);
    }
    return { grads: this.grads, g: this.gradViews! };
  }

  /** Zeroes the parameter gradients (call before each optimizer step's first backward). */
  zeroGrad(): void {
    this.micro = 0;
    if (this.lora) this.backend.zero(this.lora.ensureGrads());
    else this.ensureGrads().grads.zero();
  }

  /**
   * Backpropagates `scale` times the mean loss of the last forward, accumulating into the
   * parameter gradients (scale 1/k averages k accumulated micro-batches). `ready` hears of each
   * bucket of gradients as it is finished (GradBucket).
   */
  backward(scale = 1, ready?: (b: GradBucket) => void): void {
    this.trainable();
    const a = this.acts;
    if (!a || a.validTargets === 0) throw new Error('backward() needs a forward() with targets first');
    const { nEmbd: C, nLayer: L, nHead: NH, nInner: F, vocabSize: V } = this.config;
    const { B, T } = a, N = B * T, HS = C / NH;
    const k = this.backend.kernels, be = this.backend, P = this.layers, c = a.copies;
    // the gradients of a tensor: the base's, or under LoRA none (matmuls skip them; layernorms write to a sink)
    if (!this.lora) this.ensureGrads();
    const G = this.gradLayers, g = this.gradViews;
    const ln = (w?: Buf, b?: Buf): [Buf, Buf] => (w && b ? [w, b] : this.sink());
    k.crossEntropyBackward(a.logits, a.losses, a.logits, a.targets, scale / a.validTargets, N, V); // in place: logits -> dlogits
    be.zero(a.dln);
    k.matmulBackward(a.dln, g?.wte ?? null, null, a.logits, c?.lnf ?? a.lnf, this.matrix('wte', 0), N, C, V);
    be.zero(a.dres);
    k.layernormBackward(a.dres, ...ln(g?.lnfw, g?.lnfb), a.dln, a.res3[L - 1], this.views.lnfw, a.lnfMean, a.lnfRstd, N, C);
    if (g) ready?.([['lnfw', 0], ['lnfb', 0]]);
    for (let l = L - 1; l >= 0; l--) {
      const res = l === 0 ? a.encoded : a.res3[l - 1];
      // res3 = res2 + fcproj(gelu(fc(ln2(res2)))): dres holds d res3, and becomes d res2
      be.zero(a.dfchGelu);
      this.linearBackward(a.dfchGelu, 'fcprojw', 'fcprojb', l, a.dres, a.fchGelu[l], c?.fchGelu[l], N, F, C);
      be.zero(a.dfch);
      k.geluBackward(a.dfch, a.fch[l], a.dfchGelu, N * F);
      be.zero(a.dln);
      this.linearBackward(a.dln, 'fcw', 'fcb', l, a.dfch, a.ln2[l], c?.ln2[l], N, C, F);
      k.layernormBackward(a.dres, ...ln(G?.ln2w[l], G?.ln2b[l]), a.dln, a.res2[l], P.ln2w[l], a.ln2Mean[l], a.ln2Rstd[l], N, C);
      // res2 = res + attproj(attention(qkv(ln1(res)))): dres becomes d res
      be.zero(a.datty);
      this.linearBackward(a.datty, 'attprojw', 'attprojb', l, a.dres, a.atty[l], c?.atty[l], N, C, C);
      be.zero(a.dqkv);
      k.attentionBackward(a.dqkv, a.datty, a.qkv[l], a.atty[l], a.lse[l], B, T, NH, HS);
      be.zero(a.dln);
      this.linearBackward(a.dln, 'qkvw', 'qkvb', l, a.dqkv, a.ln1[l], c?.ln1[l], N, C, 3 * C);
      k.layernormBackward(a.dres, ...ln(G?.ln1w[l], G?.ln1b[l]), a.dln, res, P.ln1w[l], a.ln1Mean[l], a.ln1Rstd[l], N, C);
      if (G) ready?.(LAYERED.map((n) => [n, l]));
    }
    if (g) {
      k.encoderBackward(g.wte, g.wpe, a.dres, a.tokens, B, T, C);
      ready?.([['wte', 0], ['wpe', 0]]); // wte's gradient is final only now: the LM head's came first
    } else ready?.('adapters');
  }

  /**
   * Layer l's slice of a tensor (layer 0 for unlayered ones) in the parameters or gradients, with
   * the gap after it: `stride` elements at `offset` in the flat layout. What data-parallel training moves.
   */
  piece(which: 'params' | 'grads', name: ParamName, l: number): { buf: Buf; offset: number } {
    const t = this.layout[name];
    const bufs = which === 'params' ? this.params : this.ensureGrads().grads;
    return { buf: this.backend.view(bufs.bufs[name], l * t.stride, t.stride), offset: t.offset + l * t.stride };
  }

  /** The adapters' parameters and gradients (LoRA). */
  adapterBuffers(): { params: Buf; grads: Buf } {
    if (!this.lora) throw new Error('adapterBuffers() on a model without LoRA adapters');
    return { params: this.lora.params, grads: this.lora.ensureGrads() };
  }

  /**
   * dinp (N,IN) += dout @ W for layer l's matrix `w`, with W's and the bias's gradients, or under
   * LoRA the adapter's; `rounded` is inp's bf16 copy where the forward kept one.
   */
  private linearBackward(dinp: Buf, w: Int8Matrix, b: ParamName, l: number, dout: Buf, inp: Buf, rounded: Buf | undefined, N: number, IN: number, OUT: number): void {
    const k = this.backend.kernels, W = this.matrix(w, l), x = rounded ?? inp;
    if (!this.lora) return k.matmulBackward(dinp, this.gradLayers![w][l], this.gradLayers![b][l], dout, x, W, N, IN, OUT);
    k.matmulBackward(dinp, null, null, dout, x, W, N, IN, OUT);
    const s = this.lora.slot(w, l);
    if (s) this.lora.backward(dinp, dout, inp, s, N, this.lora.savedU(s, N), this.dropoutSeed(s.id));
  }

  /** Where frozen layernorms' weight and bias gradients go under LoRA: two (C) buffers never read. */
  private sink(): [Buf, Buf] {
    this.lnSink ??= { w: this.backend.alloc(this.config.nEmbd), b: this.backend.alloc(this.config.nEmbd) };
    return [this.lnSink.w, this.lnSink.b];
  }

  /** The global L2 norm of the accumulated gradients. */
  async gradNorm(): Promise<number> {
    // one sum of squares per gradient buffer, each into its own aligned slot, added up on the host
    const grads = this.lora ? [this.lora.ensureGrads()] : Object.values(this.ensureGrads().g);
    this.normBuf ??= this.backend.alloc(NORM_SLOTS * ALIGN);
    grads.forEach((g, i) => this.backend.kernels.sumSquares(this.backend.view(this.normBuf!, i * ALIGN, 1), g, g.length));
    const sums = await this.backend.read(this.normBuf);
    let total = 0;
    for (let i = 0; i < grads.length; i++) total += sums[i * ALIGN];
    return Math.sqrt(total);
  }

  /**
   * Clips the gradients to a global norm (as torch's clip_grad_norm_) and takes one AdamW step
   * (torch.optim.AdamW; decay on 2+-dim tensors only). Returns the pre-clip gradient norm
   * (`norm`, when given, is the gradNorm() the caller already computed).
   */
  async update(o: AdamWOptions, norm?: number): Promise<number> {
    norm ??= await this.gradNorm();
    const scale = o.clip && o.clip > 0 ? Math.min(1, o.clip / (norm + 1e-6)) : 1;
    this.step += 1;
    if (this.lora) {
      // every adapter is a matrix: one step over the whole buffer, all of it decayed (the gaps stay 0)
      const L = this.lora, { m, v } = L.ensureMoments();
      this.backend.kernels.adamw(L.params, L.ensureGrads(), m, v, L.length, o.lr, o.beta1 ?? 0.9, o.beta2 ?? 0.999, o.eps ?? 1e-8, o.weightDecay ?? 0, this.step, scale);
      return norm;
    }
    const { g } = this.ensureGrads();
    const { m: mv, v: vv } = this.ensureMoments();
    for (const [name, t] of Object.entries(this.layout)) {
      const n = name as ParamName;
      this.backend.kernels.adamw(
        this.views[n], g[n], mv[n], vv[n], t.size, o.lr, o.beta1 ?? 0.9, o.beta2 ?? 0.999, o.eps ?? 1e-8,
        t.spec.decay ? (o.weightDecay ?? 0) : 0, this.step, scale, this.copies?.of(n),
      );
    }
    return norm;
  }

  private ensureMoments(): { m: Views; v: Views } {
    this.trainable();
    if (!this.moments) {
      this.m = this.allocating(() => new TensorBuffers(this.backend, this.layout, this.bufferLength), this.acts?.B ?? 0, this.acts?.T ?? 0);
      this.v = this.allocating(() => new TensorBuffers(this.backend, this.layout, this.bufferLength), this.acts?.B ?? 0, this.acts?.T ?? 0);
      this.moments = { m: this.makeViews(this.m), v: this.makeViews(this.v) };
    }
    return this.moments;
  }

  /** Parameters (flat, PARAM_SPECS layout) back on the host. */
  async readParams(): Promise<Float32Array> {
    this.trainable();
    return this.params.read();
  }

  /** The adapters (flat, lora.ts layout) back on the host. */
  async readAdapter(): Promise<Float32Array> {
    if (!this.lora) throw new Error('readAdapter() on a model without LoRA adapters');
    return this.backend.read(this.lora.params);
  }

  /** Gradients (flat, PARAM_SPECS layout; under LoRA the adapters' lora.ts layout) back on the host. */
  async readGrads(): Promise<Float32Array> {
    return this.lora ? this.backend.read(this.lora.ensureGrads()) : this.ensureGrads().grads.read();
  }

  /** Optimizer state for checkpoints: AdamW moments and step count. */
  async readOptimizerState(): Promise<{ m: Float32Array; v: Float32Array; step: number } | undefined> {
    if (this.lora) {
      const { m, v } = this.lora;
      return m && v ? { m: await this.backend.read(m), v: await this.backend.read(v), step: this.step } : undefined;
    }
    return this.m && this.v ? { m: await this.m.read(), v: await this.v.read(), step: this.step } : undefined;
  }

  /**
   * AdamW's moments as pieces of the flat layout (one layer's slice of a tensor each, with its
   * gap; the adapters whole under LoRA), so checkpoints save and load them a piece at a time.
   * `create` allocates them (for loading); otherwise undefined before the first step.
   */
  private optimizerPieces(create = false): { offset: number; m: Buf; v: Buf }[] | undefined {
    if (this.lora) {
      if (create) this.lora.ensureMoments();
      const { m, v } = this.lora;
      return m && v ? [{ offset: 0, m, v }] : undefined;
    }
    if (create) this.ensureMoments();
    if (!this.m || !this.v) return undefined;
    const vs = this.v.pieces();
    return this.m.pieces().map((p, i) => ({ offset: p.offset, m: p.buf, v: vs[i].buf }));
  }

  /** Elements of the flat moment arrays (the adapters' under LoRA). */
  get optimizerLength(): number {
    return this.lora ? this.lora.length : this.bufferLength;
  }

  /** Whether AdamW's moments exist yet (after the first step, or a loaded state). */
  get hasOptimizerState(): boolean {
    if (this.optimizerState) return this.optimizerState.hasState;
    return this.optimizerPieces() !== undefined;
  }

  /** One moment ('m' or 'v') as consecutive pieces of its flat array, read from the device one at a time. */
  async *optimizerChunks(which: 'm' | 'v'): AsyncGenerator<Float32Array> {
    if (this.optimizerState) return yield* this.optimizerState.chunks(which);
    for (const p of this.optimizerPieces() ?? []) yield await this.backend.read(p[which]);
  }

  /**
   * Loads AdamW's moments a piece at a time: each moment holds `length` values, and read(which,
   * offset, count) gives elements [offset, offset + count) of it.
   */
  async loadOptimizerChunks(length: number, read: (which: 'm' | 'v', offset: number, count: number) => Promise<Float32Array>, step: number): Promise<void> {
    this.checkOptimizerLength(length);
    this.step = step;
    if (this.optimizerState) return this.optimizerState.load(read);
    for (const p of this.optimizerPieces(true)!) {
      this.backend.upload(p.m, await read('m', p.offset, p.m.length));
      this.backend.upload(p.v, await read('v', p.offset, p.v.length));
    }
    this.step = step;
  }

  /** A saved moment of `have` values must be this model's (or these adapters'). */
  private checkOptimizerLength(have: number): void {
    if (have !== this.optimizerLength) {
      throw new GPT2Error(`The optimizer state holds ${have} values but the ${this.lora ? 'adapters need' : 'model needs'} ${this.optimizerLength}; it belongs to another ${this.lora ? 'LoRA configuration' : 'model'}.`);
    }
  }

  loadOptimizerState(s: { m: Float32Array; v: Float32Array; step: number }): void {
    this.checkOptimizerLength(s.m.length);
    this.checkOptimizerLength(s.v.length);
    if (this.lora) {
      const { m, v } = this.lora.ensureMoments();
      this.backend.upload(m, s.m);
      this.backend.upload(v, s.v);
    } else {
      this.ensureMoments();
      this.m!.upload(s.m);
      this.v!.upload(s.v);
    }
    this.step = s.step;
  }

  /** A KV cache for generating `B` sequences of up to `maxT` (<= n_positions) tokens. */
  createCache(B: number, maxT = this.config.nPositions): KVCache {
    if (maxT > this.config.nPositions) throw new Error(`cache length ${maxT} exceeds n_positions ${this.config.nPositions}`);
    return this.allocating(() => new KVCache(this, B, maxT), B, maxT, true);
  }
}

/**
 * Cached decoding for B rows (sequences), each at its own length: `feed` runs T new tokens of every
 * row (the prompt at once for prefill, then one token a step) and returns the logits (B,V) of each
 * row's last new position; `feedRow` prefills or extends one row alone and `step` runs one token of
 * the rows that are active, so rows come and go (continuous batching: `clearRow` frees a slot).
 * Past positions are never recomputed.
 */
export class KVCache {
  readonly B: number;
  readonly maxT: number;
  /** (B) the tokens each row holds. */
  readonly lengths: Int32Array;
  private kbuf: Buf; // (L,B,NH,maxT,HS)
  private vbuf: Buf;
  private scratchN = 0;
  private s?: {
    tokens: Buf; pos: Buf; x: Buf; ln: Buf; mean: Buf; rstd: Buf; qkv: Buf; atty: Buf; proj: Buf; fch: Buf; fchGelu: Buf; logits: Buf;
  };

  constructor(private readonly model: GPT2, B: number, maxT: number) {
    const { nEmbd: C, nLayer: L } = model.config;
    this.B = B;
    this.maxT = maxT;
    this.lengths = new Int32Array(B);
    const be = model.backend;
    // most rows hold fewer than maxT tokens: mapped as they fill
    this.kbuf = be.alloc(L * B * maxT * C, 'f32', { sparse: true });
    this.vbuf = be.alloc(L * B * maxT * C, 'f32', { sparse: true });
    this.owned.push(this.kbuf, this.vbuf);
  }

  private owned: Buf[] = [];

  /** The longest row's length (every row's, while the rows move in step as `feed` moves them). */
  get pos(): number {
    let max = 0;
    for (const n of this.lengths) if (n > max) max = n;
    return max;
  }

  /** Empties every row. */
  reset(): void {
    this.lengths.fill(0);
  }

  /** Empties one row (frees its slot); its cache is simply overwritten by what comes next. */
  clearRow(row: number): void {
    this.checkRow(row);
    this.lengths[row] = 0;
  }

  private freeScratch(): void {
    if (this.s) for (const b of Object.values(this.s)) this.model.backend.free(b);
    this.s = undefined;
  }

  /** Frees the cache's device memory; the cache cannot be used afterwards. */
  dispose(): void {
    for (const b of this.owned.splice(0)) this.model.backend.free(b);
    this.freeScratch();
  }

  /** Scratch for N = rows * T positions at once (logits and positions for all B rows). */
  private scratch(N: number) {
    if (this.s && this.scratchN >= N) return this.s;
    const { nEmbd: C, nInner: F, vocabSize: V } = this.model.config;
    this.freeScratch();
    const be = this.model.backend;
    this.s = this.model.allocating(() => ({
      tokens: be.alloc(N, 'i32'), pos: be.alloc(this.B, 'i32'), x: be.alloc(N * C), ln: be.alloc(N * C), mean: be.alloc(N), rstd: be.alloc(N),
      qkv: be.alloc(N * 3 * C), atty: be.alloc(N * C), proj: be.alloc(N * C), fch: be.alloc(N * F),
      fchGelu: be.alloc(N * F), logits: be.alloc(this.B * V),
    }), this.B, this.maxT, true);
    this.scratchN = N;
    return this.s;
  }

  private checkRow(row: number): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.B) throw new GPT2Error(`Row ${row} is outside the cache's ${this.B} rows.`);
  }

  /** Row b's T more tokens must fit the cache, and every token the vocabulary. */
  private check(b: number, T: number): void {
    const n = this.lengths[b];
    if (n + T > this.maxT) {
      throw new GPT2Error(`The sequence${this.B > 1 ? ` in row ${b}` : ''} holds ${n} tokens; ${T} more would reach ${n + T}, past the cache's ${this.maxT}; shorten the prompt or the generation.`);
    }
  }
  private checkTokens(tokens: ArrayLike<number>): void {
    const V = this.model.config.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new GPT2Error(`Token id ${t} is outside the model's vocabulary of ${V}; use the model's own tokenizer.`);
    }
  }

  /**
   * tokens (B,T): T new tokens of every row, each row at its own length (positions lengths[b] ..
   * lengths[b]+T-1); returns logits (B,V) at each row's last new position.
   */
  async feed(tokens: Int32Array, T: number): Promise<Float32Array> {
    const B = this.B;
    if (tokens.length !== B * T) throw new Error(`feed: ${tokens.length} ids, expected B*T = ${B * T}`);
    for (let b = 0; b < B; b++) this.check(b, T);
    this.checkTokens(tokens);
    const logits = this.forward(0, B, tokens, T, Int32Array.from(this.lengths));
    for (let b = 0; b < B; b++) this.lengths[b] += T;
    return this.model.backend.read(logits);
  }

  /**
   * Prefills (or extends) one row alone: tokens.length new tokens at the row's length, by B=1 calls
   * on that row's cache; the other rows are not touched. Returns the logits (V) of its last position.
   */
  async feedRow(row: number, tokens: Int32Array): Promise<Float32Array> {
    this.checkRow(row);
    const T = tokens.length;
    if (T === 0) throw new GPT2Error(`feedRow: no tokens for row ${row}.`);
    this.check(row, T);
    this.checkTokens(tokens);
    const logits = this.forward(row, 1, tokens, T, Int32Array.of(this.lengths[row]));
    this.lengths[row] += T;
    return this.model.backend.read(logits);
  }

  /**
   * One decode step: tokens (B) holds the next token of each row with active[b] (the others' are
   * ignored). Only rows 0 .. the last active one run; an inactive row among them is skipped, its
   * cache and length untouched. Returns logits (n,V), n = the last active row + 1, row b's at b*V
   * (an inactive row's are meaningless).
   */
  async step(tokens: Int32Array, active: ArrayLike<boolean>): Promise<Float32Array> {
    const B = this.B;
    if (tokens.length !== B) throw new Error(`step: ${tokens.length} ids, expected B = ${B}`);
    if (active.length !== B) throw new Error(`step: ${active.length} active flags, expected B = ${B}`);
    let last = -1;
    for (let b = 0; b < B; b++) if (active[b]) last = b;
    if (last < 0) throw new GPT2Error('step: no row of the cache is active.');
    const n = last + 1, pos = new Int32Array(n), tok = new Int32Array(n);
    for (let b = 0; b < n; b++) {
      if (!active[b]) {
        pos[b] = -1;
        continue;
      }
      this.check(b, 1);
      pos[b] = this.lengths[b];
      tok[b] = tokens[b];
    }
    this.checkTokens(tok); // an inactive row's token is 0
    const logits = this.forward(0, n, tok, 1, pos);
    for (let b = 0; b < n; b++) if (active[b]) this.lengths[b]++;
    return this.model.backend.read(logits);
  }

  /**
   * Runs rows row0 .. row0+n-1 (views of their cache rows), T new tokens each (tokens (n,T)), row b
   * at position pos[b] (-1: skipped, its cache untouched); returns the logits (n,V) of each row's
   * last position, as a view of the scratch.
   */
  private forward(row0: number, n: number, tokens: Int32Array, T: number, pos: Int32Array): Buf {
    const m = this.model, cfg = m.config, be = m.backend, k = be.kernels, p = m.views;
    const { nEmbd: C, nLayer: L, nHead: NH, nInner: F, vocabSize: V } = cfg;
    const N = n * T, HS = C / NH, maxT = this.maxT;
    const s = this.scratch(N);
    const view = (b: Buf, len: number) => be.view(b, 0, len);
    const x = view(s.x, N * C), ln = view(s.ln, N * C), mean = view(s.mean, N), rstd = view(s.rstd, N);
    const qkv = view(s.qkv, N * 3 * C), atty = view(s.atty, N * C), proj = view(s.proj, N * C);
    const fch = view(s.fch, N * F), fchGelu = view(s.fchGelu, N * F), tok = view(s.tokens, N), posB = view(s.pos, n);
    const P = m.layers;
    be.upload(tok, tokens);
    be.upload(posB, pos);
    // the position embedding differs per row: one encoder call per row unless all rows sit together
    if (pos.every((q) => q === pos[0]) && pos[0] >= 0) {
      k.encoderForward(x, tok, p.wte, be.view(p.wpe, pos[0] * C, T * C), n, T, C);
    } else {
      for (let b = 0; b < n; b++) {
        const xb = be.view(x, b * T * C, T * C);
        if (pos[b] < 0) be.zero(xb); // a skipped row: something finite through the layers
        else k.encoderForward(xb, be.view(tok, b * T, T), p.wte, be.view(p.wpe, pos[b] * C, T * C), 1, T, C);
      }
    }
    // the cache rows these rows own
    const per = this.B * maxT * C;
    const rows = (buf: Buf, l: number) => be.view(buf, l * per + row0 * maxT * C, n * maxT * C);
    k.layernormForward(ln, mean, rstd, x, P.ln1w[0], P.ln1b[0], N, C);
    for (let l = 0; l < L; l++) {
      m.linear(qkv, null, ln, 'qkvw', l, P.qkvb[l], N, C, 3 * C);
      k.attentionDecode(atty, qkv, rows(this.kbuf, l), rows(this.vbuf, l), posB, n, T, NH, HS, maxT);
      m.linear(proj, null, atty, 'attprojw', l, P.attprojb[l], N, C, C);
      k.residualLayernormForward(x, ln, mean, rstd, x, proj, P.ln2w[l], P.ln2b[l], N, C);
      m.linear(fchGelu, fch, ln, 'fcw', l, P.fcb[l], N, C, F);
      m.linear(proj, null, fchGelu, 'fcprojw', l, P.fcprojb[l], N, F, C);
      const next = l + 1 < L ? [P.ln1w[l + 1], P.ln1b[l + 1]] : [p.lnfw, p.lnfb];
      k.residualLayernormForward(x, ln, mean, rstd, x, proj, next[0], next[1], N, C);
    }
    const logits = n === this.B ? s.logits : view(s.logits, n * V);
    if (T === 1) {
      m.linear(logits, null, ln, 'wte', 0, null, n, C, V);
    } else {
      // only each sequence's last position reaches the LM head
      for (let b = 0; b < n; b++) {
        if (pos[b] < 0) continue;
        m.linear(be.view(s.logits, b * V, V), null, be.view(ln, (b * T + T - 1) * C, C), 'wte', 0, null, 1, C, V);
      }
    }
    return logits;
  }
}
