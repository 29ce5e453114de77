// Data-parallel training with PyTorch DDP's semantics: every rank holds the whole model and trains
// on its slice of one global batch; after backward the gradients are summed across ranks (each
// rank's loss already scaled by 1/N, so the sum is DDP's mean), a bucket at a time as backward
// finishes it (GradBucket: a layer's tensors), so the exchange of the last layers overlaps the
// backward of the first. Clipping and AdamW then see the same gradients on every rank, and the
// weights stay identical. With ZeRO-1 (zero.ts) the sum is reduce-scattered instead.
import { GPT2Error } from '../errors.js';
import type { AdamWOptions, GPT2, GradBucket } from '../model/gpt2.js';
import { PARAM_SPECS, type ParamName } from '../model/params.js';
import type { Collective } from './collective.js';
import { ShardedAdamW } from './zero.js';

export interface DataParallelOptions {
  /** 1: ZeRO-1, AdamW's moments sharded across ranks. */
  zero?: 0 | 1;
  /** Reduce each bucket as backward finishes it (default), or all of them after backward (to measure what overlap saves). */
  overlap?: boolean;
}

export class DataParallel {
  readonly zero?: ShardedAdamW;
  private readonly overlap: boolean;
  private inflight: Promise<void>[] = [];
  private held: GradBucket[] = [];
  private step = 0;
  /** Milliseconds spent waiting for gradient exchanges after backward (the part overlap did not hide), since the last read. */
  waitMs = 0;

  constructor(readonly comm: Collective, readonly model: GPT2, opts: DataParallelOptions = {}) {
    if (comm.size > 1 && !model.backend.hostView) {
      throw new GPT2Error(`The ${model.backend.name} backend keeps its buffers on the device, which this data-parallel training cannot reach; train across ranks on the cpu, wasm or reference backend.`);
    }
    this.overlap = opts.overlap ?? true;
    if (opts.zero) this.zero = new ShardedAdamW(model, comm);
  }

  get rank(): number {
    return this.comm.rank;
  }

  get size(): number {
    return this.comm.size;
  }

  /** Names the step whose gradients the next buckets carry (for the message when a rank never gets there). */
  beginStep(step: number): void {
    this.step = step;
  }

  /** backward's hook for a step's last micro-batch: starts reducing each bucket it finishes (undefined in one process). */
  get ready(): ((b: GradBucket) => void) | undefined {
    if (this.size === 1 && !this.zero) return undefined;
    return (b) => (this.overlap ? this.reduce(b) : this.held.push(b));
  }

  private reduce(b: GradBucket): void {
    const be = this.model.backend, view = be.hostView!.bind(be);
    // each bucket is a point every rank reaches once its backward got there: a rank stuck in its compute is named
    this.comm.arrive(`step ${this.step}'s gradient exchange (${b === 'adapters' ? 'the adapters' : b[0][0] === 'wte' ? 'the embeddings' : b[0][0] === 'lnfw' ? 'the final layernorm' : `layer ${b[0][1]}`})`);
    if (b === 'adapters') {
      this.inflight.push(this.comm.allReduce(view(this.model.adapterBuffers().grads)));
      return;
    }
    for (const [name, l] of b) {
      this.inflight.push(this.zero ? this.zero.reduce(name, l) : this.comm.allReduce(view(this.model.piece('grads', name, l).buf)));
    }
  }

  /** Waits for every bucket's exchange (starting the held ones without overlap). */
  async finish(): Promise<void> {
    for (const b of this.held.splice(0)) this.reduce(b);
    const t0 = performance.now();
    await Promise.all(this.inflight.splice(0));
    this.waitMs += performance.now() - t0;
  }

  /** The global gradient norm, after finish(). */
  gradNorm(): Promise<number> {
    return this.zero ? this.zero.gradNorm() : this.model.gradNorm();
  }

  /** Clips and steps AdamW (each rank its part under ZeRO-1, then all-gathers the weights). */
  async update(o: AdamWOptions, norm: number): Promise<void> {
    this.comm.arrive(`step ${this.step}'s update`);
    if (this.zero) await this.zero.update(o, norm);
    else await this.model.update(o, norm);
  }

  /** Sums of numbers across ranks (losses, counts, flags), in float64; `what` names the point for a stalled rank. */
  async sum(values: number[], what: string): Promise<number[]> {
    if (this.size === 1) return values;
    this.comm.arrive(what);
    const x = Float64Array.from(values);
    await this.comm.allReduce(x);
    return [...x];
  }

  /** Every rank's weights (the adapters' under LoRA) from rank 0's. */
  async broadcastWeights(): Promise<void> {
    if (this.size === 1) return;
    this.comm.arrive('the start');
    await Promise.all(this.weightViews().map((w) => this.comm.broadcast(w, 0)));
  }

  private weightViews(): Float32Array[] {
    const be = this.model.backend, view = be.hostView!.bind(be);
    if (this.model.lora) return [view(this.model.adapterBuffers().params)];
    return PARAM_SPECS.flatMap((s) => Array.from({ length: s.layered ? this.model.config.nLayer : 1 }, (_, l) => view(this.model.piece('params', s.name as ParamName, l).buf)));
  }

  /**
   * Checks that every rank holds the same weights (a 32-bit hash of their bits each); throws a
   * sentence naming the first rank that differs from rank 0.
   */
  async checkSameWeights(step: number): Promise<void> {
    if (this.size === 1) return;
    let h = 0x811c9dc5;
    for (const w of this.weightViews()) {
      const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
      for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 16777619);
    }
    const all = await this.comm.allGatherBytes(new Uint8Array(Uint32Array.of(h >>> 0).buffer));
    const hashes = all.map((b) => new Uint32Array(b.buffer, b.byteOffset, 1)[0]);
    const r = hashes.findIndex((x) => x !== hashes[0]);
    if (r > 0) throw new GPT2Error(`At step ${step} the weights on rank ${r} differ from rank 0's (hash ${hashes[r].toString(16)} against ${hashes[0].toString(16)}), so the ranks no longer train one model; stopping before saving.`);
  }
}
