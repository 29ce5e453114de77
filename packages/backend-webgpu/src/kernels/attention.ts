// Flash-style causal attention: one thread per query row with an online softmax; only the
// log-sum-exp is kept. Backward recomputes p = exp(q.k * scale - lse) in two kernels that never
// race: one thread per query for dq, one per key for dk and dv (after D = dout . out per row).
// Heads up to 128 wide (GPT-2: 64).
import { GPT2Error } from '@gpt2/core';
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';

const MAX_HS = 128;
const ROWMAIN = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.B * P.NH * P.T) { return; }
  let t = i % P.T;
  let h = (i / P.T) % P.NH;
  let b = i / (P.T * P.NH);
  let C = P.NH * P.HS;
  let scale = 1.0 / sqrt(f32(P.HS));
`;
const SIZES: [string, 'u32'][] = [['B', 'u32'], ['T', 'u32'], ['NH', 'u32'], ['HS', 'u32']];

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

const FWD = header([['qkv', 'f32', 'read'], ['out', 'f32', 'read_write'], ['lse', 'f32', 'read_write']], SIZES) + LINEAR + ONLINE + ROWMAIN + `
  let q = P.o_qkv + (b * P.T + t) * 3u * C + h * P.HS;
  var o: array<f32, ${MAX_HS}>;
  var m = -3.0e38;
  var l = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) {
    let k = P.o_qkv + (b * P.T + t2) * 3u * C + C + h * P.HS;
    var s = 0.0;
    for (var d = 0u; d < P.HS; d++) { s += qkv[q + d] * qkv[k + d]; }
    let p = online(s * scale, &m, &l, &o);
    for (var d = 0u; d < P.HS; d++) { o[d] += p * qkv[k + C + d]; }
  }
  let oo = P.o_out + (b * P.T + t) * C + h * P.HS;
  for (var d = 0u; d < P.HS; d++) { out[oo + d] = o[d] / l; }
  lse[P.o_lse + (b * P.NH + h) * P.T + t] = m + log(l);
}`;

const BWD_D = header([['dout', 'f32', 'read'], ['out', 'f32', 'read'], ['D', 'f32', 'read_write']], SIZES) + LINEAR + ROWMAIN + `
  let oo = (b * P.T + t) * C + h * P.HS;
  var s = 0.0;
  for (var d = 0u; d < P.HS; d++) { s += dout[P.o_dout + oo + d] * out[P.o_out + oo + d]; }
  D[P.o_D + (b * P.NH + h) * P.T + t] = s;
}`;

const PROB = `
fn score(qi: u32, ki: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < P.HS; d++) { s += qkv[qi + d] * qkv[ki + d]; }
  return s;
}
fn dotdv(doi: u32, vi: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < P.HS; d++) { s += dout[doi + d] * qkv[vi + d]; }
  return s;
}
`;
const BWD_BINDINGS: [string, 'f32', 'read' | 'read_write'][] = [['dout', 'f32', 'read'], ['qkv', 'f32', 'read'], ['lse', 'f32', 'read'], ['D', 'f32', 'read'], ['dqkv', 'f32', 'read_write']];

// query row t: dq = sum_{t2 <= t} ds * k * scale
const BWD_Q = header(BWD_BINDINGS, SIZES) + LINEAR + PROB + ROWMAIN + `
  let row = (b * P.NH + h) * P.T + t;
  let qi = P.o_qkv + (b * P.T + t) * 3u * C + h * P.HS;
  let doi = P.o_dout + (b * P.T + t) * C + h * P.HS;
  let L = lse[P.o_lse + row];
  let Dt = D[P.o_D + row];
  var dq: array<f32, ${MAX_HS}>;
  for (var t2 = 0u; t2 <= t; t2++) {
    let ki = P.o_qkv + (b * P.T + t2) * 3u * C + C + h * P.HS;
    let p = exp(score(qi, ki) * scale - L);
    let ds = p * (dotdv(doi, ki + C) - Dt) * scale;
    for (var d = 0u; d < P.HS; d++) { dq[d] += ds * qkv[ki + d]; }
  }
  let dqi = P.o_dqkv + (b * P.T + t) * 3u * C + h * P.HS;
  for (var d = 0u; d < P.HS; d++) { dqkv[dqi + d] += dq[d]; }
}`;

// key row t2 (here t): dk = sum_{t >= t2} ds * q * scale, dv = sum p * dout
const BWD_KV = header(BWD_BINDINGS, SIZES) + LINEAR + PROB + ROWMAIN + `
  let t2 = t;
  let ki = P.o_qkv + (b * P.T + t2) * 3u * C + C + h * P.HS;
  var dk: array<f32, ${MAX_HS}>;
  var dv: array<f32, ${MAX_HS}>;
  for (var tq = t2; tq < P.T; tq++) {
    let row = (b * P.NH + h) * P.T + tq;
    let qi = P.o_qkv + (b * P.T + tq) * 3u * C + h * P.HS;
    let doi = P.o_dout + (b * P.T + tq) * C + h * P.HS;
    let p = exp(score(qi, ki) * scale - lse[P.o_lse + row]);
    let ds = p * (dotdv(doi, ki + C) - D[P.o_D + row]) * scale;
    for (var d = 0u; d < P.HS; d++) {
      dk[d] += ds * qkv[qi + d];
      dv[d] += p * dout[doi + d];
    }
  }
  let dki = P.o_dqkv + (b * P.T + t2) * 3u * C + C + h * P.HS;
  for (var d = 0u; d < P.HS; d++) {
    dqkv[dki + d] += dk[d];
    dqkv[dki + C + d] += dv[d];
  }
}`;

// cache write: one thread per (b, t, c) of the new positions' k and v
const KV_WRITE = header([['qkv', 'f32', 'read'], ['kc', 'f32', 'read_write'], ['vc', 'f32', 'read_write']], [...SIZES, ['pos', 'u32'], ['maxT', 'u32']]) + LINEAR + `
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
  let src = P.o_qkv + (b * P.T + t) * 3u * C + c;
  let dst = ((b * P.NH + h) * P.maxT + P.pos + t) * P.HS + d;
  kc[P.o_kc + dst] = qkv[src + C];
  vc[P.o_vc + dst] = qkv[src + 2u * C];
}`;

const DECODE = header([['qkv', 'f32', 'read'], ['kc', 'f32', 'read'], ['vc', 'f32', 'read'], ['out', 'f32', 'read_write']], [...SIZES, ['pos', 'u32'], ['maxT', 'u32']]) + LINEAR + ONLINE + ROWMAIN + `
  let q = P.o_qkv + (b * P.T + t) * 3u * C + h * P.HS;
  let cache = (b * P.NH + h) * P.maxT * P.HS;
  var o: array<f32, ${MAX_HS}>;
  var m = -3.0e38;
  var l = 0.0;
  for (var t2 = 0u; t2 <= P.pos + t; t2++) {
    let k = P.o_kc + cache + t2 * P.HS;
    var s = 0.0;
    for (var d = 0u; d < P.HS; d++) { s += qkv[q + d] * kc[k + d]; }
    let p = online(s * scale, &m, &l, &o);
    let v = P.o_vc + cache + t2 * P.HS;
    for (var d = 0u; d < P.HS; d++) { o[d] += p * vc[v + d]; }
  }
  let oo = P.o_out + (b * P.T + t) * C + h * P.HS;
  for (var d = 0u; d < P.HS; d++) { out[oo + d] = o[d] / l; }
}`;

const rows = (B: number, T: number, NH: number) => Math.ceil((B * NH * T) / WG);
function checkHS(HS: number): void {
  if (HS > MAX_HS) throw new GPT2Error(`The webgpu backend supports attention heads up to ${MAX_HS} wide (this model's are ${HS}).`);
}

export function attentionForward(rt: Runtime, out: GpuBuf, lse: GpuBuf, qkv: GpuBuf, B: number, T: number, NH: number, HS: number): void {
  checkHS(HS);
  rt.dispatch(rt.pipeline('attention_fwd', FWD), [qkv, out, lse], [B, T, NH, HS], rows(B, T, NH));
}

export function attentionBackward(rt: Runtime, scratchD: GpuBuf, dqkv: GpuBuf, dout: GpuBuf, qkv: GpuBuf, out: GpuBuf, lse: GpuBuf, B: number, T: number, NH: number, HS: number): void {
  checkHS(HS);
  rt.dispatch(rt.pipeline('attention_bwd_d', BWD_D), [dout, out, scratchD], [B, T, NH, HS], rows(B, T, NH));
  rt.dispatch(rt.pipeline('attention_bwd_q', BWD_Q), [dout, qkv, lse, scratchD, dqkv], [B, T, NH, HS], rows(B, T, NH));
  rt.dispatch(rt.pipeline('attention_bwd_kv', BWD_KV), [dout, qkv, lse, scratchD, dqkv], [B, T, NH, HS], rows(B, T, NH));
}

export function attentionDecode(rt: Runtime, out: GpuBuf, qkv: GpuBuf, kc: GpuBuf, vc: GpuBuf, B: number, T: number, pos: number, NH: number, HS: number, maxT: number): void {
  checkHS(HS);
  rt.dispatch(rt.pipeline('attention_kv_write', KV_WRITE), [qkv, kc, vc], [B, T, NH, HS, pos, maxT], Math.ceil((B * T * NH * HS) / WG));
  rt.dispatch(rt.pipeline('attention_decode', DECODE), [qkv, kc, vc, out], [B, T, NH, HS, pos, maxT], rows(B, T, NH));
}
