import type { Backend, Buf, DType, Kernels } from '../../backend.js';
import { RefBuf, f32 } from './buf.js';
import { encoderForward, encoderBackward } from './encoder.js';
import { layernormForward, layernormBackward } from './layernorm.js';
import { matmulForward, matmulBackward, biasBackward, matmulInt8Forward } from './matmul.js';
import { attentionForward, attentionBackward, attentionDecode } from './attention.js';
import { geluForward, geluBackward } from './gelu.js';
import { add } from './add.js';
import { scaledDropout } from './dropout.js';
import { crossEntropyForward, crossEntropyBackward } from './crossentropy.js';
import { sumSquares } from './sum-squares.js';
import { adamw } from './adamw.js';
import { roundBf16 } from './round-bf16.js';
import { ROUNDED, roundOperand, type Precision } from '../../precision.js';
import { OutOfMemoryError } from '../../errors.js';

// The fused kernels are the compositions that define them.
const fused = (mm: Kernels['matmulForward']): Pick<Kernels, 'matmulGeluForward'> => ({
  matmulGeluForward(out, pre, inp, w, bias, N, IN, OUT) {
    mm(pre, inp, w, bias, N, IN, OUT);
    geluForward(out, pre, N * OUT);
  },
});

// A 'bf16' buffer holds its values (already rounded) as floats: the emulation computes in fp32 anyway.
const kernels: Kernels = {
  encoderForward, encoderBackward, layernormForward, layernormBackward, matmulForward, matmulBackward,
  attentionForward, attentionBackward, attentionDecode, geluForward, geluBackward, scaledDropout, crossEntropyForward, sumSquares, adamw, roundBf16,
  ...fused(matmulForward),
  residualLayernormForward(res, out, mean, rstd, a, b, w, bias, N, C) {
    add(res, a, b, N * C);
    layernormForward(out, mean, rstd, res, w, bias, N, C);
  },
  matmulInt8Forward(out, pre, inp, q, scale, bias, N, IN, OUT) {
    matmulInt8Forward(pre ?? out, inp, q, scale, bias, N, IN, OUT);
    if (pre) geluForward(out, pre, N * OUT);
  },
  crossEntropyBackward(dlogits, losses, logits, targets, scale, N, V) {
    crossEntropyForward(losses, null, logits, targets, N, V);
    crossEntropyBackward(dlogits, logits, targets, scale, N, V);
  },
};

/**
 * The GEMMs of a reduced-precision mode (precision.ts): the rounded operands are copied, rounded,
 * and multiplied in fp32 by the same kernels; bias gradients come from the unrounded dout. A 'bf16'
 * copy the model keeps (bf16Copies) is rounded again, which changes nothing: a stale one would show.
 */
function emulated(p: Precision): Kernels {
  const r = (b: Buf) => new RefBuf(f32(b).map((x) => roundOperand(p, x)), 'f32');
  const all = ROUNDED[p] === 'all' ? r : (b: Buf) => b;
  const mm: Kernels['matmulForward'] = (out, inp, w, bias, N, IN, OUT) => matmulForward(out, all(inp), r(w), bias, N, IN, OUT);
  return {
    ...kernels,
    ...fused(mm),
    matmulForward: mm,
    matmulBackward(dinp, dw, dbias, dout, inp, w, N, IN, OUT) {
      matmulBackward(dinp, dw, null, all(dout), all(inp), r(w), N, IN, OUT);
      if (dbias) biasBackward(dbias, dout, N, OUT);
    },
  };
}

export interface ReferenceBackendOptions {
  /** Emulates a reduced-precision mode's GEMM rounding (slow; for tests and for comparing modes). */
  precision?: Precision;
}

/** The reference backend: plain TypeScript over typed arrays, single-threaded, synchronous. */
export function createReferenceBackend(opts: ReferenceBackendOptions = {}): Backend {
  const precision = opts.precision ?? 'fp32';
  return {
    name: 'reference',
    kernels: precision === 'fp32' ? kernels : emulated(precision),
    bf16Copies: precision === 'bf16',
    alloc(length: number, dtype: DType = 'f32'): Buf {
      if (dtype === 'bf16' && precision !== 'bf16') throw new Error(`a bf16 buffer on the reference backend in ${precision}`);
      try {
        return new RefBuf(dtype === 'i32' ? new Int32Array(length) : new Float32Array(length), dtype);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        throw new OutOfMemoryError(`The reference backend cannot allocate ${(length * 4 / 2 ** 30).toFixed(2)} GiB (JavaScript refused a typed array of ${length} values)`, length * 4);
      }
    },
    view(buf: Buf, offset: number, length: number): Buf {
      const b = buf as RefBuf;
      if (offset < 0 || offset + length > b.length) throw new RangeError(`view [${offset}, ${offset + length}) outside buffer of ${b.length}`);
      return new RefBuf(b.data.subarray(offset, offset + length), b.dtype);
    },
    upload(dst: Buf, src: Float32Array | Int32Array): void {
      (dst as RefBuf).data.set(src);
    },
    async read(src: Buf): Promise<Float32Array> {
      return f32(src).slice();
    },
    hostView: f32,
    zero(buf: Buf): void {
      (buf as RefBuf).data.fill(0);
    },
    async sync(): Promise<void> {},
    free(): void {},
    dispose(): void {},
    describe: () => ({ device: 'JavaScript on the main thread', threads: '1', precision: precision === 'fp32' ? 'fp32 (tf32|bf16|f16 emulated with --backend reference)' : `${precision} (emulated)` }),
  };
}
