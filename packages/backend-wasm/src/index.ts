// The WebAssembly backend: AssemblyScript kernels (SIMD128; fused multiply-adds when the engine
// has relaxed SIMD) over one WebAssembly.Memory shared with a pool of workers. Kernels run when
// called, split across the threads; `read` copies out. Buffers are byte offsets into the memory.
import { GPT2Error, OutOfMemoryError, dropoutMultiplier, dropoutThreshold, unsupportedPrecision, type Backend, type Buf, type DType, type Kernels, type Precision } from '@gpt2/core';
import { CTRL_BYTES, CTRL_INTS, DONE, GRAIN, KERNEL, KERNEL_NAMES, MAX_ARGS, NARGS, SEQ, STOP, UNITS, share, type KernelFn, type KernelName } from './kernels-abi.js';

export interface WasmBackendOptions {
  /** Worker threads including the calling one; default: the cores available. 1 = no workers. */
  threads?: number;
  /** Force a kernel build; default picks relaxed SIMD when the engine validates it. */
  variant?: 'simd' | 'relaxed';
  /** Only fp32: the kernels compute in f32 throughout. */
  precision?: Precision;
}

const isNode = typeof process !== 'undefined' && Boolean(process.versions?.node);
const PAGE = 65536;
const HEAP_BASE = 1 << 20; // below: the kernels' static data
const MAX_PAGES = 65536; // wasm32: 4 GiB

class WasmBuf implements Buf {
  constructor(
    readonly ptr: number,
    readonly length: number,
    readonly dtype: DType,
    readonly root: boolean,
  ) {}
}
const p = (b: Buf | null): number => (b ? (b as WasmBuf).ptr : 0);

async function loadBytes(name: string): Promise<Uint8Array<ArrayBuffer>> {
  const url = new URL(`../build/${name}`, import.meta.url);
  if (isNode) {
    const { readFile } = await import('node:fs/promises');
    const b = await readFile(url);
    return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${url} (HTTP ${res.status})`);
  return new Uint8Array(await res.arrayBuffer());
}

async function enableRelaxedSimdInNode(): Promise<void> {
  // Node 20's V8 ships relaxed SIMD behind a flag; setting it before compiling is enough.
  if (!isNode) return;
  const v8 = await import('node:v8');
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
}

async function defaultThreads(): Promise<number> {
  if (isNode) return (await import('node:os')).availableParallelism();
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
}

export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<Backend> {
  if (opts.precision && opts.precision !== 'fp32') throw unsupportedPrecision('wasm', opts.precision, ['fp32']);
  if (typeof WebAssembly === 'undefined') throw new GPT2Error('WebAssembly is not available in this engine.');
  await enableRelaxedSimdInNode();
  // threads need SharedArrayBuffer: in browsers only on cross-origin-isolated pages (COOP/COEP)
  const isolated = typeof SharedArrayBuffer !== 'undefined' && (isNode || (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true);
  let threads = Math.max(1, Math.min(opts.threads ?? (await defaultThreads()), 64));
  let threadNote = '';
  if (!isolated) {
    threads = 1;
    threadNote = ' (the page is not cross-origin isolated, so SharedArrayBuffer is off: one thread)';
  }
  const suffix = isolated ? '' : '-single';
  const simdBytes = await loadBytes(`kernels-simd${suffix}.wasm`);
  if (!WebAssembly.validate(simdBytes)) throw new GPT2Error('This engine lacks WebAssembly SIMD (Node 16.4+, Chrome 91+, Firefox 89+, Safari 16.4+ have it).');
  const relaxedBytes = await loadBytes(`kernels-relaxed${suffix}.wasm`);
  const relaxed = opts.variant ? opts.variant === 'relaxed' : WebAssembly.validate(relaxedBytes);
  if (relaxed && !WebAssembly.validate(relaxedBytes)) throw new GPT2Error('This engine lacks WebAssembly relaxed SIMD; use the simd variant.');
  const module = await WebAssembly.compile(relaxed ? relaxedBytes : simdBytes);
  const memory = new WebAssembly.Memory({ initial: HEAP_BASE / PAGE + 16, maximum: MAX_PAGES, shared: isolated } as WebAssembly.MemoryDescriptor);
  const env = { memory, abort: () => { throw new Error('wasm abort'); } };
  const inst = await WebAssembly.instantiate(module, { env });
  const fns = Object.fromEntries(KERNEL_NAMES.map((n) => [n, inst.exports[n] as KernelFn])) as Record<KernelName, KernelFn>;

  // ---- worker pool ----
  const ctrl = isolated ? new SharedArrayBuffer(CTRL_BYTES) : new ArrayBuffer(CTRL_BYTES);
  const ints = new Int32Array(ctrl, 0, CTRL_INTS);
  const args = new Float64Array(ctrl, CTRL_INTS * 4, MAX_ARGS);
  const results = new Float64Array(ctrl, CTRL_INTS * 4 + MAX_ARGS * 8);
  const workers: { terminate(): unknown }[] = [];
  const canBlock = isNode || typeof (globalThis as { document?: unknown }).document === 'undefined';
  const ready: Promise<void>[] = [];
  for (let tid = 1; tid < threads; tid++) {
    const init = { module, memory, ctrl, tid, threads };
    if (isNode) {
      const { Worker } = await import('node:worker_threads');
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
      w.unref();
      ready.push(new Promise((res, rej) => { w.once('message', () => res()); w.once('error', rej); }));
      workers.push(w);
    } else {
      const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
      ready.push(new Promise((res, rej) => { w.onmessage = () => res(); w.onerror = (e) => rej(new Error(e.message)); }));
      w.postMessage(init);
      workers.push(w);
    }
  }
  await Promise.all(ready);

  /** Runs a kernel over `units` split in `grain` multiples; returns the sum of the threads' results. */
  function dispatch(name: KernelName, a: number[], units: number, grain: number, work: number): number {
    if (units <= 0) return 0;
    if (threads === 1 || work < 100_000 || units <= grain) return fns[name](...a, 0, units, 0);
    args.set(a);
    ints[KERNEL] = KERNEL_NAMES.indexOf(name);
    ints[NARGS] = a.length;
    ints[UNITS] = units;
    ints[GRAIN] = grain;
    Atomics.store(ints, DONE, 0);
    Atomics.add(ints, SEQ, 1);
    Atomics.notify(ints, SEQ);
    const [s, e] = share(units, grain, threads, 0);
    let total = s < e ? fns[name](...a, s, e, 0) : 0;
    for (let done = Atomics.load(ints, DONE), spin = 0; done < threads - 1; done = Atomics.load(ints, DONE)) {
      if (canBlock && ++spin > 20_000) Atomics.wait(ints, DONE, done); // spin first: the others finish about when we do
    }
    for (let t = 1; t < threads; t++) total += results[t];
    return total;
  }

  // ---- memory ----
  let top = HEAP_BASE;
  const freeLists = new Map<number, number[]>();
  const f32 = () => new Float32Array(memory.buffer);
  function alloc(length: number, dtype: DType = 'f32'): Buf {
    const bytes = Math.max(16, Math.ceil((length * 4) / 16) * 16);
    let ptr = freeLists.get(bytes)?.pop();
    if (ptr === undefined) {
      ptr = top;
      top += bytes;
      const need = Math.ceil(top / PAGE) - memory.buffer.byteLength / PAGE;
      if (need > 0) {
        try {
          memory.grow(need);
        } catch {
          top -= bytes;
          throw new OutOfMemoryError(
            `The wasm backend ran out of memory: ${(top / 2 ** 30).toFixed(2)} GiB in use and ${(bytes / 2 ** 20).toFixed(0)} MiB more asked, past WebAssembly's 4 GiB (the cpu backend has no such limit)`,
            bytes,
          );
        }
      }
    }
    new Uint8Array(memory.buffer, ptr, bytes).fill(0);
    return new WasmBuf(ptr, length, dtype, true);
  }

  // per-thread scratch (matmul_backward_weight's gathered dout columns, matmul_int8_forward's reordered input row), grown as needed
  let scratch: { buf: WasmBuf; floats: number } | undefined;
  function gatherScratch(floats: number): { ptr: number; stride: number } {
    if (!scratch || scratch.floats < floats) {
      if (scratch) free(scratch.buf);
      scratch = { buf: alloc(floats * threads) as WasmBuf, floats };
    }
    return { ptr: scratch.buf.ptr, stride: scratch.floats * 4 };
  }

  function free(buf: Buf): void {
    const b = buf as WasmBuf;
    if (!b.root) return;
    const bytes = Math.max(16, Math.ceil((b.length * 4) / 16) * 16);
    if (!freeLists.has(bytes)) freeLists.set(bytes, []);
    freeLists.get(bytes)!.push(b.ptr);
  }

  // The contract's fused kernels run here as their two halves: on CPU threads the saved pass is a
  // small share of a step, next to the matmuls.
  const k: Kernels = {
    encoderForward: (out, tokens, wte, wpe, B, T, C) => void dispatch('encoder_forward', [p(out), p(tokens), p(wte), p(wpe), B, T, C], B * T, 1, B * T * C),
    encoderBackward: (dwte, dwpe, dout, tokens, B, T, C) => void dispatch('encoder_backward', [p(dwte), p(dwpe), p(dout), p(tokens), B, T, C], C, 4, B * T * C),
    layernormForward: (out, mean, rstd, inp, w, b, N, C) => void dispatch('layernorm_forward', [p(out), p(mean), p(rstd), p(inp), p(w), p(b), N, C], N, 1, N * C * 4),
    layernormBackward: (dinp, dw, db, dout, inp, w, mean, rstd, N, C) => {
      dispatch('layernorm_backward_input', [p(dinp), p(dout), p(inp), p(w), p(mean), p(rstd), N, C], N, 1, N * C * 6);
      dispatch('layernorm_backward_params', [p(dw), p(db), p(dout), p(inp), p(mean), p(rstd), N, C], C, 4, N * C * 4);
    },
    residualLayernormForward(res, out, mean, rstd, a, b, w, bias, N, C) {
      dispatch('add', [p(res), p(a), p(b)], N * C, 16, N * C);
      dispatch('layernorm_forward', [p(out), p(mean), p(rstd), p(res), p(w), p(bias), N, C], N, 1, N * C * 4);
    },
    matmulForward: (out, inp, w, bias, N, IN, OUT) => void dispatch('matmul_forward', [p(out), p(inp), p(w), p(bias), N, IN, OUT], OUT, 4, N * IN * OUT),
    matmulGeluForward(out, pre, inp, w, bias, N, IN, OUT) {
      dispatch('matmul_forward', [p(pre), p(inp), p(w), p(bias), N, IN, OUT], OUT, 4, N * IN * OUT);
      dispatch('gelu_forward', [p(out), p(pre)], N * OUT, 16, N * OUT * 20);
    },
    matmulInt8Forward(out, pre, inp, q, scale, bias, N, IN, OUT) {
      // with GELU: pre = scale * dot + bias, then out = gelu(pre), as matmulGeluForward
      const g = gatherScratch(IN);
      dispatch('matmul_int8_forward', [p(pre ?? out), p(inp), p(q), p(scale), p(bias), N, IN, OUT, g.ptr, g.stride], OUT, 4, N * IN * OUT);
      if (pre) dispatch('gelu_forward', [p(out), p(pre)], N * OUT, 16, N * OUT * 20);
    },
    matmulBackward: (dinp, dw, dbias, dout, inp, w, N, IN, OUT) => {
      dispatch('matmul_backward_input', [p(dinp), p(dout), p(w), N, IN, OUT], N, 2, N * IN * OUT);
      // a null dw (a frozen weight) skips the dw product: dbias's column sums alone, no scratch
      if (!dw && !dbias) return;
      const g = dw ? gatherScratch(2 * N) : { ptr: 0, stride: 0 };
      dispatch('matmul_backward_weight', [p(dw), p(dbias), p(dout), p(inp), N, IN, OUT, g.ptr, g.stride], OUT, 2, N * (dw ? IN : 1) * OUT);
    },
    attentionForward: (out, lse, qkv, B, T, NH, HS) => void dispatch('attention_forward', [p(out), p(lse), p(qkv), B, T, NH, HS], B * NH, 1, B * NH * T * T * HS),
    attentionBackward: (dqkv, dout, qkv, out, lse, B, T, NH, HS) =>
      void dispatch('attention_backward', [p(dqkv), p(dout), p(qkv), p(out), p(lse), B, T, NH, HS], B * NH, 1, B * NH * T * T * HS * 2),
    // the rows' positions live in device memory: the work estimate takes the whole cache
    attentionDecode: (out, qkv, kc, vc, pos, B, T, NH, HS, maxT) =>
      void dispatch('attention_decode', [p(out), p(qkv), p(kc), p(vc), p(pos), B, T, NH, HS, maxT], B * NH, 1, B * NH * T * maxT * HS),
    geluForward: (out, inp, N) => void dispatch('gelu_forward', [p(out), p(inp)], N, 16, N * 20),
    geluBackward: (dinp, inp, dout, N) => void dispatch('gelu_backward', [p(dinp), p(inp), p(dout)], N, 16, N * 20),
    crossEntropyForward: (losses, hits, logits, targets, N, V) => void dispatch('cross_entropy_forward', [p(losses), p(hits), p(logits), p(targets), N, V], N, 1, N * V * 4),
    crossEntropyBackward(dlogits, losses, logits, targets, scale, N, V) {
      dispatch('cross_entropy_forward', [p(losses), 0, p(logits), p(targets), N, V], N, 1, N * V * 4);
      dispatch('cross_entropy_backward', [p(dlogits), p(logits), p(targets), scale, N, V], N, 1, N * V * 6);
    },
    scaledDropout: (out, inp, scale, prob, seed, N) =>
      void dispatch('scaled_dropout', [p(out), p(inp), dropoutMultiplier(scale, prob), dropoutThreshold(prob), seed], N, 16, N * 10),
    sumSquares: (out, x, N) => {
      f32()[p(out) / 4] = dispatch('sum_squares', [p(x)], N, 1024, N);
    },
    adamw: (params, grads, m, v, N, lr, beta1, beta2, eps, wd, step, gradScale) => {
      const c1 = 1 - Math.pow(beta1, step), c2 = 1 - Math.pow(beta2, step);
      dispatch('adamw', [p(params), p(grads), p(m), p(v), lr, beta1, beta2, 1 - beta1, 1 - beta2, eps, wd, c1, c2, gradScale], N, 16, N * 12);
    },
  };

  return {
    name: 'wasm',
    kernels: k,
    alloc,
    view(buf, offset, length) {
      const b = buf as WasmBuf;
      if (offset < 0 || offset + length > b.length) throw new RangeError(`view [${offset}, ${offset + length}) outside buffer of ${b.length}`);
      return new WasmBuf(b.ptr + offset * 4, length, b.dtype, false);
    },
    upload(dst, src) {
      const b = dst as WasmBuf;
      new Uint8Array(memory.buffer, b.ptr, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    },
    async read(src) {
      const b = src as WasmBuf;
      return new Float32Array(memory.buffer, b.ptr, b.length).slice();
    },
    hostView(buf) {
      const b = buf as WasmBuf; // shared memory is never detached by growing, so a view stays valid
      return new Float32Array(memory.buffer, b.ptr, b.length);
    },
    zero(buf) {
      const b = buf as WasmBuf;
      new Uint8Array(memory.buffer, b.ptr, b.length * 4).fill(0);
    },
    async sync() {},
    free,
    dispose() {
      Atomics.store(ints, STOP, 1);
      Atomics.add(ints, SEQ, 1);
      Atomics.notify(ints, SEQ);
      for (const w of workers) void w.terminate();
      workers.length = 0;
    },
    describe: () => ({
      device: `WebAssembly SIMD128${relaxed ? ' + relaxed SIMD (fused multiply-add)' : ''}`,
      threads: `${threads}${threadNote}`,
      memory: `${(memory.buffer.byteLength / 2 ** 20).toFixed(0)} MiB of 4096`,
      precision: 'fp32 only',
    }),
  };
}
