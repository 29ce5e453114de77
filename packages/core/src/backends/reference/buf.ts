import type { Buf, DType } from '../../backend.js';

/** A reference-backend buffer is a typed array (a view shares its parent's memory). */
export class RefBuf implements Buf {
  constructor(
    readonly data: Float32Array | Int32Array,
    readonly dtype: DType,
  ) {}
  get length(): number {
    return this.data.length;
  }
}

export const f32 = (b: Buf): Float32Array => (b as RefBuf).data as Float32Array;
export const i32 = (b: Buf): Int32Array => (b as RefBuf).data as Int32Array;
