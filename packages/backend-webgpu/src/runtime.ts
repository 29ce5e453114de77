// WebGPU plumbing: buffers and views, recorded dispatches, and one command encoder per flush.
// Kernel calls only record; `flush` (before a read, an upload or a sync) writes every dispatch's
// uniforms at once, encodes all dispatches into one compute pass and submits it. Bind groups are
// cached (the uniforms sit behind a dynamic offset), since making one costs about as much CPU
// time as encoding the dispatch, and a decoding step repeats the same ~135 dispatches.
import { GPT2Error, type Buf, type DType } from '@gpt2/core';

export const WG = 256; // threads per workgroup, every kernel

export class GpuBuf implements Buf {
  constructor(
    readonly buffer: GPUBuffer,
    readonly offset: number, // elements
    readonly length: number,
    readonly dtype: DType,
    readonly root: boolean,
  ) {}
}

/** One binding: a buffer range whose start is aligned down to the offset alignment; `shift` elements remain. */
interface Binding {
  buffer: GPUBuffer;
  byteOffset: number;
  byteSize: number;
  shift: number;
}

interface Dispatch {
  pipeline: GPUComputePipeline;
  bindings: Binding[];
  params: ArrayBuffer; // the uniform block, shifts first
  grid: [number, number];
}

type Command =
  | { kind: 'dispatch'; d: Dispatch }
  | { kind: 'clear'; buffer: GPUBuffer; offset: number; size: number }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };

export type Param = number | { f32: number };

/** What the runtime keeps of a pipeline: its explicit bind group layout and which bindings it writes. */
interface PipelineInfo {
  id: number;
  layout: GPUBindGroupLayout;
  writes: number[]; // read_write binding indices, so a dispatch knows which buffers it changes
}

const CACHED_BIND_GROUPS = 4096; // past this the cache starts over (buffers freed long ago)

export class Runtime {
  private commands: Command[] = [];
  private pipelines = new Map<string, GPUComputePipeline>();
  private info = new Map<GPUComputePipeline, PipelineInfo>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 0;
  /** A count of recorded writes per buffer: caches derived from a buffer (f16 weights) compare it. */
  private versions = new WeakMap<GPUBuffer, number>();
  private uniform?: GPUBuffer;
  readonly align: number;
  readonly maxBinding: number;

  constructor(readonly device: GPUDevice, maxBinding = Infinity) {
    this.align = device.limits.minStorageBufferOffsetAlignment;
    this.maxBinding = Math.min(device.limits.maxStorageBufferBindingSize, maxBinding);
  }

  alloc(length: number, dtype: DType): GpuBuf {
    const size = Math.max(16, Math.ceil((length * 4) / 16) * 16);
    if (size > this.device.limits.maxBufferSize) {
      throw new GPT2Error(
        `A ${(size / 2 ** 20).toFixed(0)} MiB buffer is larger than this GPU allows (${(this.device.limits.maxBufferSize / 2 ** 20).toFixed(0)} MiB); use a smaller model, batch or block size.`,
      );
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    void this.device.popErrorScope().then((e) => {
      if (e) console.error(`gpt2.ts webgpu: out of GPU memory allocating ${(size / 2 ** 20).toFixed(0)} MiB: ${e.message}`);
    });
    return new GpuBuf(buffer, 0, length, dtype, true);
  }

  pipeline(key: string, code: string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      // the layout from the declarations header() writes: storage buffers, then the uniform block
      const decls = [...code.matchAll(/@binding\((\d+)\) var<(storage, read|storage, read_write|uniform)>/g)];
      const entries: GPUBindGroupLayoutEntry[] = decls.map((m) => ({
        binding: Number(m[1]),
        visibility: GPUShaderStage.COMPUTE,
        buffer: m[2] === 'uniform' ? { type: 'uniform', hasDynamicOffset: true } : { type: m[2] === 'storage, read' ? 'read-only-storage' : 'storage' },
      }));
      const layout = this.device.createBindGroupLayout({ entries, label: key });
      const module = this.device.createShaderModule({ code, label: key });
      p = this.device.createComputePipeline({ layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' }, label: key });
      this.pipelines.set(key, p);
      const writes = decls.filter((m) => m[2] === 'storage, read_write').map((m) => Number(m[1]));
      this.info.set(p, { id: this.info.size, layout, writes });
    }
    return p;
  }

  /** The bind group of these bindings (and the uniform buffer, offset at dispatch), made once. */
  private bindGroup(pipeline: GPUComputePipeline, bindings: Binding[], paramBytes: number): GPUBindGroup {
    const info = this.info.get(pipeline)!;
    const id = (b: GPUBuffer) => {
      let i = this.bufferIds.get(b);
      if (i === undefined) this.bufferIds.set(b, (i = this.nextBufferId++));
      return i;
    };
    const key = `${info.id}:${paramBytes}:${bindings.map((b) => `${id(b.buffer)}@${b.byteOffset}+${b.byteSize}`).join(',')}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      if (this.bindGroups.size >= CACHED_BIND_GROUPS) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = bindings.map((b, i) => ({ binding: i, resource: { buffer: b.buffer, offset: b.byteOffset, size: b.byteSize } }));
      entries.push({ binding: bindings.length, resource: { buffer: this.uniform!, offset: 0, size: paramBytes } });
      bg = this.device.createBindGroup({ layout: info.layout, entries });
      this.bindGroups.set(key, bg);
    }
    return bg;
  }

  /** Records a dispatch of `workgroups` workgroups (folded into 2D past 65535) over these buffers and uniforms. */
  dispatch(pipeline: GPUComputePipeline, bufs: GpuBuf[], params: Param[], workgroups: number): void {
    if (workgroups <= 0) return;
    for (const i of this.info.get(pipeline)!.writes) this.touch(bufs[i].buffer);
    const bindings = bufs.map((b) => this.binding(b));
    const values: Param[] = [...bindings.map((b) => b.shift), ...params];
    const data = new ArrayBuffer(Math.ceil((values.length * 4) / 16) * 16);
    const u = new Uint32Array(data), f = new Float32Array(data);
    values.forEach((v, i) => (typeof v === 'number' ? (u[i] = v) : (f[i] = v.f32)));
    const x = Math.min(workgroups, 65535);
    this.commands.push({ kind: 'dispatch', d: { pipeline, bindings, params: data, grid: [x, Math.ceil(workgroups / x)] } });
  }

  /** How many writes to this buffer have been recorded so far. */
  version(buffer: GPUBuffer): number {
    return this.versions.get(buffer) ?? 0;
  }

  private touch(buffer: GPUBuffer): void {
    this.versions.set(buffer, this.version(buffer) + 1);
  }

  clear(b: GpuBuf): void {
    this.touch(b.buffer);
    this.commands.push({ kind: 'clear', buffer: b.buffer, offset: b.offset * 4, size: b.length * 4 });
  }

  copy(dst: GpuBuf, src: GpuBuf): void {
    this.touch(dst.buffer);
    this.commands.push({ kind: 'copy', src: src.buffer, srcOffset: src.offset * 4, dst: dst.buffer, dstOffset: dst.offset * 4, size: Math.min(src.length, dst.length) * 4 });
  }

  /** Elements between a view's aligned binding start and its first element. */
  shiftOf(b: GpuBuf): number {
    return ((b.offset * 4) % this.align) / 4;
  }

  private binding(b: GpuBuf): Binding {
    const start = b.offset * 4;
    const byteOffset = start - (start % this.align);
    const byteSize = Math.ceil((start + b.length * 4 - byteOffset) / 4) * 4;
    if (byteSize > this.maxBinding) {
      throw new GPT2Error(`A ${(byteSize / 2 ** 20).toFixed(0)} MiB operand exceeds this GPU's ${(this.maxBinding / 2 ** 20).toFixed(0)} MiB binding limit; use a smaller batch or block size.`);
    }
    return { buffer: b.buffer, byteOffset, byteSize: Math.max(4, byteSize), shift: (start - byteOffset) / 4 };
  }

  get pending(): boolean {
    return this.commands.length > 0;
  }

  /** Encodes every recorded command into one command buffer and submits it. */
  flush(): void {
    if (this.commands.length === 0) return;
    const slot = 256; // uniform offsets must be 256-byte aligned
    const dispatches = this.commands.filter((c) => c.kind === 'dispatch').length;
    const need = Math.max(slot, dispatches * slot);
    if (!this.uniform || this.uniform.size < need) {
      this.uniform?.destroy();
      this.uniform = this.device.createBuffer({ size: Math.max(need, 64 * 1024), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.bindGroups.clear(); // they bind the old uniform buffer
    }
    const staging = new Uint8Array(need);
    const enc = this.device.createCommandEncoder();
    let pass: GPUComputePassEncoder | undefined;
    let n = 0;
    for (const c of this.commands) {
      if (c.kind !== 'dispatch') {
        pass?.end();
        pass = undefined;
        if (c.kind === 'clear') enc.clearBuffer(c.buffer, c.offset, c.size);
        else enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        continue;
      }
      const d = c.d;
      staging.set(new Uint8Array(d.params), n * slot);
      pass ??= enc.beginComputePass();
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, this.bindGroup(d.pipeline, d.bindings, d.params.byteLength), [n * slot]);
      pass.dispatchWorkgroups(d.grid[0], d.grid[1]);
      n++;
    }
    pass?.end();
    this.device.queue.writeBuffer(this.uniform, 0, staging);
    this.device.queue.submit([enc.finish()]);
    this.commands = [];
  }

  upload(b: GpuBuf, src: Float32Array | Int32Array): void {
    this.flush(); // earlier dispatches may read the old contents
    this.touch(b.buffer);
    this.device.queue.writeBuffer(b.buffer, b.offset * 4, src.buffer, src.byteOffset, src.byteLength);
  }

  async read(b: GpuBuf): Promise<Float32Array> {
    this.flush();
    const size = Math.ceil((b.length * 4) / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(4, size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(b.buffer, b.offset * 4, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out.subarray(0, b.length);
  }

  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }
}

/** The WGSL declarations of a kernel's bindings (in order) and its uniform block (binding shifts first). */
export function header(bindings: [name: string, type: 'f32' | 'i32' | 'u32' | 'vec4<f32>' | 'vec2<u32>', access: 'read' | 'read_write'][], params: [string, 'u32' | 'f32'][]): string {
  const lines = bindings.map(([n, t, a], i) => `@group(0) @binding(${i}) var<storage, ${a}> ${n}: array<${t}>;`);
  const fields = [...bindings.map(([n]) => `o_${n}: u32`), ...params.map(([n, t]) => `${n}: ${t}`)];
  lines.push(`struct Params { ${fields.join(', ')} }`);
  lines.push(`@group(0) @binding(${bindings.length}) var<uniform> P: Params;`);
  return lines.join('\n') + '\n';
}

/** The linear invocation index of a 2D-folded dispatch of WG-sized workgroups. */
export const LINEAR = `
fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 { return (wid.y * nwg.x + wid.x) * ${WG}u + lid.x; }
fn group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.y * nwg.x + wid.x; }
`;
