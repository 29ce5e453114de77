// Flash-style causal attention with an online softmax; only the log-sum-exp is kept, no (T, T)
// matrix. Forward and dq: a workgroup owns 64 query rows of one (b, h), one thread per row, and
// stages the keys and values those rows attend to through workgroup memory a tile at a time.
// dk and dv: a workgroup owns 64 key rows and stages the later queries, their output gradients,
// log-sum-exps and D = dout . out the same way. No two threads write one row, so nothing races.
// Decoding splits each row's cache positions over a workgroup instead. Heads up to 128 wide
// (GPT-2: 64).
import { GPT2Error } from '@gpt2/core';
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';

const MAX_HS = 128;
// Row i of the B * NH * T (b, h, t) rows, with the head's width and score scale.
const ROW_OF = (i: string) => `
  if (${i} >= P.B * P.NH * P.T) { return; }
  let t = ${i} % P.T;
  let h = (${i} / P.T) % P.NH;
  let b = ${i} / (P.T * P.NH);
  let C = P.NH * P.HS;
  let scale = 1.0 / sqrt(f32(P.HS));
`;
// one thread per row
const ROWMAIN = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);${ROW_OF('i')}`;
const SIZES: [string, 'u32'][] = [['B', 'u32'], ['T', 'u32'], ['NH', 'u32'], ['HS', 'u32']];

// A workgroup of TILE threads owns rows r0 .. r0+63 of head (b, h); row r is this thread's.
// Workgroups past the last (2D folding) leave before any barrier, which is uniform control flow.
const TILE = 64;
const TILEMAIN = `@compute @workgroup_size(${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tiles = (P.T + ${TILE - 1}u) / ${TILE}u;
  let g = group(wid, nwg);
  if (g >= P.B * P.NH * tiles) { return; }
  let b = g / (tiles * P.NH);
  let h = (g / tiles) % P.NH;
  let r0 = (g % tiles) * ${TILE}u;
  let r = r0 + lid.x;
  let live = r < P.T;
  let C = P.NH * P.HS;
  let scale = 1.0 / sqrt(f32(P.HS));
`;

// Keys and values of one tile: 16 KiB of workgroup memory, the WebGPU default limit.
const KV_TILE = `
var<workgroup> Ks: array<f32, 2048>;
var<workgroup> Vs: array<f32, 2048>;
// keys k0 .. k0+n-1 of head (b, h) into Ks, Vs (row j at j * HS)
fn loadKV(b: u32, h: u32, k0: u32, n: u32, lx: u32) {
  let C = P.NH * P.HS;
  for (var e = lx; e < n * P.HS; e += ${TILE}u) {
    let i = P.o_qkv + (b * P.T + k0 + e / P.HS) * 3u * C + C + h * P.HS + e % P.HS;
    Ks[e] = qkv[i];
    Vs[e] = qkv[i + C];
  }
}
`;

// For each key j (row j of Ks, Vs) that this thread's row r attends to, a tile of keys at a
// time; closed by END_EACH_KEY. The barriers sit in uniform control flow.
const EACH_KEY = `
  let KT = 2048u / P.HS;
  let kEnd = min(P.T, r0 + ${TILE}u); // the keys this workgroup's rows attend to
  for (var k0 = 0u; k0 < kEnd; k0 += KT) {
    let n = min(KT, kEnd - k0);
    loadKV(b, h, k0, n, lid.x);
    workgroupBarrier();
    for (var j = 0u; live && j < n && k0 + j <= r; j++) {
`;
const END_EACH_KEY = `
    }
    workgroupBarrier();
  }
`;

// One step of the online softmax over a row's scores: on a new maximum the running sum and the
// output so far are rescaled; returns this score's weight, exp(s - max).
const ONLINE = `
fn online(s: f32, m: ptr<function, f32>, l: ptr<function, f32>, o: ptr<function, array<f32, ${MAX_HS}>>) -> f32 {
  if (s > *m) {
    let r = exp(*m - s);
    *l *= r;
    for (var d = 0u; d < P.HS; d++) { (*o)[d] *= r; }
    *m = s;
  }
  let p = exp(s - *m);
  *l += p;
  return p;
}
`;

const FWD = header([['qkv', 'f32', 'read'], ['out', 'f32', 'read_write'], ['lse', 'f32', 'read_write']], SIZES) + LINEAR + ONLINE + KV_TILE + TILEMAIN + `
  var q: array<f32, ${MAX_HS}>;
  var o: array<f32, ${MAX_HS}>;
  var m = -3.0e38;
  var l = 0.0;
  if (live) {
    let qi = P.o_qkv + (b * P.T + r) * 3u * C + h * P.HS;
    for (var d = 0u; d < P.HS; d++) { q[d] = qkv[qi + d]; }
  }
${EACH_KEY}      var s = 0.0;
      for (var d = 0u; d < P.HS; d++) { s += q[d] * Ks[j * P.HS + d]; }
      let p = online(s * scale, &m, &l, &o);
      for (var d = 0u; d < P.HS; d++) { o[d] += p * Vs[j * P.HS + d]; }${END_EACH_KEY}  if (live) {
    let oo = P.o_out + (b * P.T + r) * C + h * P.HS;
    for (var d = 0u; d < P.HS; d++) { out[oo + d] = o[d] / l; }
    lse[P.o_lse + (b * P.NH + h) * P.T + r] = m + log(l);
  }
}`;

const BWD_D = header([['dout', 'f32', 'read'], ['out', 'f32', 'read'], ['D', 'f32', 'read_write']], SIZES) + LINEAR + ROWMAIN + `
  let oo = (b * P.T + t) * C + h * P.HS;
  var s = 0.0;
  for (var d = 0u; d < P.HS; d++) { s += dout[P.o_dout + oo + d] * out[P.o_out + oo + d]; }
  D[P.o_D + (b * P.NH + h) * P.T + t] = s;
}`;

const BWD_BINDINGS: [string, 'f32', 'read' | 'read_write'][] = [['dout', 'f32', 'read'], ['qkv', 'f32', 'read'], ['lse', 'f32', 'read'], ['D', 'f32', 'read'], ['dqkv', 'f32', 'read_write']];

// query row r: dq = sum_{k <= r} ds * k, ds = p (dout . v - D) scale, p = exp(q.k scale - lse)
const BWD_Q = header(BWD_BINDINGS, SIZES) + LINEAR + KV_TILE + TILEMAIN + `
  var q: array<f32, ${MAX_HS}>;
  var go: array<f32, ${MAX_HS}>; // this row's output gradient
  var dq: array<f32, ${MAX_HS}>;
  var L = 0.0;
  var Dr = 0.0;
  if (live) {
    let row = (b * P.NH + h) * P.T + r;
    L = lse[P.o_lse + row];
    Dr = D[P.o_D + row];
    let qi = P.o_qkv + (b * P.T + r) * 3u * C + h * P.HS;
    let gi = P.o_dout + (b * P.T + r) * C + h * P.HS;
    for (var d = 0u; d < P.HS; d++) { q[d] = qkv[qi + d]; go[d] = dout[gi + d]; }
  }
${EACH_KEY}      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < P.HS; d++) { s += q[d] * Ks[j * P.HS + d]; dp += go[d] * Vs[j * P.HS + d]; }
      let ds = exp(s * scale - L) * (dp - Dr) * scale;
      for (var d = 0u; d < P.HS; d++) { dq[d] += ds * Ks[j * P.HS + d]; }${END_EACH_KEY}  if (live) {
    let dqi = P.o_dqkv + (b * P.T + r) * 3u * C + h * P.HS;
    for (var d = 0u; d < P.HS; d++) { dqkv[dqi + d] += dq[d]; }
  }
}`;

// key row r: dk = sum_{t >= r} ds * q, dv = sum_{t >= r} p * dout. The later queries, their
// output gradients, log-sum-exps and D come through workgroup memory, QT rows at a time.
const BWD_KV = header(BWD_BINDINGS, SIZES) + LINEAR + `
var<workgroup> Qs: array<f32, 1984>; // QT = min(32, 1984 / HS) query rows
var<workgroup> Gs: array<f32, 1984>; // and their output gradients
var<workgroup> Ls: array<f32, 32>;
var<workgroup> Ds: array<f32, 32>;
` + TILEMAIN + `
  var k: array<f32, ${MAX_HS}>;
  var v: array<f32, ${MAX_HS}>;
  var dk: array<f32, ${MAX_HS}>;
  var dv: array<f32, ${MAX_HS}>;
  if (live) {
    let ki = P.o_qkv + (b * P.T + r) * 3u * C + C + h * P.HS;
    for (var d = 0u; d < P.HS; d++) { k[d] = qkv[ki + d]; v[d] = qkv[ki + C + d]; }
  }
  let QT = min(32u, 1984u / P.HS);
  for (var q0 = r0; q0 < P.T; q0 += QT) {
    let n = min(QT, P.T - q0);
    for (var e = lid.x; e < n * P.HS; e += ${TILE}u) {
      let t = q0 + e / P.HS;
      Qs[e] = qkv[P.o_qkv + (b * P.T + t) * 3u * C + h * P.HS + e % P.HS];
      Gs[e] = dout[P.o_dout + (b * P.T + t) * C + h * P.HS + e % P.HS];
    }
    if (lid.x < n) {
      Ls[lid.x] = lse[P.o_lse + (b * P.NH + h) * P.T + q0 + lid.x];
      Ds[lid.x] = D[P.o_D + (b * P.NH + h) * P.T + q0 + lid.x];
    }
    workgroupBarrier();
    for (var j = 0u; live && j < n; j++) {
      if (q0 + j < r) { continue; }
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < P.HS; d++) { s += Qs[j * P.HS + d] * k[d]; dp += Gs[j * P.HS + d] * v[d]; }
      let p = exp(s * scale - Ls[j]);
      let ds = p * (dp - Ds[j]) * scale;
      for (var d = 0u; d < P.HS; d++) { dk[d] += ds * Qs[j * P.HS + d]; dv[d] += p * Gs[j * P.HS + d]; }
    }
    workgroupBarrier();
  }
  if (live) {
    let dki = P.o_dqkv + (b * P.T + r) * 3u * C + C + h * P.HS;
    for (var d = 0u; d < P.HS; d++) {
      dqkv[dki + d] += dk[d];
      dqkv[dki + C + d] += dv[d];
    }
  }
}`;

// cache write: one thread per (b, t, c) of the new positions' k and v, row b's at pos[b] (none for
// a row with pos[b] < 0)
const KV_WRITE = header([['qkv', 'f32', 'read'], ['kc', 'f32', 'read_write'], ['vc', 'f32', 'read_write'], ['pos', 'i32', 'read']], [...SIZES, ['maxT', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = P.NH * P.HS;
  let i = linear(wid, nwg, lid);
  if (i >= P.B * P.T * C) { return; }
  let c = i % C;
  let t = (i / C) % P.T;
  let b = i / (C * P.T);
  let h = c / P.HS;
  let d = c % P.HS;
  let p0 = pos[P.o_pos + b];
  if (p0 < 0) { return; }
  let src = P.o_qkv + (b * P.T + t) * 3u * C + c;
  let dst = ((b * P.NH + h) * P.maxT + u32(p0) + t) * P.HS + d;
  kc[P.o_kc + dst] = qkv[src + C];
  vc[P.o_vc + dst] = qkv[src + 2u * C];
}`;

// Decoding (flash-decoding): one workgroup of SPLIT threads per query row, since a decode step
// has only B * NH rows. Thread j takes cache positions j, j + SPLIT, ... with its own online
// softmax; the partial maxima, sums and outputs are then merged through workgroup memory, the
// outputs 32 dimensions at a time. Row b's query t sees cache positions 0 .. pos[b] + t; a row with
// pos[b] < 0 computes nothing and writes nothing (its workgroup still meets every barrier).
const SPLIT = 64;
const DECODE = header([['qkv', 'f32', 'read'], ['kc', 'f32', 'read'], ['vc', 'f32', 'read'], ['pos', 'i32', 'read'], ['out', 'f32', 'read_write']], [...SIZES, ['maxT', 'u32']]) + LINEAR + ONLINE + `
var<workgroup> Ms: array<f32, ${SPLIT}>;
var<workgroup> Ls: array<f32, ${SPLIT}>;
var<workgroup> Os: array<f32, ${SPLIT * 32}>; // [thread][32 dimensions]
@compute @workgroup_size(${SPLIT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let g = group(wid, nwg); // one workgroup per row${ROW_OF('g')}  let q = P.o_qkv + (b * P.T + t) * 3u * C + h * P.HS;
  let cache = (b * P.NH + h) * P.maxT * P.HS;
  let p0 = pos[P.o_pos + b];
  let live = p0 >= 0;
  let last = select(0u, u32(p0) + t, live);
  var o: array<f32, ${MAX_HS}>;
  var m = -3.0e38;
  var l = 0.0;
  for (var t2 = lid.x; live && t2 <= last; t2 += ${SPLIT}u) {
    let k = P.o_kc + cache + t2 * P.HS;
    var s = 0.0;
    for (var d = 0u; d < P.HS; d++) { s += qkv[q + d] * kc[k + d]; }
    let p = online(s * scale, &m, &l, &o);
    let v = P.o_vc + cache + t2 * P.HS;
    for (var d = 0u; d < P.HS; d++) { o[d] += p * vc[v + d]; }
  }
  Ms[lid.x] = m;
  Ls[lid.x] = l;
  workgroupBarrier();
  var gm = -3.0e38; // thread 0 always has position 0, so gm is a real score
  for (var i = 0u; i < ${SPLIT}u; i++) { gm = max(gm, Ms[i]); }
  var gl = 0.0;
  for (var i = 0u; i < ${SPLIT}u; i++) { gl += Ls[i] * exp(Ms[i] - gm); }
  let f = exp(m - gm); // 0 for a thread that had no positions
  let oo = P.o_out + (b * P.T + t) * C + h * P.HS;
  for (var d0 = 0u; d0 < P.HS; d0 += 32u) {
    for (var d = 0u; d < 32u; d++) { Os[lid.x * 32u + d] = o[min(d0 + d, ${MAX_HS - 1}u)] * f; }
    workgroupBarrier();
    if (live && lid.x < 32u && d0 + lid.x < P.HS) {
      var s = 0.0;
      for (var i = 0u; i < ${SPLIT}u; i++) { s += Os[i * 32u + lid.x]; }
      out[oo + d0 + lid.x] = s / gl;
    }
    workgroupBarrier();
  }
}`;

const rows = (B: number, T: number, NH: number) => Math.ceil((B * NH * T) / WG);
const tiles = (B: number, T: number, NH: number) => B * NH * Math.ceil(T / TILE);
function checkHS(HS: number): void {
  if (HS > MAX_HS) throw new GPT2Error(`The webgpu backend supports attention heads up to ${MAX_HS} wide (this model's are ${HS}).`);
}

export function attentionForward(rt: Runtime, out: GpuBuf, lse: GpuBuf, qkv: GpuBuf, B: number, T: number, NH: number, HS: number): void {
  checkHS(HS);
  rt.dispatch(rt.pipeline('attention_fwd', FWD), [qkv, out, lse], [B, T, NH, HS], tiles(B, T, NH));
}

export function attentionBackward(rt: Runtime, scratchD: GpuBuf, dqkv: GpuBuf, dout: GpuBuf, qkv: GpuBuf, out: GpuBuf, lse: GpuBuf, B: number, T: number, NH: number, HS: number): void {
  checkHS(HS);
  rt.dispatch(rt.pipeline('attention_bwd_d', BWD_D), [dout, out, scratchD], [B, T, NH, HS], rows(B, T, NH));
  rt.dispatch(rt.pipeline('attention_bwd_q', BWD_Q), [dout, qkv, lse, scratchD, dqkv], [B, T, NH, HS], tiles(B, T, NH));
  rt.dispatch(rt.pipeline('attention_bwd_kv', BWD_KV), [dout, qkv, lse, scratchD, dqkv], [B, T, NH, HS], tiles(B, T, NH));
}

export function attentionDecode(rt: Runtime, out: GpuBuf, qkv: GpuBuf, kc: GpuBuf, vc: GpuBuf, pos: GpuBuf, B: number, T: number, NH: number, HS: number, maxT: number): void {
  checkHS(HS);
  rt.dispatch(rt.pipeline('attention_kv_write', KV_WRITE), [qkv, kc, vc, pos], [B, T, NH, HS, maxT], Math.ceil((B * T * NH * HS) / WG));
  rt.dispatch(rt.pipeline('attention_decode', DECODE), [qkv, kc, vc, pos, out], [B, T, NH, HS, maxT], B * NH * T);
}
