// One tiled GEMM for every matmul: C (M,Nc) (+)= op(A) (M,K) @ op(B) (K,Nc) (+ bias).
// 64x64 tiles of C per workgroup, 16-deep K slices through workgroup memory, 4x4 outputs per
// thread. forward: A = inp, B = W^T (transB); dinp: A = dout, B = W (accumulate);
// dW: A = dout^T (transA), B = inp (accumulate). dbias is a column-sum kernel.
// Each thread loads four contiguous elements of each operand's tile per K slice: one vec4 when
// that operand's contiguous dimension, row stride and offset are multiples of 4 (every GPT-2
// product except those with V = 50257), else four scalars. The code is generated per variant.
// B may be packed halves (--precision f16, half.ts) when it is a weight. The forward product can
// also write gelu(C) to a second output in its epilogue (the MLP's fused matmul + GELU).
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { GELU } from './elementwise.js';
import { halfAt } from './half.js';

interface Variant {
  transA: boolean; // A stored (K, M): contiguous along M
  transB: boolean; // B stored (Nc, K): contiguous along K
  vecA: boolean;
  vecB: boolean;
  half: boolean; // B is packed halves
  accumulate: boolean;
  gelu: boolean; // also gout = gelu(C)
}

/** The output bindings: C, and gout = gelu(C) when fused. */
const outputs = (gelu: boolean): [string, 'f32', 'read_write'][] => (gelu ? [['c', 'f32', 'read_write'], ['gout', 'f32', 'read_write']] : [['c', 'f32', 'read_write']]);

// aQuad(i, n) / bQuad(i, n): elements i .. i+3 of the operand, the first n of them (0..4) real
// and the rest zero. A vec4 load only ever sees n = 0 or 4 (its contiguous dimension is a
// multiple of 4).
function quad(name: 'a' | 'b', vec: boolean, half: boolean): string {
  if (half && vec) {
    return `fn ${name}Quad(i: u32, n: u32) -> vec4<f32> {
  if (n < 4u) { return vec4<f32>(0.0); }
  let q = ${name}[(2u * P.o_${name} + i) / 4u];
  return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
}
`;
  }
  if (vec) {
    return `fn ${name}Quad(i: u32, n: u32) -> vec4<f32> {
  if (n < 4u) { return vec4<f32>(0.0); }
  return ${name}[(P.o_${name} + i) / 4u];
}
`;
  }
  return `${half ? halfAt(name) : `fn ${name}At(i: u32) -> f32 { return ${name}[P.o_${name} + i]; }\n`}
fn ${name}Quad(i: u32, n: u32) -> vec4<f32> {
  var q = vec4<f32>(0.0);
  for (var j = 0u; j < n; j++) { q[j] = ${name}At(i + j); }
  return q;
}
`;
}

// One operand's tile into workgroup memory laid [k][x] (x = m for A, n for B, 64 wide), one
// quad per thread, along whichever dimension the operand is contiguous in: along k (rows of 16
// k's, 4 quads each) or along x (16 rows of 64 x's, 16 quads each). `dim` is x's extent,
// `start` the tile's first x, `ld` the operand's row stride.
function tileLoad(alongK: boolean, tile: string, quad: string, dim: string, start: string, ld: string): string {
  return alongK ? `
    {
      let x = lid.x / 4u;
      let k = (lid.x % 4u) * 4u;
      var cnt = 0u;
      if (${start} + x < ${dim} && k0 + k < P.K) { cnt = min(4u, P.K - k0 - k); }
      let q = ${quad}((${start} + x) * ${ld} + k0 + k, cnt);
      for (var j = 0u; j < 4u; j++) { ${tile}[(k + j) * 64u + x] = q[j]; }
    }` : `
    {
      let k = lid.x / 16u;
      let x = (lid.x % 16u) * 4u;
      var cnt = 0u;
      if (k0 + k < P.K && ${start} + x < ${dim}) { cnt = min(4u, ${dim} - ${start} - x); }
      let q = ${quad}((k0 + k) * ${ld} + ${start} + x, cnt);
      for (var j = 0u; j < 4u; j++) { ${tile}[k * 64u + x + j] = q[j]; }
    }`;
}

function gemmCode(v: Variant): string {
  const bType = v.half ? (v.vecB ? 'vec2<u32>' : 'u32') : v.vecB ? 'vec4<f32>' : 'f32';
  return header(
    [['a', v.vecA ? 'vec4<f32>' : 'f32', 'read'], ['b', bType, 'read'], ['bias', 'f32', 'read'], ...outputs(v.gelu)],
    [['M', 'u32'], ['Nc', 'u32'], ['K', 'u32'], ['hasBias', 'u32'], ['lda', 'u32'], ['ldc', 'u32']],
  ) + LINEAR + (v.gelu ? GELU : '') + quad('a', v.vecA, false) + quad('b', v.vecB, v.half) + `
var<workgroup> As: array<f32, 1024>; // [k][m], 16 x 64
var<workgroup> Bs: array<f32, 1024>; // [k][n], 16 x 64

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tilesN = (P.Nc + 63u) / 64u;
  let g = group(wid, nwg);
  if (g >= tilesN * ((P.M + 63u) / 64u)) { return; }
  let m0 = (g / tilesN) * 64u;
  let n0 = (g % tilesN) * 64u;
  let tx = lid.x % 16u; // this thread's 4x4 outputs: rows ty*4.., columns tx*4..
  let ty = lid.x / 16u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < P.K; k0 += 16u) {${tileLoad(!v.transA, 'As', 'aQuad', 'P.M', 'm0', 'P.lda')}${tileLoad(v.transB, 'Bs', 'bQuad', 'P.Nc', 'n0', v.transB ? 'P.K' : 'P.Nc')}
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) {
      let x = vec4<f32>(As[k * 64u + ty * 4u], As[k * 64u + ty * 4u + 1u], As[k * 64u + ty * 4u + 2u], As[k * 64u + ty * 4u + 3u]);
      let y = vec4<f32>(Bs[k * 64u + tx * 4u], Bs[k * 64u + tx * 4u + 1u], Bs[k * 64u + tx * 4u + 2u], Bs[k * 64u + tx * 4u + 3u]);
      for (var i = 0u; i < 4u; i++) {
        acc[i * 4u] += x[i] * y.x;
        acc[i * 4u + 1u] += x[i] * y.y;
        acc[i * 4u + 2u] += x[i] * y.z;
        acc[i * 4u + 3u] += x[i] * y.w;
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m >= P.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n >= P.Nc) { continue; }
      var v = acc[i * 4u + j];
      if (P.hasBias == 1u) { v += bias[P.o_bias + n]; }
      let ci = P.o_c + m * P.ldc + n;
      ${v.accumulate ? 'v += c[ci];' : ''}
      c[ci] = v;
      ${v.gelu ? 'gout[P.o_gout + m * P.ldc + n] = gelu(v);' : ''}
    }
  }
}
`;
}

const BIAS_GRAD = header([['dout', 'f32', 'read'], ['dbias', 'f32', 'read_write']], [['N', 'u32'], ['OUT', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let o = linear(wid, nwg, lid);
  if (o >= P.OUT) { return; }
  var s = 0.0;
  for (var n = 0u; n < P.N; n++) { s += dout[P.o_dout + n * P.OUT + o]; }
  dbias[P.o_dbias + o] += s;
}
`;

// Fewer than 4 rows (decoding): a workgroup computes 8 outputs, 32 threads per output reading
// quads of its weight row in turn (512 contiguous bytes per step: vec4s, or packed halves as
// vec2<u32>, when aligned), then a workgroup-memory reduction.
const GEMV = (v: { half: boolean; gelu: boolean; vecA: boolean; vecB: boolean }) => header(
  [['a', v.vecA ? 'vec4<f32>' : 'f32', 'read'], ['b', v.half ? (v.vecB ? 'vec2<u32>' : 'u32') : v.vecB ? 'vec4<f32>' : 'f32', 'read'], ['bias', 'f32', 'read'], ...outputs(v.gelu)],
  [['M', 'u32'], ['Nc', 'u32'], ['K', 'u32'], ['hasBias', 'u32'], ['ldc', 'u32']],
) + LINEAR + (v.gelu ? GELU : '') + quad('a', v.vecA, false) + quad('b', v.vecB, v.half) + `
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = group(wid, nwg) * 8u + lid.x / 32u;
  let lane = lid.x % 32u;
  for (var m = 0u; m < P.M; m++) {
    var s = 0.0;
    if (n < P.Nc) {
      for (var k = lane * 4u; k < P.K; k += 128u) {
        let cnt = min(4u, P.K - k);
        s += dot(aQuad(m * P.K + k, cnt), bQuad(n * P.K + k, cnt));
      }
    }
    part[lid.x] = s;
    workgroupBarrier();
    for (var w = 16u; w > 0u; w >>= 1u) {
      if (lane < w) { part[lid.x] += part[lid.x + w]; }
      workgroupBarrier();
    }
    if (lane == 0u && n < P.Nc) {
      var r = part[lid.x];
      if (P.hasBias == 1u) { r += bias[P.o_bias + n]; }
      c[P.o_c + m * P.ldc + n] = r;
      ${v.gelu ? 'gout[P.o_gout + m * P.ldc + n] = gelu(r);' : ''}
    }
    workgroupBarrier();
  }
}
`;

/** Whether an operand can be read as vec4s (or, for packed halves, as vec2<u32>s). */
function vectorizable(rt: Runtime, x: GpuBuf, contiguous: number, ld: number, half: boolean): boolean {
  return contiguous % 4 === 0 && ld % 4 === 0 && rt.shiftOf(x) % (half ? 2 : 4) === 0;
}

/**
 * C (M,Nc) (+)= op(A) @ op(B) (+ bias). Row strides: lda for A as stored (K, or M when transA,
 * unless A is a column block of a wider matrix), ldc for C (Nc unless C is a column block); B is
 * never a block. `half`: B is packed halves.
 */
function gemm(rt: Runtime, c: GpuBuf, a: GpuBuf, b: GpuBuf, bias: GpuBuf | null, M: number, Nc: number, K: number,
  transA: boolean, transB: boolean, accumulate: boolean, half: boolean, lda: number, ldc: number, g: GpuBuf | null = null): void {
  const v: Variant = {
    transA, transB, half, accumulate, gelu: g !== null,
    vecA: vectorizable(rt, a, transA ? M : K, lda, false),
    vecB: vectorizable(rt, b, transB ? K : Nc, transB ? K : Nc, half),
  };
  const key = `gemm_${[v.transA, v.transB, v.vecA, v.vecB, v.half, v.accumulate, v.gelu].map(Number).join('')}`;
  rt.dispatch(rt.pipeline(key, gemmCode(v)), [a, b, bias ?? a, c, ...(g ? [g] : [])], [M, Nc, K, bias ? 1 : 0, lda, ldc], Math.ceil(M / 64) * Math.ceil(Nc / 64));
}

/**
 * out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias, where out may be a column block of a matrix
 * with row stride ldc (a weight split across bindings). `half`: w is packed halves (half.ts).
 * `gelu`: also gelu(out) into it (same shape and stride).
 */
export function matmulForward(rt: Runtime, out: GpuBuf, inp: GpuBuf, w: GpuBuf, bias: GpuBuf | null, N: number, IN: number, OUT: number, half: boolean, ldc: number, gelu: GpuBuf | null): void {
  if (N < 4) {
    const v = { half, gelu: gelu !== null, vecA: vectorizable(rt, inp, IN, IN, false), vecB: vectorizable(rt, w, IN, IN, half) };
    const key = `gemv_${[v.half, v.gelu, v.vecA, v.vecB].map(Number).join('')}`;
    rt.dispatch(rt.pipeline(key, GEMV(v)), [inp, w, bias ?? inp, out, ...(gelu ? [gelu] : [])], [N, OUT, IN, bias ? 1 : 0, ldc], Math.ceil(OUT / 8));
  } else {
    gemm(rt, out, inp, w, bias, N, OUT, IN, false, true, false, half, IN, ldc, gelu);
  }
}

/**
 * dinp (N,IN) += dout @ w; dw (OUT,IN) += dout^T @ inp, where dout may be a column block (row
 * stride ldd) and w, dw the matching rows of a weight split across bindings. A null dw is a frozen
 * weight (LoRA's base): no dw product. `wHalf`: the packed-half copy of w to use in dinp under
 * --precision f16. dbias: biasBackward.
 */
export function matmulBackward(rt: Runtime, dinp: GpuBuf, dw: GpuBuf | null, dout: GpuBuf, inp: GpuBuf, w: GpuBuf, N: number, IN: number, OUT: number, ldd: number, wHalf?: GpuBuf): void {
  gemm(rt, dinp, dout, wHalf ?? w, null, N, IN, OUT, false, false, true, wHalf !== undefined, ldd, IN);
  if (dw) gemm(rt, dw, dout, inp, null, OUT, IN, N, true, false, true, false, ldd, IN);
}

/** dbias (OUT) += column sums of dout (N,OUT). */
export function biasBackward(rt: Runtime, dbias: GpuBuf, dout: GpuBuf, N: number, OUT: number): void {
  rt.dispatch(rt.pipeline('bias_grad', BIAS_GRAD), [dout, dbias], [N, OUT], Math.ceil(OUT / WG));
}
