// ZeRO-1 (Rajbhandari et al. 2020; llm.c's zero_stage 1): AdamW's moments sharded across ranks.
// Every piece of the flat layout (a layer's slice of a tensor, gap included) is split N ways; rank r
// keeps the moments, and receives the summed gradients, of its part of each piece alone
// (reduce-scatter), steps those parameters, and all-gathers the pieces back. Optimizer memory per
// rank falls by N; checkpoints gather the moments to rank 0, so they are the plain flat two tensors.
import type { Backend, Buf } from '../backend.js';
import { GPT2Error } from '../errors.js';
import type { AdamWOptions, GPT2, OptimizerState } from '../model/gpt2.js';
import { PARAM_SPECS, type ParamName } from '../model/params.js';
import { shardRange, type Collective } from './collective.js';

interface Piece {
  name: ParamName;
  layer: number;
  offset: number; // in the flat layout
  stride: number; // the piece's length, gap included
  start: number; // this rank's part: [start, start + count) of the piece
  count: number;
  at: number; // where that part sits in this rank's shard buffers
  decay: boolean;
}

export class ShardedAdamW implements OptimizerState {
  readonly pieces: Piece[] = [];
  private readonly byName = new Map<string, Piece>(); // `${name}.${layer}`: backward's buckets name them so
  readonly length: number; // elements this rank holds of each of m, v and the gradient
  private readonly be: Backend;
  private grads: Buf; // this rank's part of the summed gradients
  private m?: Buf;
  private v?: Buf;
  private norm?: Buf;

  constructor(private readonly model: GPT2, private readonly comm: Collective) {
    if (model.lora) throw new GPT2Error('--zero 1 shards the moments of a full fine-tune; LoRA adapters\' moments are small already: drop --zero.');
    this.be = model.backend;
    let at = 0;
    for (const spec of PARAM_SPECS) {
      const name = spec.name as ParamName;
      for (let l = 0; l < (spec.layered ? model.config.nLayer : 1); l++) {
        const { buf, offset } = model.piece('params', name, l);
        const { start, count } = shardRange(buf.length, comm.rank, comm.size);
        const p = { name, layer: l, offset, stride: buf.length, start, count, at, decay: spec.decay };
        this.pieces.push(p);
        this.byName.set(`${name}.${l}`, p);
        at += count;
      }
    }
    this.length = at;
    this.grads = model.allocating(() => this.be.alloc(at), 0, 0);
    model.optimizerState = this;
  }

  private part(buf: Buf, p: Piece): Buf {
    return this.be.view(buf, p.at, p.count);
  }

  /** Sums a bucket's gradients across ranks into this rank's parts. */
  reduce(name: ParamName, layer: number): Promise<void> {
    const p = this.byName.get(`${name}.${layer}`)!, g = this.model.piece('grads', name, layer).buf;
    return this.comm.reduceScatter(this.be.hostView!(g), this.be.hostView!(this.part(this.grads, p)));
  }

  /** The global norm of the summed gradients: each rank's parts, added across ranks. */
  async gradNorm(): Promise<number> {
    this.norm ??= this.be.alloc(1);
    this.be.kernels.sumSquares(this.norm, this.grads, this.length);
    const s = Float64Array.of((await this.be.read(this.norm))[0]);
    await this.comm.allReduce(s);
    return Math.sqrt(s[0]);
  }

  get hasState(): boolean {
    return this.m !== undefined;
  }

  private moments(): { m: Buf; v: Buf } {
    if (!this.m || !this.v) {
      this.m = this.model.allocating(() => this.be.alloc(this.length), 0, 0);
      this.v = this.model.allocating(() => this.be.alloc(this.length), 0, 0);
    }
    return { m: this.m, v: this.v };
  }

  /** One AdamW step of this rank's parts (GPT2.update's arithmetic), then every rank's parts to all. */
  async update(o: AdamWOptions, norm: number): Promise<void> {
    const scale = o.clip && o.clip > 0 ? Math.min(1, o.clip / (norm + 1e-6)) : 1;
    const { m, v } = this.moments(), k = this.be.kernels;
    this.model.step += 1;
    const gathered: Promise<void>[] = [];
    for (const p of this.pieces) {
      const w = this.model.piece('params', p.name, p.layer).buf;
      if (p.count > 0) {
        k.adamw(this.be.view(w, p.start, p.count), this.part(this.grads, p), this.part(m, p), this.part(v, p), p.count, o.lr, o.beta1 ?? 0.9, o.beta2 ?? 0.999,
          o.eps ?? 1e-8, p.decay ? (o.weightDecay ?? 0) : 0, this.model.step, scale, this.model.copyPiece(p.name, p.layer, p.start, p.count));
      }
      // AdamW wrote the bf16 copy of this rank's part (where the model keeps copies); the others' parts arrive by the gather
      const end = p.start + p.count;
      gathered.push(this.comm.allGather(this.be.hostView!(w)).then(() => {
        this.model.wroteWeights(p.name, p.layer, 0, p.start);
        this.model.wroteWeights(p.name, p.layer, end, p.stride - end);
      }));
    }
    await Promise.all(gathered);
  }

  /** One moment as the flat layout's pieces, gathered to rank 0 (the others yield empty pieces). */
  async *chunks(which: 'm' | 'v'): AsyncGenerator<Float32Array> {
    const buf = this.moments()[which];
    for (const p of this.pieces) {
      const whole = this.comm.rank === 0 ? new Float32Array(p.stride) : null;
      await this.comm.gather(this.be.hostView!(this.part(buf, p)), whole, p.stride, 0);
      yield whole ?? new Float32Array(0);
    }
  }

  /** This rank's parts of a saved moment, read by ranges. */
  async load(read: (which: 'm' | 'v', offset: number, count: number) => Promise<Float32Array>): Promise<void> {
    const mv = this.moments();
    for (const p of this.pieces) {
      if (p.count === 0) continue;
      for (const which of ['m', 'v'] as const) this.be.upload(this.part(mv[which], p), await read(which, p.offset + p.start, p.count));
    }
  }

  dispose(): void {
    for (const b of [this.grads, this.m, this.v, this.norm]) if (b) this.be.free(b);
  }
}
