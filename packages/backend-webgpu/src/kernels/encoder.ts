// Token + position embeddings. Backward: tokens repeat, so one thread per channel walks every
// position for dwte (no float atomics in WGSL), and one thread per (t, c) sums dwpe over the batch.
// wte may be a block of rows [v0, v0 + vn) of the table (split across bindings): then only tokens
// in that range are read or written.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';

const FWD = header([['tokens', 'i32', 'read'], ['wte', 'f32', 'read'], ['wpe', 'f32', 'read'], ['out', 'f32', 'read_write']], [['BT', 'u32'], ['T', 'u32'], ['C', 'u32'], ['v0', 'u32'], ['vn', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.BT * P.C) { return; }
  let bt = i / P.C;
  let c = i % P.C;
  let tok = u32(tokens[P.o_tokens + bt]) - P.v0; // below v0 wraps past vn
  if (tok >= P.vn) { return; }
  out[P.o_out + i] = wte[P.o_wte + tok * P.C + c] + wpe[P.o_wpe + (bt % P.T) * P.C + c];
}`;

const BWD_WTE = header([['tokens', 'i32', 'read'], ['dout', 'f32', 'read'], ['dwte', 'f32', 'read_write']], [['BT', 'u32'], ['C', 'u32'], ['v0', 'u32'], ['vn', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = linear(wid, nwg, lid);
  if (c >= P.C) { return; }
  for (var bt = 0u; bt < P.BT; bt++) {
    let tok = u32(tokens[P.o_tokens + bt]) - P.v0;
    if (tok < P.vn) { dwte[P.o_dwte + tok * P.C + c] += dout[P.o_dout + bt * P.C + c]; }
  }
}`;

const BWD_WPE = header([['dout', 'f32', 'read'], ['dwpe', 'f32', 'read_write']], [['B', 'u32'], ['T', 'u32'], ['C', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = linear(wid, nwg, lid);
  if (i >= P.T * P.C) { return; }
  var s = 0.0;
  for (var b = 0u; b < P.B; b++) { s += dout[P.o_dout + b * P.T * P.C + i]; }
  dwpe[P.o_dwpe + i] += s;
}`;

/** wte holds rows v0 .. v0 + vn of the token table. */
export function encoderForward(rt: Runtime, out: GpuBuf, tokens: GpuBuf, wte: GpuBuf, wpe: GpuBuf, B: number, T: number, C: number, v0: number, vn: number): void {
  rt.dispatch(rt.pipeline('encoder_fwd', FWD), [tokens, wte, wpe, out], [B * T, T, C, v0, vn], Math.ceil((B * T * C) / WG));
}

/** dwte holds rows v0 .. v0 + vn of the token table's gradient. */
export function encoderBackwardWte(rt: Runtime, dwte: GpuBuf, dout: GpuBuf, tokens: GpuBuf, BT: number, C: number, v0: number, vn: number): void {
  rt.dispatch(rt.pipeline('encoder_bwd_wte', BWD_WTE), [tokens, dout, dwte], [BT, C, v0, vn], Math.ceil(C / WG));
}

export function encoderBackwardWpe(rt: Runtime, dwpe: GpuBuf, dout: GpuBuf, B: number, T: number, C: number): void {
  rt.dispatch(rt.pipeline('encoder_bwd_wpe', BWD_WPE), [dout, dwpe], [B, T, C], Math.ceil((T * C) / WG));
}
