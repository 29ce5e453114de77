// One tiled GEMM for every matmul: C (M,Nc) (+)= op(A) (M,K) @ op(B) (K,Nc) (+ bias).
// 64x64 tiles of C per workgroup, 16-deep K slices through workgroup memory, 4x4 outputs per
// thread. forward: A = inp, B = W^T (transB); dinp: A = dout, B = W (accumulate);
// dW: A = dout^T (transA), B = inp (accumulate). dbias is a column-sum kernel.
// Each GEMM that reads W has a `half` build reading it as packed halves (--precision f16, half.ts).
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { halfAt } from './half.js';

/** The b operand: f32, or packed halves read through bAt. */
const bType = (half: boolean) => (half ? 'u32' : 'f32');
const bAt = (half: boolean) => (half ? halfAt('b') : `
fn bAt(i: u32) -> f32 { return b[P.o_b + i]; }
`);

// Shared by both tiled GEMMs: which 64x64 tile of C this workgroup owns (m0, n0) and which 4x4
// outputs this thread does (ty, tx); the 16-deep multiply-accumulate of a thread's 4x4 outputs from the
// workgroup tiles, and the guarded write of those outputs (+ bias, + C when accumulating).
const TILE_START = `
  let tilesN = (P.Nc + 63u) / 64u;
  let g = group(wid, nwg);
  if (g >= tilesN * ((P.M + 63u) / 64u)) { return; }
  let m0 = (g / tilesN) * 64u;
  let n0 = (g % tilesN) * 64u;
  let tx = lid.x % 16u;
  let ty = lid.x / 16u;
`;
const TILE_MAC = `
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
`;
const epilogue = (accumulate: boolean) => `
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m >= P.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n >= P.Nc) { continue; }
      var v = acc[i * 4u + j];
      if (P.hasBias == 1u) { v += bias[P.o_bias + n]; }
      let ci = P.o_c + m * P.ldc + n;
      ${accumulate ? 'if (P.accumulate == 1u) { v += c[ci]; }' : ''}
      c[ci] = v;
    }
  }
`;

const GEMM = (half: boolean) => header(
  [['a', 'f32', 'read'], ['b', bType(half), 'read'], ['bias', 'f32', 'read'], ['c', 'f32', 'read_write']],
  [['M', 'u32'], ['Nc', 'u32'], ['K', 'u32'], ['transA', 'u32'], ['transB', 'u32'], ['accumulate', 'u32'], ['hasBias', 'u32'], ['lda', 'u32'], ['ldc', 'u32']],
) + LINEAR + bAt(half) + `
var<workgroup> As: array<f32, 1024>; // [k][m], 16 x 64
var<workgroup> Bs: array<f32, 1024>; // [k][n], 16 x 64

fn loadA(m: u32, k: u32) -> f32 {
  if (m >= P.M || k >= P.K) { return 0.0; }
  if (P.transA == 1u) { return a[P.o_a + k * P.lda + m]; }
  return a[P.o_a + m * P.lda + k];
}
fn loadB(k: u32, n: u32) -> f32 {
  if (n >= P.Nc || k >= P.K) { return 0.0; }
  if (P.transB == 1u) { return bAt(n * P.K + k); }
  return bAt(k * P.Nc + n);
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${TILE_START}  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < P.K; k0 += 16u) {
    for (var r = 0u; r < 4u; r++) {
      let idx = lid.x + r * ${WG}u;
      // adjacent threads read adjacent addresses in whichever layout the operand has
      if (P.transA == 1u) { As[(idx / 64u) * 64u + idx % 64u] = loadA(m0 + idx % 64u, k0 + idx / 64u); }
      else { As[(idx % 16u) * 64u + idx / 16u] = loadA(m0 + idx / 16u, k0 + idx % 16u); }
      if (P.transB == 1u) { Bs[(idx % 16u) * 64u + idx / 16u] = loadB(k0 + idx % 16u, n0 + idx / 16u); }
      else { Bs[(idx / 64u) * 64u + idx % 64u] = loadB(k0 + idx / 64u, n0 + idx % 64u); }
    }
    workgroupBarrier();
${TILE_MAC}    workgroupBarrier();
  }
${epilogue(true)}}
`;

// The forward product with vec4 loads (inp and W both K-contiguous): used when K and both
// operands' shifts are multiples of 4, as at every GPT-2 size; odd shapes take the scalar GEMM.
// Half weights come as vec2<u32>: four halves per load.
const GEMM_V4 = (half: boolean) => header(
  [['a', 'vec4<f32>', 'read'], ['b', half ? 'vec2<u32>' : 'vec4<f32>', 'read'], ['bias', 'f32', 'read'], ['c', 'f32', 'read_write']],
  [['M', 'u32'], ['Nc', 'u32'], ['K', 'u32'], ['hasBias', 'u32'], ['ldc', 'u32']],
) + LINEAR + `
fn bQuad(i: u32) -> vec4<f32> {
  ${half ? 'let q = b[P.o_b / 2u + i]; return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));' : 'return b[P.o_b / 4u + i];'}
}
var<workgroup> As: array<f32, 1024>; // [k][m]
var<workgroup> Bs: array<f32, 1024>; // [k][n]

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${TILE_START}  let K4 = P.K / 4u;
  let row = lid.x / 4u; // one vec4 of the 64 x 16 tile per thread
  let kq = lid.x % 4u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < P.K; k0 += 16u) {
    var av = vec4<f32>(0.0);
    var bv = vec4<f32>(0.0);
    if (m0 + row < P.M && k0 + kq * 4u < P.K) { av = a[P.o_a / 4u + (m0 + row) * K4 + k0 / 4u + kq]; }
    if (n0 + row < P.Nc && k0 + kq * 4u < P.K) { bv = bQuad((n0 + row) * K4 + k0 / 4u + kq); }
    for (var j = 0u; j < 4u; j++) {
      As[(kq * 4u + j) * 64u + row] = av[j];
      Bs[(kq * 4u + j) * 64u + row] = bv[j];
    }
    workgroupBarrier();
${TILE_MAC}    workgroupBarrier();
  }
${epilogue(false)}}
`;

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

// Fewer than 4 rows (decoding): a workgroup computes 8 outputs, 32 threads per output striding
// over IN (coalesced reads of each weight row), then a workgroup-memory reduction.
const GEMV = (half: boolean) => header([['a', 'f32', 'read'], ['b', bType(half), 'read'], ['bias', 'f32', 'read'], ['c', 'f32', 'read_write']], [['M', 'u32'], ['Nc', 'u32'], ['K', 'u32'], ['hasBias', 'u32'], ['ldc', 'u32']]) + LINEAR + bAt(half) + `
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = group(wid, nwg) * 8u + lid.x / 32u;
  let lane = lid.x % 32u;
  for (var m = 0u; m < P.M; m++) {
    var s = 0.0;
    if (n < P.Nc) {
      for (var k = lane; k < P.K; k += 32u) { s += a[P.o_a + m * P.K + k] * bAt(n * P.K + k); }
    }
    part[lid.x] = s;
    workgroupBarrier();
    for (var w = 16u; w > 0u; w >>= 1u) {
      if (lane < w) { part[lid.x] += part[lid.x + w]; }
      workgroupBarrier();
    }
    if (lane == 0u && n < P.Nc) {
      var v = part[lid.x];
      if (P.hasBias == 1u) { v += bias[P.o_bias + n]; }
      c[P.o_c + m * P.ldc + n] = v;
    }
    workgroupBarrier();
  }
}
`;

/** A kernel's pipeline, in its half-weight build when `half`. */
const pipe = (rt: Runtime, name: string, code: (half: boolean) => string, half: boolean) =>
  rt.pipeline(half ? `${name}_half` : name, code(half));

/**
 * C (M,Nc) (+)= op(A) @ op(B) (+ bias). Row strides: lda for A as stored (K, or M when transA,
 * unless A is a column block of a wider matrix), ldc for C (Nc unless C is a column block).
 */
function gemm(rt: Runtime, c: GpuBuf, a: GpuBuf, b: GpuBuf, bias: GpuBuf | null, M: number, Nc: number, K: number, transA: boolean, transB: boolean, accumulate: boolean, half: boolean, lda: number, ldc: number): void {
  const groups = Math.ceil(M / 64) * Math.ceil(Nc / 64);
  rt.dispatch(pipe(rt, 'gemm', GEMM, half), [a, b, bias ?? a, c], [M, Nc, K, +transA, +transB, +accumulate, bias ? 1 : 0, lda, ldc], groups);
}

/**
 * out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias, where out may be a column block of a matrix
 * with row stride ldc (a weight split across bindings). `half`: w is packed halves (half.ts).
 */
export function matmulForward(rt: Runtime, out: GpuBuf, inp: GpuBuf, w: GpuBuf, bias: GpuBuf | null, N: number, IN: number, OUT: number, half: boolean, ldc: number): void {
  if (N < 4) return rt.dispatch(pipe(rt, 'gemv', GEMV, half), [inp, w, bias ?? inp, out], [N, OUT, IN, bias ? 1 : 0, ldc], Math.ceil(OUT / 8));
  if (IN % 4 === 0 && rt.shiftOf(inp) % 4 === 0 && rt.shiftOf(w) % (half ? 2 : 4) === 0) {
    return rt.dispatch(pipe(rt, 'gemm_v4', GEMM_V4, half), [inp, w, bias ?? inp, out], [N, OUT, IN, bias ? 1 : 0, ldc], Math.ceil(N / 64) * Math.ceil(OUT / 64));
  }
  gemm(rt, out, inp, w, bias, N, OUT, IN, false, true, false, half, IN, ldc);
}

/**
 * dinp (N,IN) += dout @ w; dw (OUT,IN) += dout^T @ inp, where dout may be a column block (row
 * stride ldd) and w, dw the matching rows of a weight split across bindings. `wHalf`: the
 * packed-half copy of w to use in dinp under --precision f16. dbias: biasBackward.
 */
export function matmulBackward(rt: Runtime, dinp: GpuBuf, dw: GpuBuf, dout: GpuBuf, inp: GpuBuf, w: GpuBuf, N: number, IN: number, OUT: number, ldd: number, wHalf?: GpuBuf): void {
  gemm(rt, dinp, dout, wHalf ?? w, null, N, IN, OUT, false, false, true, wHalf !== undefined, ldd, IN);
  gemm(rt, dw, dout, inp, null, OUT, IN, N, true, false, true, false, ldd, IN);
}

/** dbias (OUT) += column sums of dout (N,OUT). */
export function biasBackward(rt: Runtime, dbias: GpuBuf, dout: GpuBuf, N: number, OUT: number): void {
  rt.dispatch(rt.pipeline('bias_grad', BIAS_GRAD), [dout, dbias], [N, OUT], Math.ceil(OUT / WG));
}
