// LoRA's input dropout and scaling (the scaledDropout kernel): out (N) += inp * mult where the mask
// keeps element i, one thread per element. The mask is core's dropout.ts bit for bit: lowbias32 of
// seed * 0x9e3779b9 + i on u32 arithmetic (wrapping, as WGSL's is), kept when the hash is at least
// floor(p * 2^32); that threshold and mult = fround(scale / (1 - p)) are computed on the host.
import { dropoutMultiplier, dropoutThreshold } from '@gpt2/core';
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';

// `base`: the index of inp[0] in the whole draw, when the elements come in several dispatches
const SCALED_DROPOUT = header([['inp', 'f32', 'read'], ['out', 'f32', 'read_write']], [['N', 'u32'], ['base', 'u32'], ['seed', 'u32'], ['keepFrom', 'u32'], ['mult', 'f32']]) + LINEAR + `
fn dropout_hash(seed: u32, i: u32) -> u32 {
  var x = seed * 0x9e3779b9u + i;
  x ^= x >> 16u;
  x *= 0x21f0aaadu;
  x ^= x >> 15u;
  x *= 0x735a2d97u;
  x ^= x >> 15u;
  return x;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.N) { return; }
  if (dropout_hash(P.seed, P.base + i) >= P.keepFrom) { out[P.o_out + i] += inp[P.o_inp + i] * P.mult; }
}`;

/** out (N) += scale * dropout_p(inp) for elements base .. base + N - 1 of the draw `seed` (a u32). */
export function scaledDropout(rt: Runtime, out: GpuBuf, inp: GpuBuf, scale: number, p: number, seed: number, base: number, N: number): void {
  rt.dispatch(rt.pipeline('scaled_dropout', SCALED_DROPOUT), [inp, out], [N, base, seed >>> 0, dropoutThreshold(p), { f32: dropoutMultiplier(scale, p) }], Math.ceil(N / WG));
}
