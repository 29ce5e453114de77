// The CUDA backend: every kernel in a Node-API addon (native/*.cu) built by `pnpm build` when a
// CUDA toolkit is present. Buffers are device pointers (as numbers); kernels are enqueued on one
// stream and only read/sync wait. fp32 with TF32 off by default; --precision tf32|bf16 lets
// cuBLAS's tensor cores round the GEMM operands (precision.ts).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GPT2Error, dropoutMultiplier, dropoutThreshold, unsupportedPrecision, type Backend, type Buf, type Collective, type DeviceCollective, type DType, type Kernels, type Precision } from '@gpt2/core';

interface Addon {
  init(): string;
  alloc(bytes: number): number;
  free(ptr: number): void;
  upload(ptr: number, data: Float32Array | Int32Array): void;
  read(ptr: number, n: number): Float32Array;
  zero(ptr: number, bytes: number): void;
  sync(): void;
  ncclId(): ArrayBuffer;
  ncclInit(id: Uint8Array, ranks: number, rank: number): void;
  [kernel: string]: (...args: never[]) => unknown;
}

class CudaBuf implements Buf {
  constructor(readonly ptr: number, readonly length: number, readonly dtype: DType, readonly root: boolean) {}
}
const p = (b: Buf | null) => (b ? (b as CudaBuf).ptr : 0);

const ADDON = fileURLToPath(new URL('../build/gpt2_cuda.node', import.meta.url));

export interface CudaBackendOptions {
  /** fp32 (default, TF32 off), tf32 or bf16: the GEMMs' operand precision; everything else is fp32. */
  precision?: Precision;
}

const OFFERED: readonly Precision[] = ['fp32', 'tf32', 'bf16'];

export async function createCudaBackend(opts: CudaBackendOptions = {}): Promise<Backend> {
  const precision = opts.precision ?? 'fp32';
  if (!OFFERED.includes(precision)) throw unsupportedPrecision('cuda', precision, OFFERED);
  if (!existsSync(ADDON)) {
    throw new GPT2Error('The CUDA backend is not built (no CUDA toolkit was found when `pnpm build` ran); install the CUDA toolkit and rebuild.');
  }
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(ADDON) as Addon;
  } catch (err) {
    throw new GPT2Error(`The CUDA addon could not load: ${(err as Error).message}.`);
  }
  let device: string;
  try {
    device = addon.init();
  } catch (err) {
    throw new GPT2Error(`CUDA is unavailable: ${(err as Error).message}.`);
  }
  const mode = OFFERED.indexOf(precision); // the addon's compute-type index
  const call = (name: string, ...args: number[]) => (addon[name] as (...a: number[]) => void)(...args);
  const k: Kernels = {
    encoderForward: (out, tokens, wte, wpe, B, T, C) => call('encoderForward', p(out), p(tokens), p(wte), p(wpe), B, T, C),
    encoderBackward: (dwte, dwpe, dout, tokens, B, T, C) => call('encoderBackward', p(dwte), p(dwpe), p(dout), p(tokens), B, T, C),
    layernormForward: (out, mean, rstd, inp, w, b, N, C) => call('layernormForward', p(out), p(mean), p(rstd), p(inp), p(w), p(b), N, C),
    layernormBackward: (dinp, dw, db, dout, inp, w, mean, rstd, N, C) =>
      call('layernormBackward', p(dinp), p(dw), p(db), p(dout), p(inp), p(w), p(mean), p(rstd), N, C),
    residualLayernormForward: (res, out, mean, rstd, a, b, w, bias, N, C) =>
      call('residualLayernormForward', p(res), p(out), p(mean), p(rstd), p(a), p(b), p(w), p(bias), N, C),
    matmulForward: (out, inp, w, bias, N, IN, OUT) => call('matmulForward', p(out), p(inp), p(w), p(bias), N, IN, OUT, mode),
    matmulGeluForward: (out, pre, inp, w, bias, N, IN, OUT) => call('matmulGeluForward', p(out), p(pre), p(inp), p(w), p(bias), N, IN, OUT, mode),
    matmulBackward: (dinp, dw, dbias, dout, inp, w, N, IN, OUT) => call('matmulBackward', p(dinp), p(dw), p(dbias), p(dout), p(inp), p(w), N, IN, OUT, mode),
    attentionForward: (out, lse, qkv, B, T, NH, HS) => call('attentionForward', p(out), p(lse), p(qkv), B, T, NH, HS),
    attentionBackward: (dqkv, dout, qkv, out, lse, B, T, NH, HS) => call('attentionBackward', p(dqkv), p(dout), p(qkv), p(out), p(lse), B, T, NH, HS),
    attentionDecode: (out, qkv, kc, vc, pos, B, T, NH, HS, maxT) => call('attentionDecode', p(out), p(qkv), p(kc), p(vc), p(pos), B, T, NH, HS, maxT),
    geluForward: (out, inp, N) => call('geluForward', p(out), p(inp), N),
    geluBackward: (dinp, inp, dout, N) => call('geluBackward', p(dinp), p(inp), p(dout), N),
    // the mask's threshold and the kept elements' multiplier from the host in double precision (dropout.ts)
    scaledDropout: (out, inp, scale, pr, seed, N) =>
      call('scaledDropout', p(out), p(inp), dropoutMultiplier(scale, pr), dropoutThreshold(pr), seed >>> 0, N),
    crossEntropyForward: (losses, hits, logits, targets, N, V) => call('crossEntropyForward', p(losses), p(hits), p(logits), p(targets), N, V),
    crossEntropyBackward: (dlogits, losses, logits, targets, scale, N, V) =>
      call('crossEntropyBackward', p(dlogits), p(losses), p(logits), p(targets), scale, N, V),
    sumSquares: (out, x, N) => call('sumSquares', p(out), p(x), N),
    // 1 - beta from the host in double precision, rounded once, as torch passes it
    adamw: (params, grads, m, v, N, lr, b1, b2, eps, wd, step, gs) =>
      call('adamw', p(params), p(grads), p(m), p(v), N, lr, b1, b2, 1 - b1, 1 - b2, eps, wd, 1 - Math.pow(b1, step), 1 - Math.pow(b2, step), gs),
  };
  return {
    name: 'cuda',
    kernels: k,
    alloc(length: number, dtype: DType = 'f32') {
      try {
        return new CudaBuf(addon.alloc(Math.max(4, length * 4)), length, dtype, true);
      } catch (err) {
        throw new GPT2Error((err as Error).message);
      }
    },
    view(buf, offset, length) {
      const b = buf as CudaBuf;
      if (offset < 0 || offset + length > b.length) throw new RangeError(`view [${offset}, ${offset + length}) outside buffer of ${b.length}`);
      return new CudaBuf(b.ptr + offset * 4, length, b.dtype, false);
    },
    upload: (dst, src) => addon.upload(p(dst), src),
    read: async (src) => addon.read(p(src), src.length),
    zero: (buf) => addon.zero(p(buf), buf.length * 4),
    sync: async () => addon.sync(),
    free(buf) {
      if ((buf as CudaBuf).root) addon.free(p(buf));
    },
    dispose() {},
    // NCCL for data-parallel training: rank 0's unique id reaches the others through MPI
    async deviceCollective(comm: Collective): Promise<DeviceCollective> {
      const id = new Uint8Array(128);
      try {
        if (comm.rank === 0) id.set(new Uint8Array(addon.ncclId()));
      } catch (err) {
        throw new GPT2Error(`${(err as Error).message}.`);
      }
      await comm.broadcast(id, 0);
      addon.ncclInit(id, comm.size, comm.rank);
      return {
        allReduce: (buf) => call('ncclAllReduce', p(buf), buf.length),
        broadcast: (buf, root) => call('ncclBroadcast', p(buf), buf.length, root),
        finish: () => call('ncclFinish'),
      };
    },
    describe: () => ({ device, precision: precision === 'fp32' ? 'fp32, TF32 off (--precision tf32|bf16 available)' : `${precision} GEMMs, fp32 elsewhere` }),
  };
}
