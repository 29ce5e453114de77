// Data-parallel training with PyTorch DDP's semantics: every rank holds the whole model and trains
// on its slice of one global batch; after backward the gradients are summed across ranks (each
// rank's loss already scaled by 1/N, so the sum is DDP's mean), a bucket at a time as backward
// finishes it (GradBucket: a layer's tensors), so the exchange of the last layers overlaps the
// backward of the first. Clipping and AdamW then see the same gradients on every rank, and the
// weights stay identical. With ZeRO-1 (zero.ts) the sum is reduce-scattered instead. Host-memory
// backends (cpu, wasm, reference) are reduced in place through `comm` (MPI); a backend whose buffers
// live on a device through its own DeviceCollective (cuda: NCCL).
import type { Buf, DeviceCollective } from '../backend.js';
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

  private constructor(readonly comm: Collective, readonly model: GPT2, opts: DataParallelOptions, private readonly device?: DeviceCollective) {
    this.overlap = opts.overlap ?? true;
    if (opts.zero) this.zero = new ShardedAdamW(model, comm);
  }

  /** Every rank calls it at once (a device backend joins its own communicator here). */
  static async create(comm: Collective, model: GPT2, opts: DataParallelOptions = {}): Promise<DataParallel> {
    const be = model.backend;
    if (comm.size === 1 || be.hostView) return new DataParallel(comm, model, opts);
    if (!be.deviceCollective) throw new GPT2Error(`The ${be.name} backend keeps its buffers on a device no collective library reaches; train across ranks on cuda, cpu, wasm or reference.`);
    if (opts.zero) throw new GPT2Error(`--zero 1 shards the moments in host memory; on ${be.name} train with --zero 0 (each rank holds all of them).`);
    return new DataParallel(comm, model, opts, await be.deviceCollective(comm));
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
    const view = (b: Buf) => this.model.backend.hostView!(b);
    // each bucket is a point every rank reaches once its backward got there: a rank stuck in its compute is named
    this.comm.arrive(`step ${this.step}'s gradient exchange (${b === 'adapters' ? 'the adapters' : b[0][0] === 'wte' ? 'the embeddings' : b[0][0] === 'lnfw' ? 'the final layernorm' : `layer ${b[0][1]}`})`);
    const grads = b === 'adapters' ? [this.model.adapterBuffers().grads] : b.map(([name, l]) => this.model.piece('grads', name, l).buf);
    if (this.device) return grads.forEach((g) => this.device!.allReduce(g));
    if (this.zero && b !== 'adapters') for (const [name, l] of b) this.inflight.push(this.zero.reduce(name, l));
    else for (const g of grads) this.inflight.push(this.comm.allReduce(view(g)));
  }

  /** Waits for every bucket's exchange (starting the held ones without overlap). */
  async finish(): Promise<void> {
    for (const b of this.held.splice(0)) this.reduce(b);
    const t0 = performance.now();
    this.device?.finish();
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
    if (this.device) {
      for (const w of this.weights()) this.device.broadcast(w, 0);
      this.device.finish();
    } else await Promise.all(this.weights().map((w) => this.comm.broadcast(this.model.backend.hostView!(w), 0)));
    this.model.wroteWeights(); // their bf16 copies too, where the model keeps them
  }

  /** The weights training updates, a tensor's layer at a time (the adapters under LoRA). */
  private weights(): Buf[] {
    if (this.model.lora) return [this.model.adapterBuffers().params];
    return PARAM_SPECS.flatMap((s) => Array.from({ length: s.layered ? this.model.config.nLayer : 1 }, (_, l) => this.model.piece('params', s.name as ParamName, l).buf));
  }

  /**
   * Checks that every rank holds the same weights (a 32-bit hash of their bits each); throws a
   * sentence naming the first rank that differs from rank 0.
   */
  async checkSameWeights(step: number): Promise<void> {
    if (this.size === 1) return;
    let h = 0x811c9dc5;
    const be = this.model.backend;
    for (const b of this.weights()) {
      const w = be.hostView ? be.hostView(b) : await be.read(b);
      const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
      for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 16777619);
    }
    const all = await this.comm.allGatherBytes(new Uint8Array(Uint32Array.of(h >>> 0).buffer));
    const hashes = all.map((b) => new Uint32Array(b.buffer, b.byteOffset, 1)[0]);
    const r = hashes.findIndex((x) => x !== hashes[0]);
    if (r > 0) throw new GPT2Error(`At step ${step} the weights on rank ${r} differ from rank 0's (hash ${hashes[r].toString(16)} against ${hashes[0].toString(16)}), so the ranks no longer train one model; stopping before saving.`);
  }
}
