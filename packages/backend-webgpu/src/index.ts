// The WebGPU backend: WGSL kernels on one device, recorded into one command encoder per pass
// and submitted when the host reads, uploads or syncs. Node gets WebGPU from the `webgpu`
// package (Dawn); browsers from navigator.gpu. The same kernel code serves both.
import { GPT2Error, unsupportedPrecision, type Backend, type Buf, type DType, type Kernels, type Precision } from '@gpt2/core';
import { GpuBuf, Runtime } from './runtime.js';
import { splitKernels } from './kernels.js';
import { HalfWeights } from './kernels/half.js';

export interface WebGPUBackendOptions {
  /** A GPU object (navigator.gpu); default: navigator.gpu, or Dawn from the `webgpu` package in Node. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Refuse software adapters (SwiftShader, fallback adapters), as 'auto' backend selection does. */
  rejectSoftware?: boolean;
  /** Caps the binding size below the device's limit (to test splitting, or to mimic a smaller GPU). */
  maxBinding?: number;
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

/**
 * Why Dawn need not be loaded on this machine, if so: Linux with no GPU device (no DRM render node,
 * NVIDIA's or WSL's device) and no Vulkan driver named by VK_ICD_FILENAMES / VK_DRIVER_FILES. Dawn's
 * Vulkan probe of software drivers (lavapipe) prints warnings on stderr there that no JavaScript can
 * catch; `auto` (and `gpt2 info`) skip it, `--backend webgpu` still tries.
 */
export async function noGpuDevice(): Promise<string | undefined> {
  if (!isNode || process.platform !== 'linux' || process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return undefined;
  const { existsSync, readdirSync } = await import('node:fs');
  const dri = existsSync('/dev/dri') && readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  if (dri || existsSync('/dev/nvidia0') || existsSync('/dev/dxg')) return undefined;
  return 'this machine has no GPU device (/dev/dri/renderD*, /dev/nvidia0); pass --backend webgpu to try Dawn anyway (e.g. on SwiftShader with VK_ICD_FILENAMES)';
}

export async function createWebGPUBackend(opts: WebGPUBackendOptions = {}): Promise<Backend> {
  const precision = opts.precision ?? 'fp32';
  if (!OFFERED.includes(precision)) throw unsupportedPrecision('webgpu', precision, OFFERED);
  const none = opts.rejectSoftware && !opts.gpu ? await noGpuDevice() : undefined;
  if (none) throw new GPT2Error(`${none}.`);
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
  const rt = new Runtime(device, opts.maxBinding);
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
  const k = splitKernels(rt, scratchBuf, halves);

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
      precision: precision === 'f16' ? 'f16 weights (packed halves), f32 arithmetic' : 'fp32 (--precision f16 available)',
      'shader-f16': adapter.features.has('shader-f16') ? 'yes (not needed: f16 mode packs halves into u32)' : 'no',
    }),
  };
}
