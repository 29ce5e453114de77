// The native cpu backend: C++ kernels (native/*.cc) with OpenMP threads and the system BLAS's sgemm
// or oneDNN's matmul (bf16 needs oneDNN), in a Node-API addon built by `pnpm build`. Buffers are
// plain host memory (no 4 GiB limit), handed to JavaScript as pointers. Kernel calls are queued and
// run by the addon in one call when something on the host needs their results (read, hostView,
// upload, free, sync): a decoding step's ~90 kernels then run back to back, the threads hot and
// memory busy, instead of each waiting for the JavaScript between them.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { GPT2Error, OutOfMemoryError, dropoutMultiplier, dropoutThreshold, unsupportedPrecision, type AllocOptions, type Backend, type Buf, type DType, type Kernels, type Precision } from '@gpt2/core';

interface Addon {
  init(): [library: string, path: string, isa: string, procs: number, reference: number];
  initOnednn(): [version: string, path: string, isa: string, bf16: number];
  onednnImpl(bf16: number): string;
  alloc(bytes: number, sparse: number): number;
  free(ptr: number): void;
  upload(ptr: number, data: Float32Array | Int32Array): void;
  read(ptr: number, n: number, bf16: number): Float32Array;
  external(ptr: number, bytes: number): ArrayBuffer;
  /** [name, argument count] of each queued kernel, by opcode */
  kernels(): [string, number][];
  drawRow(row: Float32Array, u: number): number;
  expMany(x: Float64Array): void;
  /** FLOP/s of `threads` threads of fp32 multiply-adds (or bf16 dot products); 0 where unknown */
  peakFlops(bf16: number, threads: number): number;
  /** runs the first n numbers of the queue: [opcode, arguments...] after another, adding each kernel's ms to ms[opcode] when given */
  run(queue: Float64Array, n: number, ms?: Float64Array): void;
}

class NativeBuf implements Buf {
  constructor(readonly ptr: number, readonly length: number, readonly dtype: DType, readonly root: boolean) {}
}
const p = (b: Buf | null) => (b ? (b as NativeBuf).ptr : 0);
const bf = (b: Buf) => (b.dtype === 'bf16' ? 1 : 0); // a GEMM operand's bf16 flag
const bytesOf = (dtype: DType) => (dtype === 'bf16' ? 2 : 4);

const BUILD = new URL('../build/', import.meta.url);
const ADDON = fileURLToPath(new URL('gpt2_cpu.node', BUILD));
const NOT_BUILT = fileURLToPath(new URL('not-built.txt', BUILD));

export interface CpuBackendOptions {
  /** OpenMP threads for every kernel and GEMM; default: every core. */
  threads?: number;
  /** fp32, or bf16 (GEMM operands rounded to bfloat16, fp32 accumulation) through oneDNN on a CPU with AVX512-BF16 or AMX. */
  precision?: Precision;
  /**
   * Which library multiplies many rows in fp32: 'blas', 'onednn', or 'auto' (default; GPT2_CPU_GEMM
   * sets it too): oneDNN where it loads, else the BLAS. bf16 always uses oneDNN.
   */
  gemm?: 'auto' | 'blas' | 'onednn';
  /** Refuse netlib's reference BLAS, several times slower than the wasm backend (set by `auto`). */
  rejectSlowBlas?: boolean;
}

let addon: Addon | undefined;
let current = ''; // the thread count and GEMM mode the queue's kernels run in: one per process, queued when backends differ

// The kernel queue, one per process (the addon's mode is global): [opcode, arguments...] per call
const queue = new Float64Array(1 << 16);
let queued = 0;
let opcodes: Map<string, { op: number; argc: number }> | undefined;
let timings: Float64Array | undefined; // ms per opcode while profiling (kernelMs)

/** Runs every queued kernel (a failure throws here, naming the kernel, and drops the rest). */
function flush(): void {
  if (queued === 0) return;
  const n = queued;
  queued = 0;
  addon!.run(queue, n, timings);
}

/** The ms each kernel took in the queue since the last call (the first call starts timing them). */
function kernelMs(): Record<string, number> {
  flush();
  const names = addon!.kernels(), out: Record<string, number> = {};
  if (timings) names.forEach(([name], op) => timings![op] > 0 && !name.startsWith('set') && (out[name] = timings![op]));
  timings = new Float64Array(names.length);
  return out;
}

function enqueue(name: string, args: number[]): void {
  opcodes ??= new Map(addon!.kernels().map(([k, argc], op) => [k, { op, argc }]));
  const k = opcodes.get(name);
  if (!k || k.argc !== args.length) throw new Error(`gpt2_cpu: ${name} takes ${k?.argc} numbers, not ${args.length}`);
  if (queued + 1 + args.length > queue.length) flush();
  queue[queued++] = k.op;
  for (const x of args) queue[queued++] = x;
}
const BF16_NEEDS = '--precision bf16 on the cpu backend needs oneDNN on a CPU with AVX512-BF16 or AMX';

function load(): Addon {
  if (addon) return addon;
  if (!existsSync(ADDON)) {
    const why = existsSync(NOT_BUILT) ? readFileSync(NOT_BUILT, 'utf8').trim() : 'it was not built';
    throw new GPT2Error(`The native cpu backend is not built (${why.split('\n')[0]}); install g++ and run pnpm build.`);
  }
  // OpenMP's idle threads would spin for ~ms after each kernel, stealing the cores from the next
  // one; a short spin keeps hand-offs fast without that (read by libgomp when the addon loads)
  process.env.GOMP_SPINCOUNT ??= '10000';
  try {
    addon = createRequire(import.meta.url)(ADDON) as Addon;
  } catch (err) {
    throw new GPT2Error(`The native cpu addon could not load: ${(err as Error).message}; rebuild it with pnpm build.`);
  }
  return addon;
}

/**
 * Sampling's draw from a logits row, native (core's useNativeDraw): the id core's JavaScript draw
 * gives for the same row and uniform number, several times faster; undefined where the addon is not built.
 */
export function nativeDraw(): ((row: Float32Array, u: number) => number) | undefined {
  try {
    const a = load();
    return (row, u) => a.drawRow(row, u);
  } catch {
    return undefined;
  }
}

/** exp of each element in place, as nativeDraw computes them (for the tests: Math.exp's bits). */
export function nativeExp(x: Float64Array): void {
  load().expMany(x);
}

export async function createCpuBackend(opts: CpuBackendOptions = {}): Promise<Backend> {
  const precision = opts.precision ?? 'fp32';
  if (precision !== 'fp32' && precision !== 'bf16') throw unsupportedPrecision('cpu', precision, ['fp32', 'bf16']);
  const gemm = opts.gemm ?? (process.env.GPT2_CPU_GEMM || 'auto');
  if (!['auto', 'blas', 'onednn'].includes(gemm)) throw new GPT2Error(`GPT2_CPU_GEMM is '${gemm}'; set it to auto, blas or onednn, or unset it.`);
  const a = load();
  let dnnl: ReturnType<Addon['initOnednn']> | undefined;
  let noDnnl = 'GPT2_CPU_GEMM=blas turns oneDNN off';
  if (gemm !== 'blas') {
    try {
      dnnl = a.initOnednn();
    } catch (err) {
      noDnnl = (err as Error).message;
    }
  }
  if (gemm === 'onednn' && !dnnl) throw new GPT2Error(`GPT2_CPU_GEMM=onednn, but ${noDnnl}.`);
  if (precision === 'bf16' && !dnnl) throw new GPT2Error(`${BF16_NEEDS}: ${noDnnl}.`);
  if (precision === 'bf16' && !dnnl![3]) {
    throw new GPT2Error(`${BF16_NEEDS}; this CPU has neither (oneDNN dispatches to ${dnnl![2]}): use --precision fp32.`);
  }
  const onednn = dnnl !== undefined && (precision === 'bf16' || gemm !== 'blas');
  let info: ReturnType<Addon['init']>;
  try {
    info = a.init(); // the BLAS: attention's products, and every other one without oneDNN
  } catch (err) {
    throw new GPT2Error(`The native cpu backend needs a BLAS: ${(err as Error).message}.`);
  }
  const [library, path, isa, , reference] = info;
  if (reference && opts.rejectSlowBlas) {
    throw new GPT2Error(`the only BLAS found (${path}) is netlib's reference BLAS, slower than the wasm backend; install OpenBLAS (apt-get install libopenblas0)`);
  }
  const threads = Math.max(1, Math.min(opts.threads ?? availableParallelism(), 256));
  const mode = `${threads} ${onednn} ${precision}`;
  const call = (name: string, ...args: number[]) => {
    if (current !== mode) {
      enqueue('setThreads', [threads]);
      enqueue('setGemm', [onednn ? 1 : 0, precision === 'bf16' ? 1 : 0]);
      current = mode;
    }
    enqueue(name, args);
  };
  const k: Kernels = {
    encoderForward: (out, tokens, wte, wpe, B, T, C) => call('encoderForward', p(out), p(tokens), p(wte), p(wpe), B, T, C),
    encoderBackward: (dwte, dwpe, dout, tokens, B, T, C) => call('encoderBackward', p(dwte), p(dwpe), p(dout), p(tokens), B, T, C),
    layernormForward: (out, mean, rstd, inp, w, b, N, C) => call('layernormForward', p(out), p(mean), p(rstd), p(inp), p(w), p(b), N, C),
    layernormBackward: (dinp, dw, db, dout, inp, w, mean, rstd, N, C) =>
      call('layernormBackward', p(dinp), p(dw), p(db), p(dout), p(inp), p(w), p(mean), p(rstd), N, C),
    residualLayernormForward: (res, out, mean, rstd, x, y, w, bias, N, C) =>
      call('residualLayernormForward', p(res), p(out), p(mean), p(rstd), p(x), p(y), p(w), p(bias), N, C),
    matmulForward: (out, inp, w, bias, N, IN, OUT) => call('matmulForward', p(out), p(inp), p(w), p(bias), N, IN, OUT, bf(inp), bf(w)),
    matmulGeluForward: (out, pre, inp, w, bias, N, IN, OUT) => call('matmulGeluForward', p(out), p(pre), p(inp), p(w), p(bias), N, IN, OUT, bf(inp), bf(w)),
    matmulInt8Forward: (out, pre, inp, q, scale, bias, N, IN, OUT) => call('matmulInt8Forward', p(out), p(pre), p(inp), p(q), p(scale), p(bias), N, IN, OUT),
    matmulBackward: (dinp, dw, dbias, dout, inp, w, N, IN, OUT) => call('matmulBackward', p(dinp), p(dw), p(dbias), p(dout), p(inp), p(w), N, IN, OUT, bf(inp), bf(w)),
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
    roundBf16: (dst, src, N) => call('roundBf16', p(dst), p(src), N),
    // 1 - beta and the bias corrections from the host in double precision, rounded once, as torch passes them
    adamw: (params, grads, m, v, N, lr, b1, b2, eps, wd, step, gs, copy) =>
      call('adamw', p(params), p(grads), p(m), p(v), N, lr, b1, b2, 1 - b1, 1 - b2, eps, wd, 1 - Math.pow(b1, step), 1 - Math.pow(b2, step), gs, p(copy ?? null)),
  };
  let held = 0; // bytes this backend holds
  let peak: number | undefined; // measured on first asking (peak.cc: a few ms)
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  return {
    name: 'cpu',
    kernels: k,
    // under bf16 the model keeps its matrices, and the activations the products read, as bf16 copies
    bf16Copies: precision === 'bf16',
    peakFlops: () => (peak ??= a.peakFlops(precision === 'bf16' ? 1 : 0, threads)) || undefined,
    alloc(length: number, dtype: DType = 'f32', opts?: AllocOptions) {
      if (dtype === 'bf16' && precision !== 'bf16') throw new Error('a bf16 buffer on the cpu backend in fp32');
      const bytes = Math.max(4, length * bytesOf(dtype));
      // calloc maps lazily and Linux overcommits: refuse what the machine cannot hold before the OOM killer does
      if (!Number.isSafeInteger(bytes) || held + bytes > totalmem()) {
        throw new OutOfMemoryError(`The cpu backend cannot allocate ${gib(bytes)}: it holds ${gib(held)} already and this machine has ${gib(totalmem())} of memory`, bytes);
      }
      let ptr: number;
      try {
        ptr = a.alloc(bytes, opts?.sparse ? 1 : 0);
      } catch {
        throw new OutOfMemoryError(`The cpu backend could not allocate ${gib(bytes)} (the system refused; ${gib(held)} held already)`, bytes);
      }
      held += bytes;
      return new NativeBuf(ptr, length, dtype, true);
    },
    view(buf, offset, length) {
      const b = buf as NativeBuf;
      if (offset < 0 || offset + length > b.length) throw new RangeError(`view [${offset}, ${offset + length}) outside buffer of ${b.length}`);
      return new NativeBuf(b.ptr + offset * bytesOf(b.dtype), length, b.dtype, false);
    },
    // everything that touches a buffer from the host runs the queued kernels first
    upload: (dst, src) => {
      if (dst.dtype === 'bf16') throw new Error('upload into a bf16 copy: round an fp32 buffer into it (roundBf16)');
      flush();
      a.upload(p(dst), src);
    },
    read: async (src) => {
      flush();
      return a.read(p(src), src.length, bf(src));
    },
    // the buffer's own memory as an ArrayBuffer (it owns nothing: the buffer must outlive the view)
    hostView: (buf) => {
      if (buf.dtype === 'bf16') throw new Error('hostView of a bf16 copy');
      flush();
      return new Float32Array(a.external(p(buf), buf.length * 4));
    },
    zero: (buf) => call('zero', p(buf), buf.length * bytesOf(buf.dtype)),
    sync: async () => flush(),
    flush,
    kernelMs,
    free(buf) {
      const b = buf as NativeBuf;
      if (!b.root) return;
      flush();
      a.free(b.ptr);
      held -= Math.max(4, b.length * bytesOf(b.dtype));
    },
    dispose: flush,
    describe: () => {
      flush();
      const impl = onednn ? a.onednnImpl(precision === 'bf16' ? 1 : 0) : '';
      return {
        device: `native C++ (${isa}), OpenMP`,
        threads: `${threads}`,
        gemm: onednn
          ? `oneDNN ${dnnl![0]} (${dnnl![1]}), dispatching to ${dnnl![2]}${impl ? `, matmul kernel: ${impl}` : ''}; decoding rows: our own kernel`
          : `the BLAS, called single-threaded from each of our ${threads} threads${dnnl ? '' : ` (oneDNN: ${noDnnl})`}`,
        blas: `${library}, ${path}${onednn ? ', for attention' : ''}`,
        precision: precision === 'bf16' ? 'bf16 GEMM operands, fp32 accumulation (oneDNN)' : dnnl?.[3] ? 'fp32 (bf16 offered)' : 'fp32',
      };
    },
  };
}
