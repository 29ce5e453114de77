// --precision f16: matmul weights read as IEEE half, two per u32 (WGSL's core pack2x16float /
// unpack2x16float, so it runs on every adapter, SwiftShader included; `shader-f16` is not
// needed because all arithmetic stays f32). Each weight view gets a packed copy, made on first
// use and remade when the runtime has recorded a write to the weight's buffer since (AdamW,
// an upload), so training keeps fp32 master weights and the copies follow them.
import { GpuBuf, header, LINEAR, WG, type Runtime } from '../runtime.js';

// out[i] = (x[2i], x[2i+1]) as two halves; an odd tail packs a zero
const PACK = header([['x', 'f32', 'read'], ['out', 'u32', 'read_write']], [['N', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (2u * i >= P.N) { return; }
  var hi = 0.0;
  if (2u * i + 1u < P.N) { hi = x[P.o_x + 2u * i + 1u]; }
  out[P.o_out + i] = pack2x16float(vec2<f32>(x[P.o_x + 2u * i], hi));
}
`;

/** The WGSL that reads element i of a packed-half binding `name` (declared array<u32>). */
export const halfAt = (name: string) => `
fn ${name}At(i: u32) -> f32 { return unpack2x16float(${name}[P.o_${name} + i / 2u])[i % 2u]; }
`;

interface Packed {
  buf: GpuBuf;
  version: number;
}

export class HalfWeights {
  private packed = new Map<GPUBuffer, Map<string, Packed>>();

  constructor(private rt: Runtime) {}

  /** The packed-half copy of weight view w, brought up to date (recorded) if w's buffer has changed. */
  of(w: GpuBuf): GpuBuf {
    let views = this.packed.get(w.buffer);
    if (!views) this.packed.set(w.buffer, (views = new Map()));
    const key = `${w.offset}:${w.length}`;
    let p = views.get(key);
    const version = this.rt.version(w.buffer);
    if (p && p.version === version) return p.buf;
    p ??= { buf: this.rt.alloc(Math.ceil(w.length / 2), 'i32'), version };
    p.version = version;
    views.set(key, p);
    this.rt.dispatch(this.rt.pipeline('pack_half', PACK), [w, p.buf], [w.length], Math.ceil(w.length / 2 / WG));
    return p.buf;
  }

  /** Drops the copies of a buffer that is being freed. */
  forget(buffer: GPUBuffer): void {
    for (const p of this.packed.get(buffer)?.values() ?? []) p.buf.buffer.destroy();
    this.packed.delete(buffer);
  }

  dispose(): void {
    for (const views of this.packed.values()) for (const p of views.values()) p.buf.buffer.destroy();
    this.packed.clear();
  }
}
