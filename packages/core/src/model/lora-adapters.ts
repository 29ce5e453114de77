// LoRA adapters on a device (lora.ts has the format): their buffers, and each adapted layer's
// extra forward and backward over the kernels. For input x (N,IN), output y (N,OUT):
//   xs = scale * dropout(x)           (N,IN)  scaledDropout, redrawn in backward from the seed
//   u  = xs @ A^T                      (N,r)   saved for backward
//   y += u @ B^T                       (N,OUT) through the scratch z
// and backward, with dy the gradient at y:
//   du = dy @ B, dB += dy^T @ u;  dxs = du @ A, dA += du^T @ xs;  dx += scale * dropout(dxs)
import type { Backend, Buf } from '../backend.js';
import type { GPT2Config } from './config.js';
import { loraLayout, loraScale, TARGET_SPECS, type LoraConfig, type LoraSlot } from './lora.js';
import { ALIGN, type ParamName } from './params.js';

interface DeviceSlot extends LoraSlot {
  id: number; // position in the layout: the dropout seed's and the saved u's index
  A: Buf; // (r,IN)
  B: Buf; // (OUT,r)
  dA?: Buf;
  dB?: Buf;
}

export class LoraAdapters {
  readonly scale: number;
  readonly length: number; // elements of the flat buffers
  readonly count: number; // trainable parameters
  readonly params: Buf;
  grads?: Buf;
  m?: Buf;
  v?: Buf;
  private readonly slots: DeviceSlot[];
  private readonly byParam = new Map<ParamName, DeviceSlot[]>(); // [layer]
  private scratch?: { N: number; xs: Buf; dxs: Buf; z: Buf; du: Buf; u: Buf };
  private saved?: { N: number; buf: Buf };
  private readonly bufs: Buf[] = [];

  constructor(private readonly be: Backend, cfg: GPT2Config, readonly config: LoraConfig, flat: Float32Array) {
    const { slots, total, count } = loraLayout(cfg, config);
    if (flat.length !== total) throw new Error(`expected an adapter buffer of ${total}, got ${flat.length}`);
    this.scale = loraScale(config);
    this.length = total;
    this.count = count;
    this.params = this.own(be.alloc(total));
    be.upload(this.params, flat);
    const r = config.r;
    this.slots = slots.map((s, id) => ({ ...s, id, A: be.view(this.params, s.a, r * s.IN), B: be.view(this.params, s.b, s.OUT * r) }));
    for (const s of this.slots) {
      const p = TARGET_SPECS[s.target].param;
      if (!this.byParam.has(p)) this.byParam.set(p, []);
      this.byParam.get(p)![s.layer] = s;
    }
  }

  private own(b: Buf): Buf {
    this.bufs.push(b);
    return b;
  }

  /** The adapter on layer l's matrix `name`, if that module is adapted. */
  slot(name: ParamName, l: number): DeviceSlot | undefined {
    return this.byParam.get(name)?.[l];
  }

  /** Gradient and AdamW moment buffers, made on first use. */
  ensureGrads(): Buf {
    if (!this.grads) {
      this.grads = this.own(this.be.alloc(this.length));
      const r = this.config.r;
      for (const s of this.slots) {
        s.dA = this.be.view(this.grads, s.a, r * s.IN);
        s.dB = this.be.view(this.grads, s.b, s.OUT * r);
      }
    }
    return this.grads;
  }

  ensureMoments(): { m: Buf; v: Buf } {
    this.m ??= this.own(this.be.alloc(this.length));
    this.v ??= this.own(this.be.alloc(this.length));
    return { m: this.m, v: this.v };
  }

  /** Scratch for N rows: xs and dxs (N, widest IN), z (N, widest OUT), du and u (N, r). */
  private work(N: number) {
    if (this.scratch && this.scratch.N >= N) return this.scratch;
    for (const b of this.scratch ? [this.scratch.xs, this.scratch.dxs, this.scratch.z, this.scratch.du, this.scratch.u] : []) this.free(b);
    const IN = Math.max(...this.slots.map((s) => s.IN)), OUT = Math.max(...this.slots.map((s) => s.OUT)), r = this.config.r;
    const a = (n: number) => this.own(this.be.alloc(n));
    this.scratch = { N, xs: a(N * IN), dxs: a(N * IN), z: a(N * OUT), du: a(N * r), u: a(N * r) };
    return this.scratch;
  }

  private free(b: Buf): void {
    this.be.free(b);
    this.bufs.splice(this.bufs.indexOf(b), 1);
  }

  /** Where a training forward of N rows keeps slot s's u (N,r) for backward. */
  savedU(s: DeviceSlot, N: number): Buf {
    const per = Math.ceil((N * this.config.r) / ALIGN) * ALIGN; // views start aligned (params.ts)
    if (!this.saved || this.saved.N !== N) {
      if (this.saved) this.free(this.saved.buf);
      this.saved = { N, buf: this.own(this.be.alloc(per * this.slots.length)) };
    }
    return this.be.view(this.saved.buf, s.id * per, N * this.config.r);
  }

  /** A decoding step's u: scratch, not kept. */
  scratchU(N: number): Buf {
    return this.be.view(this.work(N).u, 0, N * this.config.r);
  }

  /** xs (N,IN) = scale * dropout(x), the mask drawn from `seed` (none when seed is null). */
  private scaledInput(x: Buf, s: DeviceSlot, N: number, seed: number | null): Buf {
    const xs = this.be.view(this.work(N).xs, 0, N * s.IN);
    this.be.zero(xs);
    this.be.kernels.scaledDropout(xs, x, this.scale, seed === null ? 0 : this.config.dropout, seed ?? 0, N * s.IN);
    return xs;
  }

  /** y (N,OUT) += scale * dropout(x) @ A^T @ B^T, keeping u = scale * dropout(x) @ A^T in `u`. */
  forward(y: Buf, x: Buf, s: DeviceSlot, N: number, u: Buf, seed: number | null): void {
    const k = this.be.kernels, r = this.config.r;
    k.matmulForward(u, this.scaledInput(x, s, N, seed), s.A, null, N, s.IN, r);
    const z = this.be.view(this.work(N).z, 0, N * s.OUT);
    k.matmulForward(z, u, s.B, null, N, r, s.OUT);
    k.scaledDropout(y, z, 1, 0, 0, N * s.OUT); // y += z
  }

  /** Accumulates dA, dB and the adapter's part of dx (N,IN) from dy (N,OUT), as forward ran (same u, same seed). */
  backward(dx: Buf, dy: Buf, x: Buf, s: DeviceSlot, N: number, u: Buf, seed: number | null): void {
    const k = this.be.kernels, r = this.config.r, w = this.work(N);
    this.ensureGrads();
    const du = this.be.view(w.du, 0, N * r), dxs = this.be.view(w.dxs, 0, N * s.IN);
    this.be.zero(du);
    k.matmulBackward(du, s.dB!, null, dy, u, s.B, N, r, s.OUT);
    const xs = this.scaledInput(x, s, N, seed);
    this.be.zero(dxs);
    k.matmulBackward(dxs, s.dA!, null, du, xs, s.A, N, s.IN, r);
    k.scaledDropout(dx, dxs, this.scale, seed === null ? 0 : this.config.dropout, seed ?? 0, N * s.IN);
  }

  dispose(): void {
    for (const b of this.bufs.splice(0)) this.be.free(b);
    this.scratch = this.saved = this.grads = this.m = this.v = undefined;
  }
}
