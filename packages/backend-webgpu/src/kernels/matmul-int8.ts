// Linear layers with int8 weights (core's model/int8.ts): c (M,Nc) = scale[n] * (a (M,K) . q[n,:])
// + bias[n], q (Nc,K) int8 packed four to a u32, each row padded to whole words; each word's four
// bytes are widened to floats in registers, never the whole matrix. Decoding (M < 4), as
// matmul.ts's GEMV: eight weight rows per workgroup, 32 lanes each striding a row's words, then a
// reduction, each row of a in turn, so each weight row is read from memory once per call. More rows
// (prefill, evaluation): one thread per output, its weight row shared through the caches. With
// gout, gout = gelu(c) (the MLP's first layer).
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { GELU } from './elementwise.js';

const COMMON = (gelu: boolean) => header(
  [['a', 'f32', 'read'], ['q', 'u32', 'read'], ['scale', 'f32', 'read'], ['bias', 'f32', 'read'], ['c', 'f32', 'read_write'], ...(gelu ? [['gout', 'f32', 'read_write'] as ['gout', 'f32', 'read_write']] : [])],
  [['M', 'u32'], ['Nc', 'u32'], ['K', 'u32'], ['hasBias', 'u32'], ['ldc', 'u32']],
) + LINEAR + (gelu ? GELU : '') + `
// the four int8 of a word (little-endian) as floats
fn bytes(w: u32) -> vec4<f32> {
  return vec4<f32>(vec4<i32>(bitcast<i32>(w << 24u) >> 24u, bitcast<i32>(w << 16u) >> 24u, bitcast<i32>(w << 8u) >> 24u, bitcast<i32>(w) >> 24u));
}
// inputs k .. k+3 of row m, zero past K
fn aQuad(m: u32, k: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) { if (k + j < P.K) { x[j] = a[P.o_a + m * P.K + k + j]; } }
  return x;
}
fn store(m: u32, n: u32, dot: f32) {
  var r = scale[P.o_scale + n] * dot;
  if (P.hasBias == 1u) { r += bias[P.o_bias + n]; }
  c[P.o_c + m * P.ldc + n] = r;
  ${gelu ? 'gout[P.o_gout + m * P.ldc + n] = gelu(r);' : ''}
}
`;

const GEMV_INT8 = (gelu: boolean) => COMMON(gelu) + `
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = group(wid, nwg) * 8u + lid.x / 32u;
  let lane = lid.x % 32u;
  let words = (P.K + 3u) / 4u;
  for (var m = 0u; m < P.M; m++) {
    var s = 0.0;
    if (n < P.Nc) {
      for (var w = lane; w < words; w += 32u) { s += dot(aQuad(m, w * 4u), bytes(q[P.o_q + n * words + w])); }
    }
    part[lid.x] = s;
    workgroupBarrier();
    for (var h = 16u; h > 0u; h >>= 1u) {
      if (lane < h) { part[lid.x] += part[lid.x + h]; }
      workgroupBarrier();
    }
    if (lane == 0u && n < P.Nc) { store(m, n, part[lid.x]); }
    workgroupBarrier();
  }
}
`;

const GEMM_INT8 = (gelu: boolean) => COMMON(gelu) + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.M * P.Nc) { return; }
  let m = i / P.Nc;
  let n = i % P.Nc;
  let words = (P.K + 3u) / 4u;
  var s = 0.0;
  for (var w = 0u; w < words; w++) { s += dot(aQuad(m, w * 4u), bytes(q[P.o_q + n * words + w])); }
  store(m, n, s);
}
`;

/** c (M,Nc) = scale * (a @ q^T) + bias, row stride ldc; with gout, gout = gelu(c). */
export function matmulInt8Forward(rt: Runtime, c: GpuBuf, gout: GpuBuf | null, a: GpuBuf, q: GpuBuf, scale: GpuBuf, bias: GpuBuf | null, M: number, K: number, Nc: number, ldc: number): void {
  const gemv = M < 4, key = `${gemv ? 'gemv' : 'gemm'}_int8_${gout ? 1 : 0}`;
  const code = gemv ? GEMV_INT8(gout !== null) : GEMM_INT8(gout !== null);
  rt.dispatch(rt.pipeline(key, code), [a, q, scale, bias ?? scale, c, ...(gout ? [gout] : [])], [M, Nc, K, bias ? 1 : 0, ldc], gemv ? Math.ceil(Nc / 8) : Math.ceil((M * Nc) / WG));
}
