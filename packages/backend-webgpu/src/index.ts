// The WebGPU backend: WGSL kernels on one device, recorded into one command encoder per pass
// and submitted when the host reads, uploads or syncs. Node gets WebGPU from the `webgpu`
// package (Dawn); browsers from navigator.gpu. The same kernel code serves both.
import { GPT2Error, unsupportedPrecision, type Backend, type Buf, type DType, type Kernels, type Precision } from '@gpt2/core';
import { GpuBuf, Runtime } from './runtime.js';
import { matmulBackward, matmulForward } from './kernels/matmul.js';
import { add, geluBackward, geluForward } from './kernels/elementwise.js';
import { encoderBackward, encoderForward } from './kernels/encoder.js';
import { layernormBackward, layernormForward } from './kernels/layernorm.js';
import { attentionBackward, attentionDecode, attentionForward } from './kernels/attention.js';
import { crossEntropyBackward, crossEntropyForward } from './kernels/crossentropy.js';
import { CHUNK, sumSquares } from './kernels/sum-squares.js';
import { adamw } from './kernels/adamw.js';
import { HalfWeights } from './kernels/half.js';

export interface WebGPUBackendOptions {
  /** A GPU object (navigator.gpu); default: navigator.gpu, or Dawn from the `webgpu` package in Node. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Refuse software adapters (SwiftShader, fallback adapters), as 'auto' backend selection does. */
  rejectSoftware?: boolean;
  /** fp32 (default) or f16: matmul weights read as IEEE half, arithmetic in f32 (kernels/half.ts). */
  precision?: Precision;
}

const OFFERED: readonly Precision[] = ['fp32', 'f16'];

const isNode = typeof process !== 'undefined' && Boolean(process.versions?.node);

async function findGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode) throw new GPT2Error('This browser has no WebGPU (navigator.gpu); use Chrome 113+ or another WebGPU browser, or the wasm backend.');
  let mod: { create: (flags: string[]) => GPU; globals: object };
  try {
    mod = (await import('webgpu')) as never;
  } catch (err) {
    throw new GPT2Error(`The webgpu package (Dawn) could not load: ${(err as Error).message}.`);
  }
  Object.assign(globalThis, mod.globals); // GPUBufferUsage, GPUMapMode, ...
  // the Vulkan loader complains on stderr without a runtime dir; give it the temp dir
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = (await import('node:os')).tmpdir();
  // one Dawn instance per process, kept reachable: if it were garbage-collected while a device
  // lives, Dawn would free state the device still uses (crashes under load)
  dawnGpu ??= mod.create([]);
  return dawnGpu;
}
let dawnGpu: GPU | undefined;

export async function createWebGPUBackend(opts: WebGPUBackendOptions = {}): Promise<Backend> {
  const precision = opts.precision ?? 'fp32';
  if (!OFFERED.includes(precision)) throw unsupportedPrecision('webgpu', precision, OFFERED);
  const gpu = opts.gpu ?? (await findGpu());
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new GPT2Error(
      isNode
        ? 'No WebGPU adapter found: this machine has no GPU driver Dawn can use (on Linux install libvulkan1 and a Vulkan driver, or set VK_ICD_FILENAMES to SwiftShader\'s ICD).'
        : 'No WebGPU adapter found: the browser has WebGPU but no usable GPU.',
    );
  }
  const ainfo = adapter.info ?? ({} as GPUAdapterInfo);
  const software = (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|software/i.test(`${ainfo.vendor} ${ainfo.architecture} ${ainfo.description}`);
  if (software && opts.rejectSoftware) {
    throw new GPT2Error('The only WebGPU adapter is a software renderer (slower than the wasm backend); pass --backend webgpu to use it anyway.');
  }
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(adapter.limits.maxStorageBuffersPerShaderStage, 10),
    },
  });
  const errors: string[] = [];
  device.addEventListener('uncapturederror', (e) => errors.push((e as GPUUncapturedErrorEvent).error.message));
  const rt = new Runtime(device);
  const checkErrors = () => {
    if (errors.length) throw new Error(`WebGPU error: ${errors.splice(0).join('; ')}`);
  };

  // backend-owned scratch, grown on demand
  const scratch = new Map<string, GpuBuf>();
  const scratchBuf = (name: string, length: number): GpuBuf => {
    let b = scratch.get(name);
    if (!b || b.length < length) {
      b?.buffer.destroy();
      b = rt.alloc(length, 'f32');
      scratch.set(name, b);
    }
    return new GpuBuf(b.buffer, 0, length, 'f32', false);
  };
  const g = (b: Buf) => b as GpuBuf;
  const halves = precision === 'f16' ? new HalfWeights(rt) : null;
  const sub = (b: Buf, offset: number, length: number) => new GpuBuf(g(b).buffer, g(b).offset + offset, length, g(b).dtype, false);

  /** Runs fn over row chunks small enough that every row-major operand fits one binding. */
  const byRows = (N: number, rowFloats: number, fn: (n0: number, rows: number) => void) => {
    const maxRows = Math.max(1, Math.floor(rt.maxBinding / 4 / rowFloats) - 64);
    for (let n0 = 0; n0 < N; n0 += maxRows) fn(n0, Math.min(maxRows, N - n0));
  };

  const k: Kernels = {
    encoderForward: (out, tokens, wte, wpe, B, T, C) => encoderForward(rt, g(out), g(tokens), g(wte), g(wpe), B, T, C),
    encoderBackward: (dwte, dwpe, dout, tokens, B, T, C) => encoderBackward(rt, g(dwte), g(dwpe), g(dout), g(tokens), B, T, C),
    layernormForward: (out, mean, rstd, inp, w, b, N, C) => layernormForward(rt, g(out), g(mean), g(rstd), g(inp), g(w), g(b), N, C),
    layernormBackward: (dinp, dw, db, dout, inp, w, mean, rstd, N, C) => layernormBackward(rt, g(dinp), g(dw), g(db), g(dout), g(inp), g(w), g(mean), g(rstd), N, C),
    matmulForward: (out, inp, w, bias, N, IN, OUT) =>
      byRows(N, Math.max(IN, OUT), (n0, rows) =>
        matmulForward(rt, sub(out, n0 * OUT, rows * OUT), sub(inp, n0 * IN, rows * IN), halves ? halves.of(g(w)) : g(w), bias && g(bias), rows, IN, OUT, Boolean(halves))),
    matmulBackward: (dinp, dw, dbias, dout, inp, w, N, IN, OUT) =>
      byRows(N, Math.max(IN, OUT), (n0, rows) =>
        matmulBackward(rt, sub(dinp, n0 * IN, rows * IN), g(dw), dbias && g(dbias), sub(dout, n0 * OUT, rows * OUT), sub(inp, n0 * IN, rows * IN), g(w), rows, IN, OUT, halves?.of(g(w)))),
    attentionForward: (out, lse, qkv, B, T, NH, HS) => attentionForward(rt, g(out), g(lse), g(qkv), B, T, NH, HS),
    attentionBackward: (dqkv, dout, qkv, out, lse, B, T, NH, HS) =>
      attentionBackward(rt, scratchBuf('attentionD', B * NH * T), g(dqkv), g(dout), g(qkv), g(out), g(lse), B, T, NH, HS),
    attentionDecode: (out, qkv, kc, vc, B, T, pos, NH, HS, maxT) => attentionDecode(rt, g(out), g(qkv), g(kc), g(vc), B, T, pos, NH, HS, maxT),
    geluForward: (out, inp, N) => geluForward(rt, g(out), g(inp), N),
    geluBackward: (dinp, inp, dout, N) => geluBackward(rt, g(dinp), g(inp), g(dout), N),
    add: (out, a, b, N) => add(rt, g(out), g(a), g(b), N),
    crossEntropyForward: (losses, logits, targets, N, V) =>
      byRows(N, V, (n0, rows) => crossEntropyForward(rt, sub(losses, n0, rows), sub(logits, n0 * V, rows * V), sub(targets, n0, rows), rows, V)),
    crossEntropyBackward: (dlogits, logits, targets, scale, N, V) =>
      byRows(N, V, (n0, rows) =>
        crossEntropyBackward(rt, (d, s) => rt.copy(d, s), sub(dlogits, n0 * V, rows * V), sub(logits, n0 * V, rows * V), sub(targets, n0, rows), scale, rows, V)),
    sumSquares: (out, x, N) => sumSquares(rt, scratchBuf('partials', Math.ceil(N / CHUNK)), g(out), g(x), N),
    adamw: (params, grads, m, v, N, lr, b1, b2, eps, wd, step, gs) => adamw(rt, g(params), g(grads), g(m), g(v), N, lr, b1, b2, eps, wd, step, gs),
  };

  const info = adapter.info ?? ({} as GPUAdapterInfo);
  return {
    name: 'webgpu',
    kernels: k,
    alloc: (length: number, dtype: DType = 'f32') => rt.alloc(length, dtype),
    view(buf, offset, length) {
      const b = g(buf);
      if (offset < 0 || offset + length > b.length) throw new RangeError(`view [${offset}, ${offset + length}) outside buffer of ${b.length}`);
      return new GpuBuf(b.buffer, b.offset + offset, length, b.dtype, false);
    },
    upload: (dst, src) => rt.upload(g(dst), src),
    async read(src) {
      const out = await rt.read(g(src));
      checkErrors();
      return out;
    },
    zero: (buf) => rt.clear(g(buf)),
    async sync() {
      await rt.sync();
      checkErrors();
    },
    free(buf) {
      const b = g(buf);
      if (b.root) {
        halves?.forget(b.buffer);
        b.buffer.destroy();
      }
    },
    dispose() {
      for (const b of scratch.values()) b.buffer.destroy();
      halves?.dispose();
      device.destroy();
    },
    describe: () => ({
      device: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter',
      maxBinding: `${(rt.maxBinding / 2 ** 20).toFixed(0)} MiB`,
      precision: precision === 'f16' ? 'f16 weights (packed halves), f32 arithmetic' : 'fp32',
      'shader-f16': adapter.features.has('shader-f16') ? 'yes (not needed: f16 mode packs halves into u32)' : 'no',
    }),
  };
}
