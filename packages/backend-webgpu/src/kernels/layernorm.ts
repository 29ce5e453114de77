// LayerNorm: one workgroup per row with workgroup reductions; dw/db one thread per channel.
import { header, LINEAR, WG, type GpuBuf, type Runtime } from '../runtime.js';
import { REDUCE } from './reduce.js';

const ROW = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = group(wid, nwg);
  if (n >= P.N) { return; }
  let t = lid.x;
  let row = n * P.C;
`;

const FWD = header([['inp', 'f32', 'read'], ['w', 'f32', 'read'], ['b', 'f32', 'read'], ['out', 'f32', 'read_write'], ['mean', 'f32', 'read_write'], ['rstd', 'f32', 'read_write']], [['N', 'u32'], ['C', 'u32']]) + LINEAR + REDUCE + ROW + `
  var s = 0.0;
  for (var c = t; c < P.C; c += ${WG}u) { s += inp[P.o_inp + row + c]; }
  let m = wg_sum(s, t) / f32(P.C);
  var v = 0.0;
  for (var c = t; c < P.C; c += ${WG}u) { let d = inp[P.o_inp + row + c] - m; v += d * d; }
  let r = 1.0 / sqrt(wg_sum(v, t) / f32(P.C) + 1e-5);
  for (var c = t; c < P.C; c += ${WG}u) {
    out[P.o_out + row + c] = (inp[P.o_inp + row + c] - m) * r * w[P.o_w + c] + b[P.o_b + c];
  }
  if (t == 0u) { mean[P.o_mean + n] = m; rstd[P.o_rstd + n] = r; }
}`;

const BWD_IN = header([['dout', 'f32', 'read'], ['inp', 'f32', 'read'], ['w', 'f32', 'read'], ['mean', 'f32', 'read'], ['rstd', 'f32', 'read'], ['dinp', 'f32', 'read_write']], [['N', 'u32'], ['C', 'u32']]) + LINEAR + REDUCE + ROW + `
  let m = mean[P.o_mean + n];
  let r = rstd[P.o_rstd + n];
  var a = 0.0;
  var bb = 0.0;
  for (var c = t; c < P.C; c += ${WG}u) {
    let dn = w[P.o_w + c] * dout[P.o_dout + row + c];
    a += dn;
    bb += dn * (inp[P.o_inp + row + c] - m) * r;
  }
  let dm = wg_sum(a, t) / f32(P.C);
  let dnm = wg_sum(bb, t) / f32(P.C);
  for (var c = t; c < P.C; c += ${WG}u) {
    let norm = (inp[P.o_inp + row + c] - m) * r;
    dinp[P.o_dinp + row + c] += (w[P.o_w + c] * dout[P.o_dout + row + c] - dm - norm * dnm) * r;
  }
}`;

const BWD_PARAMS = header([['dout', 'f32', 'read'], ['inp', 'f32', 'read'], ['mean', 'f32', 'read'], ['rstd', 'f32', 'read'], ['dw', 'f32', 'read_write'], ['db', 'f32', 'read_write']], [['N', 'u32'], ['C', 'u32']]) + LINEAR + `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = linear(wid, nwg, lid);
  if (c >= P.C) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var n = 0u; n < P.N; n++) {
    let d = dout[P.o_dout + n * P.C + c];
    sb += d;
    sw += (inp[P.o_inp + n * P.C + c] - mean[P.o_mean + n]) * rstd[P.o_rstd + n] * d;
  }
  dw[P.o_dw + c] += sw;
  db[P.o_db + c] += sb;
}`;

export function layernormForward(rt: Runtime, out: GpuBuf, mean: GpuBuf, rstd: GpuBuf, inp: GpuBuf, w: GpuBuf, b: GpuBuf, N: number, C: number): void {
  rt.dispatch(rt.pipeline('layernorm_fwd', FWD), [inp, w, b, out, mean, rstd], [N, C], N);
}

export function layernormBackward(rt: Runtime, dinp: GpuBuf, dw: GpuBuf, db: GpuBuf, dout: GpuBuf, inp: GpuBuf, w: GpuBuf, mean: GpuBuf, rstd: GpuBuf, N: number, C: number): void {
  rt.dispatch(rt.pipeline('layernorm_bwd_in', BWD_IN), [dout, inp, w, mean, rstd, dinp], [N, C], N);
  rt.dispatch(rt.pipeline('layernorm_bwd_params', BWD_PARAMS), [dout, inp, mean, rstd, dw, db], [N, C], Math.ceil(C / WG));
}
