// The device side of a flat parameter layout (params.ts): one buffer per tensor, so no buffer is
// larger than the largest tensor (a GPU caps one buffer's size: 355M's weights are 1.35 GiB in all,
// its largest tensor 403 MiB), read and written as the one flat host array the layout describes.
import type { Backend, Buf, DType } from '../backend.js';
import type { ParamLayout, ParamName } from './params.js';

export class TensorBuffers {
  readonly bufs = {} as Record<ParamName, Buf>;

  /** `layout` gives each tensor's offset and size in the flat array of `length` elements. */
  constructor(private readonly be: Backend, private readonly layout: Partial<Record<ParamName, ParamLayout>>, readonly length: number, dtype: DType = 'f32') {
    try {
      for (const [n, t] of Object.entries(layout)) this.bufs[n as ParamName] = be.alloc(t.size, dtype);
    } catch (err) {
      this.free(); // none half-made
      throw err;
    }
  }

  private *each(): Generator<[Buf, ParamLayout]> {
    for (const [n, t] of Object.entries(this.layout)) yield [this.bufs[n as ParamName], t];
  }

  upload(flat: Float32Array): void {
    for (const [b, t] of this.each()) this.be.upload(b, flat.subarray(t.offset, t.offset + t.size));
  }

  async read(): Promise<Float32Array> {
    const out = new Float32Array(this.length);
    for (const [b, t] of this.each()) out.set(await this.be.read(b), t.offset);
    return out;
  }

  /** Each layer's slice of each tensor (with the gap after it), in flat order: reads and writes one slice at a time. */
  pieces(): { offset: number; buf: Buf }[] {
    const out: { offset: number; buf: Buf }[] = [];
    for (const [b, t] of this.each()) {
      for (let o = 0; o < t.size; o += t.stride) out.push({ offset: t.offset + o, buf: this.be.view(b, o, t.stride) });
    }
    return out;
  }

  zero(): void {
    for (const [b] of this.each()) this.be.zero(b);
  }

  free(): void {
    for (const [b] of this.each()) if (b) this.be.free(b);
  }
}
